import * as net from 'node:net';
import { writeFileSync, renameSync, mkdtempSync, symlinkSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile, parseConfig } from '../../src/config/load';
import { createGateway, type Gateway } from '../../src/gateway';
import type { LogRecord } from '../../src/events/events';
import {
  adminGet, closed, connect, listen, metricValue, nextDisconnect, onTeardown, portOf, readAll, roundTrip, startTaggedServer, unusedPort, waitFor,
} from '../helpers/net';

function yaml(services: string, extra = ''): string {
  return `admin: { listen: "127.0.0.1:0" }
log: { events: "off" }
shutdownGrace: 500ms
${extra}
services:
${services}`;
}

async function startFromFile(text: string, options: { watch?: boolean; dir?: string; name?: string } = {}): Promise<{ gw: Gateway; file: string; logs: LogRecord[] }> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'mapgate-reload-'));
  const file = join(dir, options.name ?? 'mappings.yaml');
  if (!options.dir) writeFileSync(file, text);
  const gw = createGateway(loadConfigFile(file), { defaultMetrics: false, watch: options.watch });
  const logs: LogRecord[] = [];
  gw.on('log', (r) => logs.push(r));
  await gw.start();
  onTeardown(() => gw.destroy());
  return { gw, file, logs };
}

const svc = (name: string, port: number, dest: number, extra = ''): string => `  - name: ${name}
    port: ${port}
    bind: [127.0.0.1]
    destination: 127.0.0.1:${dest}
${extra}`;

describe('hot reload', () => {
  test('a valid file applies as a diff: kept sockets, new and removed listeners, new routes for new connections only', async () => {
    const [a, b] = await Promise.all([startTaggedServer('a'), startTaggedServer('b')]);
    const [p1, p2, p3] = [await unusedPort(), await unusedPort(), await unusedPort()];
    const { gw, file, logs } = await startFromFile(yaml(svc('one', p1, a) + svc('two', p2, a)));
    const server1 = gw.endpoints().find((e) => e.service === 'one')!;
    // An open connection through "one", routed to a.
    const held = await connect(p1);
    held.write('1');
    await waitFor(() => held.bytesRead >= 3);

    writeFileSync(file, yaml(svc('one', p1, b) + svc('three', p3, b)));
    const r = await gw.reloadFromFile();
    expect(r).toMatchObject({ ok: true, added: ['three'], removed: ['two'], changed: ['one'] });
    expect(r.bound).toEqual([`three@127.0.0.1:${p3}`]);
    expect(r.closed).toEqual([`two@127.0.0.1:${p2}`]);
    expect(logs.find((l) => l.msg === 'config reloaded')).toMatchObject({ added: ['three'], removed: ['two'], changed: ['one'] });

    // The kept listener is the same socket (same port, never closed); new connections take the new route.
    expect(gw.endpoints().find((e) => e.service === 'one')).toEqual(server1);
    expect((await roundTrip(p1, 'x')).toString()).toBe('b:x');
    expect((await roundTrip(p3, 'y')).toString()).toBe('b:y');
    await expect(connect(p2)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    // The connection opened before the reload still goes to its old destination.
    const rest = readAll(held);
    held.end('2');
    expect((await rest).toString()).toBe('a:12');
    expect(await metricValue(gw, 'mapgate_config_reload_total', { result: 'success' })).toBe(1);
    expect(await metricValue(gw, 'mapgate_config_last_reload_successful')).toBe(1);
  });

  test('an invalid file changes nothing; errors carry file:line:col; metrics say so', async () => {
    const a = await startTaggedServer('a');
    const p1 = await unusedPort();
    const { gw, file, logs } = await startFromFile(yaml(svc('one', p1, a)));
    const t0 = await metricValue(gw, 'mapgate_config_last_reload_success_timestamp_seconds');
    writeFileSync(file, yaml(svc('one', p1, a).replace('port:', 'prot:')));
    const r = await gw.reloadFromFile();
    expect(r.ok).toBe(false);
    expect(r.message).toContain(`${file}:7:5: services[0].prot: unknown key`);
    expect(logs.find((l) => l.msg.startsWith('config reload refused'))?.problems).toEqual(expect.arrayContaining([expect.stringContaining(`${file}:7:5`)]));
    expect((await roundTrip(p1, 'still')).toString()).toBe('a:still');
    expect(await metricValue(gw, 'mapgate_config_reload_total', { result: 'failure' })).toBe(1);
    expect(await metricValue(gw, 'mapgate_config_last_reload_successful')).toBe(0);
    expect(await metricValue(gw, 'mapgate_config_last_reload_success_timestamp_seconds')).toBe(t0);
    // A later good reload recovers.
    writeFileSync(file, yaml(svc('one', p1, a)));
    expect((await gw.reloadFromFile()).ok).toBe(true);
    expect(await metricValue(gw, 'mapgate_config_last_reload_successful')).toBe(1);
  });

  test('a reload whose new listener cannot bind is refused whole', async () => {
    const a = await startTaggedServer('a');
    const [p1, p2] = [await unusedPort(), await unusedPort()];
    const blocker = net.createServer();
    const taken = await listen(blocker);
    const { gw, file } = await startFromFile(yaml(svc('one', p1, a) + svc('two', p2, a)));
    writeFileSync(file, yaml(svc('one', p1, a) + svc('new1', await unusedPort(), a) + svc('clash', taken, a)));
    const r = await gw.reloadFromFile();
    expect(r.ok).toBe(false);
    expect(r.message).toContain(`service "clash": cannot listen on 127.0.0.1:${taken}: EADDRINUSE`);
    // Old config fully in force: "two" still serves; "new1" was not left bound.
    expect(gw.endpoints().map((e) => e.service).sort()).toEqual(['one', 'two']);
    expect((await roundTrip(p2, 'z')).toString()).toBe('a:z');
  });

  test('removed listeners drain: open connections end with reason shutdown after shutdownGrace', async () => {
    const a = await startTaggedServer('a');
    const [p1, p2] = [await unusedPort(), await unusedPort()];
    const { gw, file } = await startFromFile(yaml(svc('one', p1, a) + svc('two', p2, a)));
    const s = await connect(p2);
    s.write('q');
    await waitFor(() => s.bytesRead >= 3);
    const done = nextDisconnect(gw);
    writeFileSync(file, yaml(svc('one', p1, a)));
    const t0 = Date.now();
    expect((await gw.reloadFromFile()).ok).toBe(true);
    // Still relaying during the grace period.
    s.write('r');
    await waitFor(() => s.bytesRead >= 4);
    await closed(s);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    expect(await done).toMatchObject({ service: 'two', reason: 'shutdown' });
  });

  test('a removed service keeps its series while its connections drain, then leaves /metrics; re-added, it starts again', async () => {
    const a = await startTaggedServer('a');
    const [p1, p2] = [await unusedPort(), await unusedPort()];
    const { gw, file } = await startFromFile(yaml(svc('one', p1, a) + svc('two', p2, a)));
    const serviceSeries = async (name: string): Promise<string[]> =>
      (await gw.metrics.registry.metrics()).split('\n').filter((l) => l.includes(`service="${name}"`));
    const s = await connect(p2);
    s.write('q');
    await waitFor(() => s.bytesRead >= 3);
    const done = nextDisconnect(gw);
    writeFileSync(file, yaml(svc('one', p1, a)));
    expect((await gw.reloadFromFile()).ok).toBe(true);
    // Draining: still counted, so the last bytes and the outcome are not lost.
    expect(await metricValue(gw, 'mapgate_connections_active', { service: 'two' })).toBe(1);
    s.end();
    expect(await done).toMatchObject({ service: 'two', reason: 'client-closed' });
    expect(await serviceSeries('two')).toEqual([]);
    expect((await serviceSeries('one')).length).toBeGreaterThan(10);
    expect(await metricValue(gw, 'mapgate_connections_active', { service: 'one' })).toBe(0);

    // Removed with nothing open: gone at once. Added back: zeroed series again.
    writeFileSync(file, yaml(svc('one', p1, a) + svc('two', p2, a)));
    expect((await gw.reloadFromFile()).ok).toBe(true);
    expect(await metricValue(gw, 'mapgate_connections_total', { service: 'two', outcome: 'client-closed' })).toBe(0);
    writeFileSync(file, yaml(svc('two', p2, a)));
    expect((await gw.reloadFromFile()).ok).toBe(true);
    expect(await serviceSeries('one')).toEqual([]);
    expect(await metricValue(gw, 'mapgate_listeners', { service: 'two' })).toBe(1);
  });

  test('limits and timeouts apply to new connections after a reload', async () => {
    const a = await startTaggedServer('a');
    const p1 = await unusedPort();
    const { gw, file } = await startFromFile(yaml(svc('one', p1, a)));
    const first = await connect(p1);
    await waitFor(() => first.bytesRead >= 2);
    writeFileSync(file, yaml(svc('one', p1, a, '    maxConnections: 1\n')));
    expect((await gw.reloadFromFile()).ok).toBe(true);
    const done = nextDisconnect(gw);
    const second = await connect(p1);
    await closed(second);
    expect(await done).toMatchObject({ reason: 'limit' });
    expect(await metricValue(gw, 'mapgate_connections_max', { service: 'one' })).toBe(1);
  });

  test('the file watcher reloads on in-place writes and on rename-over saves; no change, no reload', async () => {
    const [a, b, c] = await Promise.all([startTaggedServer('a'), startTaggedServer('b'), startTaggedServer('c')]);
    const p1 = await unusedPort();
    const { gw, file } = await startFromFile(yaml(svc('one', p1, a)), { watch: true });
    const reloads = (): Promise<number> => metricValue(gw, 'mapgate_config_reload_total', { result: 'success' });
    writeFileSync(file, yaml(svc('one', p1, b)));
    await waitFor(() => gw.config.services[0].destinations[0].port === b, 5000, 'in-place write reload');
    expect((await roundTrip(p1, '1')).toString()).toBe('b:1');
    // An editor's save: write a temp file, rename it over the config.
    writeFileSync(file + '.tmp', yaml(svc('one', p1, c)));
    renameSync(file + '.tmp', file);
    await waitFor(() => gw.config.services[0].destinations[0].port === c, 5000, 'rename reload');
    expect((await roundTrip(p1, '2')).toString()).toBe('c:2');
    const n = await reloads();
    writeFileSync(file, readFileSync(file));
    await new Promise((r) => setTimeout(r, 600));
    expect(await reloads()).toBe(n);
  });

  test('a Kubernetes-style ConfigMap update (..data symlink swap) is seen', async () => {
    const [a, b] = await Promise.all([startTaggedServer('a'), startTaggedServer('b')]);
    const p1 = await unusedPort();
    const dir = mkdtempSync(join(tmpdir(), 'mapgate-cm-'));
    // The kubelet layout: mappings.yaml -> ..data/mappings.yaml, ..data -> ..2026_v1
    mkdirSync(join(dir, '..v1'));
    writeFileSync(join(dir, '..v1', 'mappings.yaml'), yaml(svc('one', p1, a)));
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync(join('..data', 'mappings.yaml'), join(dir, 'mappings.yaml'));
    const { gw } = await startFromFile('', { watch: true, dir });
    expect((await roundTrip(p1, '1')).toString()).toBe('a:1');
    mkdirSync(join(dir, '..v2'));
    writeFileSync(join(dir, '..v2', 'mappings.yaml'), yaml(svc('one', p1, b)));
    symlinkSync('..v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    await waitFor(() => gw.config.services[0].destinations[0].port === b, 5000, 'configmap reload');
    expect((await roundTrip(p1, '2')).toString()).toBe('b:2');
  });

  test('POST /reload on the admin endpoint reloads; GET is refused', async () => {
    const [a, b] = await Promise.all([startTaggedServer('a'), startTaggedServer('b')]);
    const p1 = await unusedPort();
    const { gw, file } = await startFromFile(yaml(svc('one', p1, a)));
    writeFileSync(file, yaml(svc('one', p1, b)));
    const { host, port } = gw.adminAddress()!;
    const res = await fetch(`http://${host}:${port}/reload`, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/^reloaded: services \+0 -0 ~1/);
    expect((await roundTrip(p1, 'k')).toString()).toBe('b:k');
    expect((await adminGet(gw, '/reload')).status).toBe(405);
    writeFileSync(file, 'services: [');
    const bad = await fetch(`http://${host}:${port}/reload`, { method: 'POST' });
    expect(bad.status).toBe(422);
    expect(await bad.text()).toContain(`${file}:1:`);
  });

  test('reload applies through parseConfig objects too (library API)', async () => {
    const [a, b] = await Promise.all([startTaggedServer('a'), startTaggedServer('b')]);
    const p1 = await unusedPort();
    const gw = createGateway(parseConfig(yaml(svc('one', p1, a))), { defaultMetrics: false });
    await gw.start();
    onTeardown(() => gw.destroy());
    expect((await gw.reload(parseConfig(yaml(svc('one', p1, b))))).ok).toBe(true);
    expect((await roundTrip(p1, 'l')).toString()).toBe('b:l');
  });
});

describe('interface addresses', () => {
  test('an address appearing on an internal interface gets its listeners; one that disappears loses them', async () => {
    const { nic } = { nic: (address: string) => ({ address, netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: `${address}/8` }) };
    const table: Record<string, ReturnType<typeof nic>[]> = { lo: [nic('127.0.0.1')] };
    const a = await startTaggedServer('a');
    const port = await unusedPort();
    const gw = createGateway(parseConfig(yaml(`  - name: one
    port: ${port}
    bind: internal
    destination: 127.0.0.1:${a}
`)), { defaultMetrics: false, interfacePollMs: 50, networkInterfaces: () => table as never });
    const logs: LogRecord[] = [];
    gw.on('log', (r) => logs.push(r));
    await gw.start();
    onTeardown(() => gw.destroy());
    expect(gw.endpoints().map((e) => e.address)).toEqual(['127.0.0.1']);
    await expect(connect(port, '127.0.0.2')).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    table.lo = [nic('127.0.0.1'), nic('127.0.0.2')];
    await waitFor(() => gw.endpoints().length === 2, 5000, 'a listener on the new address');
    expect((await roundTrip(port, 'new', '127.0.0.2')).toString()).toBe('a:new');
    expect(logs.find((l) => l.msg === 'interface addresses changed')).toMatchObject({ bound: [`one@127.0.0.2:${port}`], closed: [] });

    table.lo = [nic('127.0.0.1')];
    await waitFor(() => gw.endpoints().length === 1, 5000, 'the listener to go');
    await expect(connect(port, '127.0.0.2')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect((await roundTrip(port, 'old')).toString()).toBe('a:old');
  });
});

describe('what a refused or interrupted reload leaves behind', () => {
  test('a refused 50-service reload leaves no series of the services it would have added', async () => {
    const a = await startTaggedServer('a');
    const { gw, file } = await startFromFile(yaml(svc('one', 0, a)));
    const blocker = net.createServer();
    const taken = await listen(blocker);
    onTeardown(() => new Promise<void>((r) => blocker.close(() => r())));
    const extra = Array.from({ length: 49 }, (_, i) => svc(`new${i}`, 0, a)).join('');
    writeFileSync(file, yaml(svc('one', 0, a) + extra + svc('blocked', taken, a)));
    const r = await gw.reloadFromFile();
    expect(r.ok).toBe(false);
    expect(r.message).toContain(`cannot listen on 127.0.0.1:${taken}: EADDRINUSE`);
    const text = await gw.metrics.registry.metrics();
    const services = new Set([...text.matchAll(/service="([^"]+)"/g)].map((m) => m[1]));
    expect([...services]).toEqual(['one']);
    expect(gw.endpoints().map((e) => e.service)).toEqual(['one']);
    expect((await roundTrip(portOf(gw, 'one'), 'still')).toString()).toBe('a:still');
  });

  test('a listener removed and re-added within shutdownGrace: the drain ends only the old connections', async () => {
    const a = await startTaggedServer('a');
    const port = await unusedPort();
    const { gw, file } = await startFromFile(yaml(svc('one', port, a) + svc('keep', 0, a)));
    const old = await connect(port);
    old.write('1');
    await waitFor(() => old.bytesRead >= 3);
    const oldEnd = nextDisconnect(gw);
    writeFileSync(file, yaml(svc('keep', 0, a)));
    expect((await gw.reloadFromFile()).closed).toEqual([`one@127.0.0.1:${port}`]);
    writeFileSync(file, yaml(svc('one', port, a) + svc('keep', 0, a)));
    expect((await gw.reloadFromFile()).bound).toEqual([`one@127.0.0.1:${port}`]);
    const fresh = await connect(port);
    fresh.write('2');
    await waitFor(() => fresh.bytesRead >= 3);
    // The first listener's grace runs out: its connection ends, the new listener's stays.
    expect(await oldEnd).toMatchObject({ reason: 'shutdown' });
    await new Promise((r) => setTimeout(r, 200));
    expect(fresh.destroyed).toBe(false);
    fresh.write('3');
    await waitFor(() => fresh.bytesRead >= 4, 2000, 'the new connection to still relay');
    fresh.destroy();
    old.destroy();
  });

  test('a prepared reload holds its new listeners\' clients until commit; an abort closes them and leaves nothing', async () => {
    const a = await startTaggedServer('a');
    const { gw } = await startFromFile(yaml(svc('one', 0, a)));
    const base = gw.config;
    const next = parseConfig(yaml(svc('one', 0, a) + svc('two', 0, a)));
    const p = await gw.prepareReload(next);
    if (!p.ok) throw new Error(p.result.message);
    // Bound but not in force: /status and endpoints still show the running config.
    expect(gw.endpoints().map((e) => e.service)).toEqual(['one']);
    expect(gw.config).toBe(base);
    // Another reload waits for this one.
    let second = false;
    const queued = gw.reload(next).then((r) => { second = true; return r; });
    await new Promise((r) => setTimeout(r, 100));
    expect(second).toBe(false);
    const r = p.commit();
    expect(r).toMatchObject({ ok: true, added: ['two'] });
    expect((await roundTrip(portOf(gw, 'two'), 'x')).toString()).toBe('a:x');
    expect(await queued).toMatchObject({ ok: true, added: [], removed: [] });
    expect(() => p.commit()).toThrow(expect.objectContaining({ code: 'MAPGATE_ERR_STATE' }));

    const q = await gw.prepareReload(parseConfig(yaml(svc('one', 0, a) + svc('three', 0, a))));
    if (!q.ok) throw new Error(q.result.message);
    q.abort();
    expect(gw.endpoints().map((e) => e.service)).toEqual(['one', 'two']);
    const text = await gw.metrics.registry.metrics();
    expect(text).not.toContain('service="three"');
    expect((await gw.reload(base)).ok).toBe(true);
  });

  test('a client of a prepared listener is relayed once the reload commits, and closed if it aborts', async () => {
    const a = await startTaggedServer('a');
    const port = await unusedPort();
    const { gw } = await startFromFile(yaml(svc('one', 0, a)));
    const next = parseConfig(yaml(svc('one', 0, a) + svc('two', port, a)));
    const p = await gw.prepareReload(next);
    if (!p.ok) throw new Error(p.result.message);
    const early = await connect(port);
    early.write('e');
    await new Promise((r) => setTimeout(r, 100));
    expect(early.bytesRead).toBe(0);
    p.commit();
    await waitFor(() => early.bytesRead >= 3, 2000, 'the held client to be relayed');
    early.destroy();

    const port2 = await unusedPort();
    const q = await gw.prepareReload(parseConfig(yaml(svc('one', 0, a) + svc('two', port, a) + svc('three', port2, a))));
    if (!q.ok) throw new Error(q.result.message);
    const doomed = await connect(port2);
    const end = closed(doomed);
    await new Promise((r) => setTimeout(r, 50));
    q.abort();
    await end;
    expect(doomed.bytesRead).toBe(0);
  });
});

describe('interface addresses that vanish or are not usable yet', () => {
  const nic = (address: string) => ({ address, netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: `${address}/24` });
  type Table = Record<string, Array<ReturnType<typeof nic>>>;

  async function startWithTable(table: Table, services: string): Promise<{ gw: Gateway; logs: LogRecord[] }> {
    const gw = createGateway(parseConfig(yaml(services), '<inline>', { interfaces: table as never }), { defaultMetrics: false, interfacePollMs: 50, networkInterfaces: () => table as never });
    const logs: LogRecord[] = [];
    gw.on('log', (r) => logs.push(r));
    await gw.start();
    onTeardown(() => gw.destroy());
    return { gw, logs };
  }

  test('a named interface losing every address: a warning, the service stays with no listeners, the others serve; it binds again when one comes back', async () => {
    const a = await startTaggedServer('a');
    const [port, steady] = [await unusedPort(), await unusedPort()];
    const table: Table = { lan0: [nic('127.0.0.5')], lo: [nic('127.0.0.1')] };
    const { gw, logs } = await startWithTable(table, `  - name: lan
    port: ${port}
    bind: [lan0]
    destination: 127.0.0.1:${a}
  - name: steady
    port: ${steady}
    bind: [127.0.0.1]
    destination: 127.0.0.1:${a}
`);
    const noAddress = (): LogRecord[] => logs.filter((l) => l.msg.startsWith('service has no address'));
    expect((await roundTrip(port, 'x', '127.0.0.5')).toString()).toBe('a:x');
    table.lan0 = [];
    await waitFor(() => gw.endpoints().every((e) => e.service !== 'lan'), 5000, 'the listener to go');
    expect(noAddress()).toEqual([expect.objectContaining({ level: 'warn', service: 'lan' })]);
    expect(gw.status().services.find((s) => s.name === 'lan')!.listeners).toEqual([]);
    expect(await metricValue(gw, 'mapgate_listeners', { service: 'lan' })).toBe(0);
    expect((await roundTrip(steady, 'y')).toString()).toBe('a:y');
    await new Promise((r) => setTimeout(r, 200));
    // Still one warning: the poll does not repeat it.
    expect(noAddress()).toHaveLength(1);

    table.lan0 = [nic('127.0.0.5')];
    await waitFor(() => gw.endpoints().some((e) => e.service === 'lan'), 5000, 'the listener to come back');
    expect((await roundTrip(port, 'z', '127.0.0.5')).toString()).toBe('a:z');
    expect(await metricValue(gw, 'mapgate_listeners', { service: 'lan' })).toBe(1);
    expect(logs.some((l) => l.msg === 'service has an address to listen on again' && l.service === 'lan')).toBe(true);
  });

  test('an interface address that cannot be bound yet (EADDRNOTAVAIL) is logged once and retried; the other addresses serve', async () => {
    const a = await startTaggedServer('a');
    const port = await unusedPort();
    // 192.0.2.77 (TEST-NET-1) is on no interface of this host: binding it fails as a tentative address does.
    const table: Table = { lan0: [nic('127.0.0.6'), nic('192.0.2.77')] };
    const { gw, logs } = await startWithTable(table, `  - name: lan
    port: ${port}
    bind: [lan0]
    destination: 127.0.0.1:${a}
`);
    expect(gw.endpoints().map((e) => e.address)).toEqual(['127.0.0.6']);
    expect((await roundTrip(port, 'x', '127.0.0.6')).toString()).toBe('a:x');
    expect(gw.status().services[0].waiting).toEqual([{ address: `192.0.2.77:${port}`, error: expect.stringContaining('EADDRNOTAVAIL') }]);
    await new Promise((r) => setTimeout(r, 300));
    expect(logs.filter((l) => l.msg.startsWith('address not usable yet'))).toEqual([expect.objectContaining({ level: 'warn', address: '192.0.2.77', port })]);
    // Gone from the interface: no longer waited for.
    table.lan0 = [nic('127.0.0.6')];
    await waitFor(() => gw.status().services[0].waiting.length === 0, 5000, 'the wait to end');
  });

  test('a literal address that cannot be bound still stops start-up', async () => {
    const a = await startTaggedServer('a');
    const gw = createGateway(parseConfig(yaml(`  - name: lan
    port: 0
    bind: [192.0.2.77]
    destination: 127.0.0.1:${a}
`)), { defaultMetrics: false });
    await expect(gw.start()).rejects.toMatchObject({ code: 'MAPGATE_ERR_BIND', message: expect.stringContaining('cannot listen on 192.0.2.77:0: EADDRNOTAVAIL') });
  });
});

describe('a second stop', () => {
  test('destroy() while close() drains: every connection ends now with reason shutdown', async () => {
    const a = await startTaggedServer('a');
    const gw = createGateway(parseConfig(yaml(svc('one', 0, a)).replace('shutdownGrace: 500ms', 'shutdownGrace: 60s')), { defaultMetrics: false });
    await gw.start();
    onTeardown(() => gw.destroy());
    const c = await connect(portOf(gw, 'one'));
    c.write('1');
    await waitFor(() => c.bytesRead >= 3);
    const end = nextDisconnect(gw);
    const closing = gw.close();
    await new Promise((r) => setTimeout(r, 100));
    expect(c.destroyed).toBe(false);
    const t0 = Date.now();
    const destroyed = gw.destroy();
    expect(destroyed).toBe(closing);
    await destroyed;
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(await end).toMatchObject({ reason: 'shutdown' });
  });
});
