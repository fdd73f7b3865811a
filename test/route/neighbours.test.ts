import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFile, rmSync, writeFileSync, writeSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NeighbourTable, parseArpTable, type ReadText } from '../../src/route/neighbours';
import { listen, onTeardown } from '../helpers/net';
import { createNamespace, netnsAvailable, setMac, tcpFrom } from '../helpers/netns';

const HEADER = 'IP address       HW type     Flags       HW address            Mask     Device\n';
const arp = (...rows: Array<[string, string]>): string =>
  HEADER + rows.map(([a, mac]) => `${a.padEnd(17)}0x1         0x2         ${mac}     *        eth0\n`).join('');
const lookup = (t: NeighbourTable, address: string): Promise<string | null> => new Promise((resolve) => t.lookup(address, resolve));
/**
 * The read deadline of the tables whose tests are not about it: the default 100 ms answers null
 * when a loaded machine takes longer than that to read a small file (seen in CI).
 */
const READ_WAIT_MS = 10_000;

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mapgate-neighbours-'));
  onTeardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `fs.readFile` that counts its calls. */
function countingRead(): { read: ReadText; count: () => number } {
  let n = 0;
  return { read: (file, cb) => { n++; readFile(file, 'utf8', cb); }, count: () => n };
}

describe('parseArpTable', () => {
  test('keeps complete entries, lower-cased; skips incomplete, all-zero, non-Ethernet and junk lines', () => {
    const text = `${HEADER}10.0.0.1         0x1         0x2         52:54:00:AB:CD:EF     *        eth0
10.0.0.2         0x1         0x0         00:00:00:00:00:00     *        eth0
10.0.0.3         0x1         0x6         02:00:00:00:00:03     *        eth1
10.0.0.4         0x1         0x2         00:00:00:00:00:00     *        eth0
10.0.0.5         0x20        0x2         80:00:00:48:fe:80:00:00:00:00:00:00:00:11:22:33:44:55:66:77     *  ib0
10.0.0.6         0x1         0x0         02:00:00:00:00:06     *        eth0
10.0.0.1         0x1         0x2         02:00:00:00:00:99     *        eth1
garbage
   \t
999.0.0.1        0x1         0x2         02:00:00:00:00:07     *        eth0
10.0.0.8         0x1         zz          02:00:00:00:00:08     *        eth0
10.0.0.9         0x1         0x2
10.0.0.10 0x1 0x2 02:00:00:00:00:0a * eth0`;
    expect([...parseArpTable(text)]).toEqual([
      ['10.0.0.1', '52:54:00:ab:cd:ef'],
      ['10.0.0.3', '02:00:00:00:00:03'],
      ['10.0.0.10', '02:00:00:00:00:0a'],
    ]);
  });

  test('never throws', () => {
    for (const text of ['', '\n\n', HEADER, '\0\u00ff', 'a b c d e f g', ' '.repeat(10_000)]) expect(parseArpTable(text).size).toBe(0);
  });
});

describe('NeighbourTable', () => {
  test('answers from a fresh table synchronously; after maxAgeMs it reads the file again', async () => {
    const file = join(tempDir(), 'arp');
    writeFileSync(file, arp(['10.0.0.1', '02:00:00:00:00:01']));
    let t = 0;
    const table = new NeighbourTable({ file, maxAgeMs: 1000, now: () => t, timeoutMs: READ_WAIT_MS });
    expect(table.lookupSync('10.0.0.1')).toBeUndefined();
    const first = lookup(table, '10.0.0.1');
    await expect(first).resolves.toBe('02:00:00:00:00:01');

    writeFileSync(file, arp(['10.0.0.1', '02:00:00:00:00:02']));
    t = 1000;
    expect(table.lookupSync('10.0.0.1')).toBe('02:00:00:00:00:01');
    const sync = jest.fn();
    table.lookup('10.0.0.1', sync);
    expect(sync.mock.calls).toEqual([['02:00:00:00:00:01']]);

    t = 1001;
    expect(table.lookupSync('10.0.0.1')).toBeUndefined();
    await expect(lookup(table, '10.0.0.1')).resolves.toBe('02:00:00:00:00:02');
    expect(table.lookupSync('10.0.0.1')).toBe('02:00:00:00:00:02');
  });

  test('concurrent lookups share one read; each callback is called once', async () => {
    const file = join(tempDir(), 'arp');
    writeFileSync(file, arp(['10.0.0.1', '02:00:00:00:00:01'], ['10.0.0.2', '02:00:00:00:00:02']));
    const { read, count } = countingRead();
    const table = new NeighbourTable({ file, read, now: () => 0, timeoutMs: READ_WAIT_MS });
    const cbs = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '::ffff:10.0.0.2'].map((a) => {
      const cb = jest.fn();
      table.lookup(a, cb);
      return cb;
    });
    expect(cbs.every((cb) => cb.mock.calls.length === 0)).toBe(true);
    await new Promise<void>((resolve) => table.lookup('10.0.0.1', () => resolve()));
    expect(count()).toBe(1);
    expect(cbs.map((cb) => cb.mock.calls)).toEqual([[['02:00:00:00:00:01']], [['02:00:00:00:00:02']], [[null]], [['02:00:00:00:00:02']]]);
  });

  test('a miss re-reads at most once per 100 ms, however many unknown addresses ask', async () => {
    const file = join(tempDir(), 'arp');
    writeFileSync(file, arp(['10.0.0.1', '02:00:00:00:00:01']));
    const { read, count } = countingRead();
    let t = 0;
    const table = new NeighbourTable({ file, read, now: () => t, timeoutMs: READ_WAIT_MS });
    await lookup(table, '10.0.0.1');
    writeFileSync(file, arp(['10.0.0.1', '02:00:00:00:00:01'], ['10.0.0.2', '02:00:00:00:00:02']));

    t = 99;
    const flood = jest.fn();
    for (let i = 0; i < 1000; i++) table.lookup(`10.1.${i >> 8}.${i & 255}`, flood);
    expect(flood).toHaveBeenCalledTimes(1000);
    expect(flood.mock.calls.every(([mac]) => mac === null)).toBe(true);
    expect(table.lookupSync('10.0.0.2')).toBeNull();
    expect(count()).toBe(1);

    t = 100; // the client's entry may have appeared since: one more look
    expect(table.lookupSync('10.0.0.2')).toBeUndefined();
    const answers = await Promise.all([lookup(table, '10.0.0.2'), ...Array.from({ length: 100 }, (_, i) => lookup(table, `10.2.0.${i}`))]);
    expect(answers[0]).toBe('02:00:00:00:00:02');
    expect(answers.slice(1).every((mac) => mac === null)).toBe(true);
    expect(count()).toBe(2);
    expect(table.lookupSync('10.2.0.1')).toBeNull();
  });

  test('a read error answers null, and an unreadable file is not read once per lookup', async () => {
    const { read, count } = countingRead();
    let t = 0;
    const table = new NeighbourTable({ file: join(tempDir(), 'missing'), read, now: () => t, timeoutMs: READ_WAIT_MS });
    await expect(lookup(table, '10.0.0.1')).resolves.toBeNull();
    t = 50;
    for (let i = 0; i < 100; i++) expect(table.lookupSync('10.0.0.1')).toBeNull();
    expect(count()).toBe(1);
    t = 150;
    await expect(lookup(table, '10.0.0.1')).resolves.toBeNull();
    expect(count()).toBe(2);
  });

  test('IPv6 is answered null at once without a read; IPv4-mapped IPv6 is looked up as IPv4', async () => {
    const file = join(tempDir(), 'arp');
    writeFileSync(file, arp(['10.0.0.1', '02:00:00:00:00:01']));
    const { read, count } = countingRead();
    const table = new NeighbourTable({ file, read, now: () => 0, timeoutMs: READ_WAIT_MS });
    for (const a of ['::1', 'fe80::1', '::ffff:10.0.0.300', 'not an address']) {
      const cb = jest.fn();
      table.lookup(a, cb);
      expect(cb.mock.calls).toEqual([[null]]);
      expect(table.lookupSync(a)).toBeNull();
    }
    expect(count()).toBe(0);
    await expect(lookup(table, '::FFFF:10.0.0.1')).resolves.toBe('02:00:00:00:00:01');
    expect(table.lookupSync('::ffff:10.0.0.1')).toBe('02:00:00:00:00:01');
  });

  test('a read that hangs answers null at timeoutMs, is not repeated, and still refreshes the cache when it ends', async () => {
    const fifo = join(tempDir(), 'arp');
    execFileSync('mkfifo', [fifo]);
    // Nothing writes the FIFO, so the read blocks in open(2). Opening the write end (non-blocking:
    // it fails rather than waits if nobody reads) and closing it ends that read, at teardown too.
    const release = (text: string): void => {
      const fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
      writeSync(fd, text);
      closeSync(fd);
    };
    let released = false;
    onTeardown(() => { if (!released) try { release(''); } catch { /* no reader left */ } });

    let done!: () => void;
    const ended = new Promise<void>((resolve) => { done = resolve; });
    let reads = 0;
    const read: ReadText = (file, cb) => { reads++; readFile(file, 'utf8', (err, text) => { cb(err, text); done(); }); };
    const table = new NeighbourTable({ file: fifo, read, timeoutMs: 100 });

    const started = performance.now();
    const cbs = [jest.fn(), jest.fn()];
    const answered = Promise.all(cbs.map((cb) => new Promise<void>((resolve) => table.lookup('10.0.0.1', (mac) => { cb(mac); resolve(); }))));
    await answered;
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThanOrEqual(95);
    expect(waited).toBeLessThan(1000);
    expect(cbs.map((cb) => cb.mock.calls)).toEqual([[[null]], [[null]]]);

    const late = jest.fn();
    table.lookup('10.0.0.1', late);
    expect(late.mock.calls).toEqual([[null]]);
    expect(reads).toBe(1);

    released = true;
    release(arp(['10.0.0.1', '02:00:00:00:00:01']));
    await ended;
    expect(table.lookupSync('10.0.0.1')).toBe('02:00:00:00:00:01');
    expect(cbs.map((cb) => cb.mock.calls.length)).toEqual([1, 1]);
    expect(late).toHaveBeenCalledTimes(1);
  });

  test('leaves no timer behind, whether the read ends in time or not', () => {
    jest.useFakeTimers();
    try {
      const pending: Array<(err: Error | null, text?: string) => void> = [];
      const table = new NeighbourTable({ read: (_file, cb) => pending.push(cb), now: () => 0, timeoutMs: 100 });
      const cb = jest.fn();
      table.lookup('10.0.0.1', cb);
      expect(jest.getTimerCount()).toBe(1);
      pending[0](null, arp(['10.0.0.1', '02:00:00:00:00:01']));
      expect(jest.getTimerCount()).toBe(0);
      expect(cb.mock.calls).toEqual([['02:00:00:00:00:01']]);

      const hung = new NeighbourTable({ read: (_file, cb2) => pending.push(cb2), now: () => 0, timeoutMs: 100 });
      const cb3 = jest.fn();
      hung.lookup('10.0.0.1', cb3);
      jest.advanceTimersByTime(99);
      expect(cb3).not.toHaveBeenCalled();
      jest.advanceTimersByTime(1);
      expect(cb3.mock.calls).toEqual([[null]]);
      expect(jest.getTimerCount()).toBe(0);
      pending[1](null, '');
      expect(cb3).toHaveBeenCalledTimes(1);
    } finally {
      jest.useRealTimers();
    }
  });
});

/**
 * The real kernel table: a client in a network namespace of its own, with a MAC we choose,
 * connects to us over a veth pair, and its entry must show up in the root namespace's
 * /proc/net/arp. Needs root and `ip netns`: skipped otherwise, except under CI, where it must run.
 */
const available = netnsAvailable();
const required = process.env.CI === 'true';
if (!available && !required) console.warn('skipping the kernel neighbour-table test: "ip netns add" does not work here (it needs root and iproute2)');

describe('NeighbourTable on the kernel table', () => {
  (available || required ? test : test.skip)('finds the MAC of a client in another namespace', async () => {
    if (!available) throw new Error('this test needs "ip netns add" (root and iproute2); CI=true does not skip it');
    const ns = createNamespace();
    const mac = '52:54:00:12:34:56';
    setMac(ns, mac);

    const server = net.createServer((s) => { s.on('error', () => {}); s.end(); });
    const port = await listen(server, ns.gatewayAddress);
    const accepted = new Promise<string | undefined>((resolve) => server.once('connection', (s) => resolve(s.remoteAddress)));
    await expect(tcpFrom(ns.name, ns.gatewayAddress, port)).resolves.toBe('');
    await expect(accepted).resolves.toBe(ns.clientAddress);

    await expect(lookup(new NeighbourTable({ timeoutMs: READ_WAIT_MS }), ns.clientAddress)).resolves.toBe(mac);
    await expect(lookup(new NeighbourTable({ timeoutMs: READ_WAIT_MS }), `::ffff:${ns.clientAddress}`)).resolves.toBe(mac);
  });
});
