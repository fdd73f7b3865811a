import * as net from 'node:net';
import { writeFileSync } from 'node:fs';
import { closed, connect, listen, readAll, roundTrip, sendAndCollect, startEchoServer, startTaggedServer, unusedPort, waitFor } from '../helpers/net';
import { cliResult, runCli, started, startedPort, writeConfig, type Running } from '../helpers/process';

const cfg = (body: string): string => `
admin: { listen: "127.0.0.1:0" }
log: { events: stdout }
shutdownGrace: 1s
${body}`;

/** `mapgate run` relaying one service to an echo server. */
async function runEcho(shutdownGrace = '1s'): Promise<Running> {
  const { port } = await startEchoServer();
  return runCli(['run', '-c', writeConfig(cfg(`
services:
  - name: echo
    port: 0
    bind: [127.0.0.1]
    destination: 127.0.0.1:${port}
`).replace('shutdownGrace: 1s', `shutdownGrace: ${shutdownGrace}`))]);
}

/** {@link runEcho}, with one connection open through it that has echoed `first`. */
async function echoWithOpenConnection(shutdownGrace: string, first: string): Promise<{ r: Running; p: number; s: net.Socket }> {
  const r = await runEcho(shutdownGrace);
  const p = startedPort(await started(r), 'echo');
  const s = await connect(p);
  s.write(first);
  await new Promise((res) => s.once('data', res));
  return { r, p, s };
}

describe('mapgate CLI', () => {
  test('--version and --help', async () => {
    const v = await cliResult(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout).toBe(require('../../package.json').version);
    const h = await cliResult(['--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain('mapgate check [-c FILE]');
    const bad = await cliResult(['frobnicate']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown argument: frobnicate');
  });

  test('run relays, logs ClientConnect/ClientDisconnect as JSON lines on stdout', async () => {
    const r = await runEcho();
    const info = await started(r);
    expect((await roundTrip(startedPort(info, 'echo'), 'through the cli')).toString()).toBe('through the cli');
    await waitFor(() => r.stdout.length >= 2);
    const [c, d] = r.stdout.map((l) => JSON.parse(l));
    expect(c).toMatchObject({ event: 'ClientConnect', service: 'echo' });
    expect(d).toMatchObject({ event: 'ClientDisconnect', id: c.id, bytesFromClient: 15, bytesToClient: 15, reason: 'client-closed' });
    r.child.kill('SIGTERM');
    expect(await r.exit).toBe(0);
  });

  test('run warns when Node lacks the young-generation cap every launcher passes, and only then', async () => {
    const file = writeConfig(cfg('services: []\n'));
    const warning = (lines: string[]): string[] => lines.filter((l) => l.includes('without --max-semi-space-size'));
    const runs = [
      { r: runCli(['run', '-c', file], {}, []), warns: true },
      { r: runCli(['run', '-c', file]), warns: false },
      { r: runCli(['run', '-c', file], { NODE_OPTIONS: '--max-semi-space-size=4' }, []), warns: false },
    ];
    for (const { r, warns } of runs) {
      await started(r);
      expect(warning(r.stderr)).toHaveLength(warns ? 1 : 0);
      r.child.kill('SIGTERM');
      expect(await r.exit).toBe(0);
    }
    expect(JSON.parse(warning(runs[0].r.stderr)[0])).toMatchObject({ level: 'warn' });
  });

  test('a port in use fails start-up naming service, address and port; nothing stays bound', async () => {
    const blocker = net.createServer();
    const taken = await listen(blocker);
    const free = net.createServer();
    const freePort = await listen(free);
    await new Promise<void>((res) => free.close(() => res()));
    const r = runCli(['run', '-c', writeConfig(cfg(`
services:
  - name: ok
    port: ${freePort}
    bind: [127.0.0.1]
    destination: 127.0.0.1:9
  - name: clash
    port: ${taken}
    bind: [127.0.0.1]
    destination: 127.0.0.1:9
`))]);
    expect(await r.exit).toBe(1);
    expect(r.stderr.join('\n')).toContain(`service "clash": cannot listen on 127.0.0.1:${taken}: EADDRINUSE`);
    // The other service's listener was closed again: its port is free.
    const probe = net.createServer();
    await new Promise<void>((res, rej) => { probe.once('error', rej); probe.listen(freePort, '127.0.0.1', () => res()); });
    await new Promise<void>((res) => probe.close(() => res()));
  });

  test('an address absent from the host fails start-up with its name', async () => {
    const r = runCli(['run', '-c', writeConfig(cfg(`
services:
  - name: ghost
    port: 0
    bind: [192.0.2.77]
    destination: 127.0.0.1:9
`))]);
    expect(await r.exit).toBe(1);
    expect(r.stderr.join('\n')).toMatch(/service "ghost": cannot listen on 192\.0\.2\.77:0: EADDRNOTAVAIL/);
  });

  test('an invalid config is refused with file:line:col and exit 1, before anything binds', async () => {
    const file = writeConfig(cfg(`
services:
  - name: s
    port: 99999
    destination: 127.0.0.1:9
`));
    const r = await cliResult(['run', '-c', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${file}:8:11: services[0].port: must be <= 65535`);
    expect(r.stderr).not.toContain('mapgate started');
  });

  test('SIGTERM: stops accepting, lets open connections finish, exits 0', async () => {
    const { r, p, s } = await echoWithOpenConnection('10s', 'before');
    r.child.kill('SIGTERM');
    await waitFor(() => r.stderr.some((l) => l.includes('"draining"')));
    // New connections are refused...
    await expect(connect(p)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    // ...while the open one still relays, and its end lets the process exit well before the grace.
    const rest = readAll(s);
    s.end('after');
    expect((await rest).toString()).toBe('after');
    const t0 = Date.now();
    expect(await r.exit).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    const reasons = r.stdout.map((l) => JSON.parse(l)).filter((e) => e.event === 'ClientDisconnect').map((e) => e.reason);
    expect(reasons).toEqual(['client-closed']);
  });

  test('SIGINT: connections still open after shutdownGrace are closed with reason shutdown', async () => {
    const { r, s } = await echoWithOpenConnection('1s', 'x');
    const t0 = Date.now();
    r.child.kill('SIGINT');
    await closed(s);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(await r.exit).toBe(0);
    const d = r.stdout.map((l) => JSON.parse(l)).find((e) => e.event === 'ClientDisconnect');
    expect(d).toMatchObject({ reason: 'shutdown', bytesFromClient: 1, bytesToClient: 1 });
  });

  test('a second SIGTERM while draining closes every connection now (reason shutdown) and exits 0', async () => {
    const { r, s } = await echoWithOpenConnection('60s', 'x');
    r.child.kill('SIGTERM');
    await waitFor(() => r.stderr.some((l) => l.includes('"shutting down"')), 5000, 'the drain to start');
    await new Promise((res) => setTimeout(res, 200));
    expect(s.destroyed).toBe(false);
    const t0 = Date.now();
    r.child.kill('SIGTERM');
    await closed(s);
    expect(await r.exit).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(r.stderr.some((l) => l.includes('second signal: closing every connection now'))).toBe(true);
    const d = r.stdout.map((l) => JSON.parse(l)).find((e) => e.event === 'ClientDisconnect');
    expect(d).toMatchObject({ reason: 'shutdown', bytesFromClient: 1, bytesToClient: 1 });
  });

  test('the bundled mappings.yaml: the gateway serves its own /metrics through a mapping', async () => {
    // Same config as `npm start`, with ports moved to 0 so the test never collides with a running copy.
    const { readFileSync } = await import('node:fs');
    const bundled = readFileSync(require.resolve('../../mappings.yaml'), 'utf8');
    const yaml = bundled.replace('listen: 127.0.0.1:9464', 'listen: 127.0.0.1:0').replace('port: 9465', 'port: 0');
    expect(yaml).not.toBe(bundled);
    // The mapping's destination is the admin port, so both must be known before start: take a
    // free port from the OS (bind to 0, close) — the one place a port is chosen ahead, since a
    // separate process cannot report a port it has not bound yet.
    const admin = net.createServer();
    const adminPort = await listen(admin);
    await new Promise<void>((res) => admin.close(() => res()));
    const r = runCli(['run', '-c', writeConfig(yaml.replace('listen: 127.0.0.1:0', `listen: 127.0.0.1:${adminPort}`).replace('destination: 127.0.0.1:9464', `destination: 127.0.0.1:${adminPort}`))]);
    const p = startedPort(await started(r), 'admin-via-gateway');
    const res = await sendAndCollect(p, 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(res.data.toString()).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(res.data.toString()).toContain('mapgate_connections_active{service="admin-via-gateway"} 1');
    r.child.kill('SIGTERM');
    expect(await r.exit).toBe(0);
  });

  test('reload: `mapgate reload` (POST /reload) applies the edited file, SIGHUP reloads, an invalid file is refused locally', async () => {
    const [a, b] = await Promise.all([startTaggedServer('a'), startTaggedServer('b')]);
    // `mapgate reload` finds the admin endpoint in the config file, so its port is fixed here.
    const adminPort = await unusedPort();
    const text = (dest: number): string => cfg(`
services:
  - name: s
    port: 0
    bind: [127.0.0.1]
    destination: 127.0.0.1:${dest}
`).replace('127.0.0.1:0', `127.0.0.1:${adminPort}`);
    const file = writeConfig(text(a));
    const r = runCli(['run', '-c', file]);
    const p = startedPort(await started(r), 's');
    expect((await roundTrip(p, '1')).toString()).toBe('a:1');

    writeFileSync(file, text(b));
    const reload = await cliResult(['reload', '-c', file]);
    expect(reload.code).toBe(0);
    // The file watcher may have applied the edit first, so "~1" or "~0" services changed.
    expect(reload.stdout).toMatch(/^reloaded: services \+0 -0 ~[01], listeners \+0 -0$/);
    expect((await roundTrip(p, '2')).toString()).toBe('b:2');

    // SIGHUP reloads even when the file is unchanged (so the watcher cannot be what reloads here).
    await new Promise((res) => setTimeout(res, 500));
    const before = r.stderr.filter((l) => l.includes('"config reloaded"')).length;
    r.child.kill('SIGHUP');
    await waitFor(() => r.stderr.filter((l) => l.includes('"config reloaded"')).length === before + 1, 10_000, 'SIGHUP reload');
    expect((await roundTrip(p, '3')).toString()).toBe('b:3');

    writeFileSync(file, text(b).replace('port: 0', 'port: -1'));
    const refused = await cliResult(['reload', '-c', file]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`${file}:8:11: services[0].port: must be >= 0`);
    r.child.kill('SIGTERM');
    expect(await r.exit).toBe(0);
  });
});
