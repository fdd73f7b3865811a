import * as fs from 'node:fs';
import { loadConfigFile, parseConfig } from '../../src/config/load';
import { createGateway } from '../../src/gateway';
import { configProblems } from '../config/problems';
import { connect, onTeardown, recordEvents, roundTrip, startEchoServer, startGateway } from '../helpers/net';
import { runCli, started, writeConfig } from '../helpers/process';

/** `port: auto`: one port the gateway picks for all of a service's addresses, shown everywhere, kept across reloads. */

const yaml = (echo: number, extra = ''): string => `
admin: { listen: "127.0.0.1:0" }
services:
  - name: picked
    port: auto
    bind: [127.0.0.1, "::1"]
    destination: "127.0.0.1:${echo}"${extra}
  - { name: fixed, port: 0, bind: [127.0.0.1], destination: "127.0.0.1:${echo}" }
`;

describe('port: auto', () => {
  test('one free port on every address; in /status and the events; kept across reloads while the service says auto', async () => {
    const echo = (await startEchoServer()).port;
    const gw = await startGateway(yaml(echo));
    const ports = gw.endpoints().filter((e) => e.service === 'picked').map((e) => e.port);
    expect(ports).toHaveLength(2);
    expect(ports[0]).toBeGreaterThan(0);
    expect(ports[1]).toBe(ports[0]);
    const port = ports[0];
    expect(gw.status().services.find((s) => s.name === 'picked')!.listeners.map((l) => l.address).sort()).toEqual([`127.0.0.1:${port}`, `[::1]:${port}`]);
    const events = recordEvents(gw);
    expect((await roundTrip(port, 'v4')).toString()).toBe('v4');
    expect((await roundTrip(port, 'v6', '::1')).toString()).toBe('v6');
    expect(events.filter((e) => e.event === 'ClientConnect').map((e) => e.listener).sort()).toEqual([`127.0.0.1:${port}`, `[::1]:${port}`]);

    // An open connection on it survives reloads that keep the port: the listener is the same socket.
    const open = await connect(port);
    for (const next of [yaml(echo), yaml(echo, '\n    idleTimeout: 5m')]) {
      const r = await gw.reload(parseConfig(next, 'test.yaml'));
      expect(r.ok).toBe(true);
      expect(r.bound).toEqual([]);
      expect(gw.endpoints().filter((e) => e.service === 'picked').map((e) => e.port)).toEqual([port, port]);
    }
    open.write('still');
    await expect(new Promise((r) => open.once('data', (c: Buffer) => r(c.toString())))).resolves.toBe('still');
  });

  test('with workers: 2 the primary picks it, so both workers listen on the same port', async () => {
    const echo = (await startEchoServer()).port;
    const file = writeConfig(`
workers: 2
admin: { listen: "127.0.0.1:0" }
log: { events: "off" }
services:
  - { name: picked, port: auto, bind: [127.0.0.1], destination: "127.0.0.1:${echo}" }
`);
    const run = runCli(['run', '-c', file]);
    onTeardown(() => { run.child.kill('SIGKILL'); });
    const info = await started(run, 20_000);
    const ports = new Set(info.listeners.map((l) => Number(l.slice(l.lastIndexOf(':') + 1))));
    expect(ports.size).toBe(1);
    const [port] = ports;
    expect(port).toBeGreaterThan(0);
    // Logged once, by the primary, when it picked it.
    expect(run.stderr.filter((l) => l.includes('"msg":"port: auto picked a port"'))).toEqual([expect.stringContaining(`"service":"picked","port":${port}`)]);
    expect((await roundTrip(port, 'through a worker')).toString()).toBe('through a worker');
    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
  });

  test('a port that is neither a number nor auto is refused where it is', () => {
    expect(configProblems('services:\n  - { name: a, port: automatic, destination: "x.example:1" }\n', 'p.yaml')).toEqual([
      'p.yaml:2:22: services[0].port: must be a port number or "auto", not the string "automatic"',
    ]);
  });

  test('a written port that a port: auto service holds is refused where it is written, in either order', () => {
    const held = new Map([['a', 40001]]);
    const text = (first: string, second: string): string => `services:\n${first}\n${second}\n`;
    const a = '  - { name: a, port: auto, bind: [127.0.0.1], destination: "x.example:1" }';
    const b = '  - { name: b, port: 40001, bind: [127.0.0.1], destination: "x.example:1" }';
    expect(configProblems(text(a, b), 'p.yaml', { autoPorts: held })).toEqual([
      'p.yaml:3:22: services[1].port: port 40001 is already used by service "a" (port: auto gave it 40001) on 127.0.0.1',
    ]);
    expect(configProblems(text(b, a), 'p.yaml', { autoPorts: held })).toEqual([
      'p.yaml:3:22: services[1].port: port: auto holds port 40001 for this service, and service "b" on 127.0.0.1 now asks for it: give that one another port',
    ]);
    // Without a held port (a first start) there is nothing to clash with.
    expect(() => parseConfig(text(a, b), 'p.yaml')).not.toThrow();
  });

  test('reload: a service written with the port port: auto gave another is refused, and the running config keeps serving', async () => {
    const echo = (await startEchoServer()).port;
    const file = writeConfig(`
admin: { listen: "off" }
log: { events: "off" }
services:
  - { name: a, port: auto, bind: [127.0.0.1], destination: "127.0.0.1:${echo}" }
`);
    const gw = createGateway(loadConfigFile(file));
    onTeardown(() => gw.close(0));
    await gw.start();
    const [port] = gw.endpoints().map((e) => e.port);
    fs.appendFileSync(file, `  - { name: b, port: ${port}, bind: [127.0.0.1], destination: "127.0.0.1:${echo}" }\n`);
    const r = await gw.reloadFromFile();
    expect(r.ok).toBe(false);
    expect(r.message).toContain(`${file}:6:22: services[1].port: port ${port} is already used by service "a" (port: auto gave it ${port})`);
    expect(gw.endpoints()).toEqual([{ service: 'a', address: '127.0.0.1', port, intercept: false }]);
    const events = recordEvents(gw);
    expect((await roundTrip(port, 'still a')).toString()).toBe('still a');
    expect(events.map((e) => e.service)).toEqual(['a', 'a']);
  });

  test('a config handed over directly (no file check) that writes the held port: the auto service moves, never shares it', async () => {
    const echo = (await startEchoServer()).port;
    const base = `admin: { listen: "off" }\nlog: { events: "off" }\nservices:\n  - { name: a, port: auto, bind: [127.0.0.1], destination: "127.0.0.1:${echo}" }\n`;
    const gw = await startGateway(base);
    const [port] = gw.endpoints().map((e) => e.port);
    const r = await gw.reload(parseConfig(`${base}  - { name: b, port: ${port}, bind: [127.0.0.1], destination: "127.0.0.1:${echo}" }\n`, 'next.yaml'));
    expect(r.ok).toBe(true);
    const byService = Object.fromEntries(gw.endpoints().map((e) => [e.service, e.port]));
    expect(byService.b).toBe(port);
    expect(byService.a).toBeGreaterThan(0);
    expect(byService.a).not.toBe(port);
  });
});
