import { parseConfig } from '../../src/config/load';
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
});
