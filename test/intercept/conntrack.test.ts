import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canonicalAddress, ConntrackTable, parseConntrack } from '../../src/intercept/conntrack';
import { onTeardown } from '../helpers/net';

// /proc/net/nf_conntrack: IPv6 written out in full; accounting fields and [UNREPLIED] between the tuples.
const PROC = [
  'ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.1.20 dst=93.184.216.34 sport=51234 dport=143 src=10.0.1.1 dst=10.0.1.20 sport=143 dport=51234 [ASSURED] mark=0 zone=0 use=2',
  'ipv4     2 tcp      6 117 SYN_RECV src=10.0.1.20 dst=10.0.9.9 sport=40000 dport=993 packets=1 bytes=60 [UNREPLIED] src=10.0.1.1 dst=10.0.1.20 sport=993 dport=40000 packets=0 bytes=0 mark=0 use=1',
  'ipv4     2 tcp      6 299 ESTABLISHED src=10.0.1.30 dst=10.0.1.1 sport=41000 dport=1143 src=10.0.1.1 dst=10.0.1.30 sport=1143 dport=41000 [ASSURED] mark=0 zone=0 use=2',
  'ipv4     2 icmp     1 29 src=10.0.1.20 dst=10.0.1.1 type=8 code=0 id=7 src=10.0.1.1 dst=10.0.1.20 type=0 code=0 id=7 mark=0 use=1',
  'ipv4     2 udp      17 28 src=10.0.1.20 dst=10.0.1.1 sport=5353 dport=53 [UNREPLIED] src=10.0.1.1 dst=10.0.1.20 sport=53 dport=5353 mark=0 use=1',
  'ipv6     10 tcp      6 299 ESTABLISHED src=fd00:0001:0000:0000:0000:0000:0000:0020 dst=2001:0db8:0000:0000:0000:0000:0000:0143 sport=50000 dport=143 src=fd00:0001:0000:0000:0000:0000:0000:0001 dst=fd00:0001:0000:0000:0000:0000:0000:0020 sport=143 dport=50000 [ASSURED] mark=0 zone=0 use=2',
  'garbage',
  '',
].join('\n');

// `conntrack -L -p tcp -f ipv4` and `-f ipv6`: no family columns, IPv6 compressed.
const TOOL_V4 = 'tcp      6 431999 ESTABLISHED src=10.0.1.21 dst=198.51.100.7 sport=50111 dport=22 src=10.0.1.1 dst=10.0.1.21 sport=22 dport=50111 [ASSURED] mark=0 use=1\n';
const TOOL_V6 = 'tcp      6 431999 ESTABLISHED src=fd00:1::21 dst=2001:db8::22 sport=50112 dport=22 src=fd00:1::1 dst=fd00:1::21 sport=22 dport=50112 [ASSURED] mark=0 use=1\n';

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mapgate-ct-'));
  onTeardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A stand-in `conntrack` tool: prints `v4`/`v6` for `-f ipv4`/`-f ipv6`, counting its runs. */
function fakeTool(dir: string, options: { delay?: string; before?: string } = {}): { tool: string; runs: () => number } {
  writeFileSync(join(dir, 'v4'), TOOL_V4);
  writeFileSync(join(dir, 'v6'), TOOL_V6);
  const tool = join(dir, 'conntrack');
  // The table is read when the tool starts; a delay after that is the dump taking its time.
  writeFileSync(tool, `#!/bin/sh
echo "$*" >> "${dir}/runs"
case "$5" in ipv4) out=$(cat "${dir}/v4") ;; ipv6) out=$(cat "${dir}/v6") ;; *) exit 2 ;; esac
${options.delay ? `sleep ${options.delay}` : ''}
printf '%s\\n' "$out"
echo "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown." >&2
`);
  chmodSync(tool, 0o755);
  return { tool, runs: () => { try { return readFileSync(join(dir, 'runs'), 'utf8').split('\n').filter(Boolean).length; } catch { return 0; } } };
}

function lookup(t: ConntrackTable, client: [string, number], local: [string, number]): Promise<string | null> {
  return new Promise((resolve) => t.lookup({ address: client[0], port: client[1] }, { address: local[0], port: local[1] }, resolve));
}

describe('parseConntrack', () => {
  test('/proc/net/nf_conntrack lines: IPv4 and IPv6, [ASSURED] and [UNREPLIED], accounting fields; ICMP and garbage skipped', () => {
    const entries = parseConntrack(PROC);
    expect(entries).toEqual([
      { family: 4, protocol: 'tcp', state: 'ESTABLISHED', flags: ['ASSURED'],
        original: { src: '10.0.1.20', dst: '93.184.216.34', sport: 51234, dport: 143 },
        reply: { src: '10.0.1.1', dst: '10.0.1.20', sport: 143, dport: 51234 } },
      { family: 4, protocol: 'tcp', state: 'SYN_RECV', flags: ['UNREPLIED'],
        original: { src: '10.0.1.20', dst: '10.0.9.9', sport: 40000, dport: 993 },
        reply: { src: '10.0.1.1', dst: '10.0.1.20', sport: 993, dport: 40000 } },
      { family: 4, protocol: 'tcp', state: 'ESTABLISHED', flags: ['ASSURED'],
        original: { src: '10.0.1.30', dst: '10.0.1.1', sport: 41000, dport: 1143 },
        reply: { src: '10.0.1.1', dst: '10.0.1.30', sport: 1143, dport: 41000 } },
      { family: 4, protocol: 'udp', state: null, flags: ['UNREPLIED'],
        original: { src: '10.0.1.20', dst: '10.0.1.1', sport: 5353, dport: 53 },
        reply: { src: '10.0.1.1', dst: '10.0.1.20', sport: 53, dport: 5353 } },
      { family: 6, protocol: 'tcp', state: 'ESTABLISHED', flags: ['ASSURED'],
        original: { src: 'fd00:1::20', dst: '2001:db8::143', sport: 50000, dport: 143 },
        reply: { src: 'fd00:1::1', dst: 'fd00:1::20', sport: 143, dport: 50000 } },
    ]);
  });

  test('`conntrack -L` lines (no family columns, IPv6 compressed) and its summary line', () => {
    const entries = parseConntrack(`${TOOL_V4}${TOOL_V6}conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.\n`);
    expect(entries.map((e) => [e.family, e.original.dst, e.original.dport, e.reply.src])).toEqual([
      [4, '198.51.100.7', 22, '10.0.1.1'],
      [6, '2001:db8::22', 22, 'fd00:1::1'],
    ]);
  });

  test('a line with a port out of range or a tuple cut short is skipped', () => {
    expect(parseConntrack('ipv4 2 tcp 6 10 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=70000 dport=1 src=2.2.2.2 dst=1.1.1.1 sport=1 dport=70000')).toEqual([]);
    expect(parseConntrack('ipv4 2 tcp 6 10 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=5 dport=1 src=2.2.2.2')).toEqual([]);
  });

  test('canonicalAddress: zones dropped, IPv4-mapped unwrapped, IPv6 compressed', () => {
    expect(canonicalAddress('::ffff:10.0.1.1')).toBe('10.0.1.1');
    expect(canonicalAddress('fe80::1%eth1')).toBe('fe80::1');
    expect(canonicalAddress('FD00:0001:0000:0000:0000:0000:0000:0001')).toBe('fd00:1::1');
    expect(canonicalAddress('10.0.1.1')).toBe('10.0.1.1');
  });
});

describe('ConntrackTable', () => {
  test('from the file: a redirected connection\'s original destination; null for one made to the gateway itself, or unknown', async () => {
    const dir = tempDir();
    const file = join(dir, 'nf_conntrack');
    writeFileSync(file, PROC);
    const t = new ConntrackTable({ file, tool: join(dir, 'absent') });
    expect(await lookup(t, ['10.0.1.20', 51234], ['10.0.1.1', 143])).toBe('93.184.216.34:143');
    // As a dual-stack listener sees an IPv4 client.
    expect(await lookup(t, ['::ffff:10.0.1.20', 40000], ['::ffff:10.0.1.1', 993])).toBe('10.0.9.9:993');
    expect(await lookup(t, ['fd00:1::20', 50000], ['fd00:1::1', 143])).toBe('[2001:db8::143]:143');
    expect(await lookup(t, ['10.0.1.30', 41000], ['10.0.1.1', 1143])).toBeNull();
    expect(await lookup(t, ['10.0.1.20', 9], ['10.0.1.1', 143])).toBeNull();
    // UDP entries are never answered for a TCP connection.
    expect(await lookup(t, ['10.0.1.20', 5353], ['10.0.1.1', 53])).toBeNull();
    expect(t.source).toBe('proc');
  });

  test('without the file: the conntrack tool, IPv4 and IPv6; concurrent lookups share one read, which is cached briefly', async () => {
    const dir = tempDir();
    const fake = fakeTool(dir);
    const t = new ConntrackTable({ file: join(dir, 'no-such-file'), tool: fake.tool, timeoutMs: 2000 });
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0
      ? lookup(t, ['10.0.1.21', 50111], ['10.0.1.1', 22])
      : lookup(t, ['fd00:1::21', 50112], ['fd00:1::1', 22]))));
    expect(answers.filter((a) => a === '198.51.100.7:22')).toHaveLength(10);
    expect(answers.filter((a) => a === '[2001:db8::22]:22')).toHaveLength(10);
    expect(t.source).toBe('tool');
    expect(fake.runs()).toBe(2); // one read: -f ipv4 and -f ipv6
    expect(readFileSync(join(dir, 'runs'), 'utf8').split('\n').filter(Boolean).sort()).toEqual(['-L -p tcp -f ipv4', '-L -p tcp -f ipv6']);
    expect(await lookup(t, ['10.0.1.21', 50111], ['10.0.1.1', 22])).toBe('198.51.100.7:22');
    expect(fake.runs()).toBe(2); // answered from the cache
  });

  test('a lookup made while a read is under way, for a connection it may not hold, waits for the next read', async () => {
    const dir = tempDir();
    const fake = fakeTool(dir, { delay: '0.2' });
    const t = new ConntrackTable({ file: join(dir, 'no-such-file'), tool: fake.tool, timeoutMs: 3000 });
    const first = lookup(t, ['10.0.1.21', 50111], ['10.0.1.1', 22]);
    await new Promise((r) => setTimeout(r, 100)); // the first read has taken its copy of the table
    writeFileSync(join(dir, 'v4'), TOOL_V4 + TOOL_V4.replace(/50111/g, '50999').replace('198.51.100.7', '198.51.100.9'));
    const second = lookup(t, ['10.0.1.21', 50999], ['10.0.1.1', 22]);
    expect(await first).toBe('198.51.100.7:22');
    expect(await second).toBe('198.51.100.9:22');
    expect(fake.runs()).toBe(4);
  });

  test('a slow source: the lookup answers null within its timeout, and the dump is abandoned', async () => {
    const dir = tempDir();
    const fake = fakeTool(dir, { delay: '1' });
    const t = new ConntrackTable({ file: join(dir, 'no-such-file'), tool: fake.tool, timeoutMs: 100, readTimeoutMs: 300 });
    const since = Date.now();
    expect(await lookup(t, ['10.0.1.21', 50111], ['10.0.1.1', 22])).toBeNull();
    expect(Date.now() - since).toBeLessThan(400);
    // Let the abandoned dump end before the test does (jest must exit on its own).
    await new Promise((r) => setTimeout(r, 1200));
  });

  test('neither the file nor the tool: null, source null, and the next lookup answers at once without looking again', async () => {
    const dir = tempDir();
    const t = new ConntrackTable({ file: join(dir, 'no-such-file'), tool: join(dir, 'no-such-tool') });
    let calls = 0;
    const got = await new Promise<string | null>((resolve) => t.lookup({ address: '10.0.0.2', port: 1 }, { address: '10.0.0.1', port: 2 }, (o) => { calls++; resolve(o); }));
    expect(got).toBeNull();
    expect(t.source).toBeNull();
    const since = performance.now();
    expect(await lookup(t, ['10.0.0.2', 1], ['10.0.0.1', 2])).toBeNull();
    expect(performance.now() - since).toBeLessThan(20);
    await new Promise((r) => setTimeout(r, 150));
    expect(calls).toBe(1); // and no second call once its timeout has passed
  });
});
