import { spawn } from 'node:child_process';
import * as net from 'node:net';
import { listen, onTeardown, roundTrip, waitFor } from '../helpers/net';
import { createNamespace, ip, netnsAvailable, type Namespace } from '../helpers/netns';
import { CLI, NODE_FLAGS, collectLines, started, writeConfig, type Running } from '../helpers/process';

/**
 * Interfaces that lose their addresses, and addresses that are not usable yet, on real links:
 * the gateway runs as its own process inside a network namespace the test creates, with
 * veth pairs of its own; the test reaches it over another veth pair from the root
 * namespace. Needs root and iproute2 (`.ci/run` installs it): without them this fails, it does
 * not skip.
 */

if (!netnsAvailable()) throw new Error('these tests need "ip netns add" (root and iproute2)');

const POLL = '200ms';

function inNs(ns: Namespace, ...args: string[]): void {
  ip('netns', 'exec', ns.name, ...args);
}

/** A TCP upstream in the root namespace, on the root end of the namespace's veth pair. */
async function startUpstream(ns: Namespace): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.write('up:');
    s.pipe(s);
  });
  const port = await listen(server, ns.gatewayAddress);
  onTeardown(() => new Promise<void>((r) => server.close(() => r())));
  return port;
}

/** A config whose admin endpoint listens on the namespace's veth address, polling interfaces fast. */
function nsConfig(ns: Namespace, services: string): string {
  return `
admin: { listen: "${ns.clientAddress}:9464" }
log: { events: stdout }
interfacePoll: ${POLL}
services:
${services}`;
}

/** `mapgate run` inside the namespace; killed by its PID at teardown. */
function runInNs(ns: Namespace, yaml: string): Running {
  const child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, ...NODE_FLAGS, CLI, 'run', '-c', writeConfig(yaml)], { stdio: ['ignore', 'pipe', 'pipe'] });
  onTeardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  return collectLines(child);
}

async function get(host: string, port: number, path: string): Promise<string> {
  const res = await fetch(`http://${host}:${port}${path}`);
  return res.text();
}

function logs(r: Running): Array<Record<string, unknown>> {
  return r.stderr.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

type Status = { services: Array<{ name: string; listeners: Array<{ address: string }>; waiting: Array<{ address: string; error: string }> }> };

describe('listeners on real interfaces that come and go', () => {
  test('a named interface that loses every address: a warning, every other service serves, /status and mapgate_listeners say 0, and it binds again', async () => {
    const ns = createNamespace(1);
    const upstream = await startUpstream(ns);
    // A veth link inside the namespace (its peer there too), with no IPv6 link-local address: its
    // one IPv4 address is all it has.
    const lan = ns.gatewayAddress.replace(/^10\.213\./, '10.214.').replace(/\.1$/, '.9');
    inNs(ns, 'ip', 'link', 'add', 'mgd0', 'type', 'veth', 'peer', 'name', 'mgd1');
    inNs(ns, 'ip', 'link', 'set', 'mgd0', 'addrgenmode', 'none');
    inNs(ns, 'ip', 'addr', 'add', `${lan}/32`, 'dev', 'mgd0');
    inNs(ns, 'ip', 'link', 'set', 'mgd1', 'up');
    inNs(ns, 'ip', 'link', 'set', 'mgd0', 'up');
    ip('route', 'add', `${lan}/32`, 'via', ns.clientAddress);
    onTeardown(() => { try { ip('route', 'del', `${lan}/32`); } catch { /* gone with the veth */ } });

    const r = runInNs(ns, nsConfig(ns, `  - name: lan
    port: 7001
    bind: [mgd0]
    destination: ${ns.gatewayAddress}:${upstream}
  - name: steady
    port: 7002
    bind: [${ns.clientAddress}]
    destination: ${ns.gatewayAddress}:${upstream}
`));
    await started(r);
    const admin = (path: string): Promise<string> => get(ns.clientAddress, 9464, path);
    expect((await roundTrip(7001, 'a', lan)).toString()).toBe('up:a');

    inNs(ns, 'ip', 'addr', 'del', `${lan}/32`, 'dev', 'mgd0');
    await waitFor(() => logs(r).some((l) => String(l.msg).startsWith('service has no address')), 5000, 'the warning');
    expect(logs(r).find((l) => String(l.msg).startsWith('service has no address'))).toMatchObject({ level: 'warn', service: 'lan' });
    const status = JSON.parse(await admin('/status')) as Status;
    expect(status.services.find((s) => s.name === 'lan')!.listeners).toEqual([]);
    expect(await admin('/metrics')).toMatch(/^mapgate_listeners\{service="lan"\} 0$/m);
    // Every other service goes on serving; the process is alive and well.
    expect((await roundTrip(7002, 'b', ns.clientAddress)).toString()).toBe('up:b');
    await new Promise((res) => setTimeout(res, 600));
    expect(r.child.exitCode).toBeNull();
    expect(r.stderr.filter((l) => l.includes('unhandled') || l.includes('MAPGATE_ERR_BIND'))).toEqual([]);

    inNs(ns, 'ip', 'addr', 'add', `${lan}/32`, 'dev', 'mgd0');
    await waitFor(() => logs(r).some((l) => l.msg === 'service has an address to listen on again'), 5000, 'the address to come back');
    await waitFor(() => r.stderr.some((l) => l.includes('"interface addresses changed"') && l.includes(`lan@${lan}:7001`)), 5000, 'the listener to bind again');
    expect((await roundTrip(7001, 'c', lan)).toString()).toBe('up:c');
    expect(await admin('/metrics')).toMatch(/^mapgate_listeners\{service="lan"\} 1$/m);
    r.child.kill('SIGTERM');
    expect(await r.exit).toBe(0);
  });

  test('started while its named interface has no address at all: it starts, warns, and binds once one is added', async () => {
    const ns = createNamespace(4);
    const upstream = await startUpstream(ns);
    const lan = ns.gatewayAddress.replace(/^10\.213\./, '10.216.').replace(/\.1$/, '.9');
    // The link exists but has no address: os.networkInterfaces() does not list it at all.
    inNs(ns, 'ip', 'link', 'add', 'mge0', 'type', 'veth', 'peer', 'name', 'mge1');
    inNs(ns, 'ip', 'link', 'set', 'mge0', 'addrgenmode', 'none');
    inNs(ns, 'ip', 'link', 'set', 'mge1', 'up');
    inNs(ns, 'ip', 'link', 'set', 'mge0', 'up');
    ip('route', 'add', `${lan}/32`, 'via', ns.clientAddress);
    onTeardown(() => { try { ip('route', 'del', `${lan}/32`); } catch { /* gone with the veth */ } });

    const r = runInNs(ns, nsConfig(ns, `  - name: lan
    port: 7005
    bind: [mge0]
    destination: ${ns.gatewayAddress}:${upstream}
`));
    const info = await started(r);
    expect(info.listeners).toEqual([]);
    expect(logs(r).find((l) => String(l.msg).startsWith('service has no address'))).toMatchObject({ level: 'warn', service: 'lan' });
    inNs(ns, 'ip', 'addr', 'add', `${lan}/32`, 'dev', 'mge0');
    await waitFor(() => r.stderr.some((l) => l.includes('"interface addresses changed"') && l.includes(`lan@${lan}:7005`)), 5000, 'the listener to bind');
    expect((await roundTrip(7005, 'n', lan)).toString()).toBe('up:n');
    r.child.kill('SIGTERM');
    expect(await r.exit).toBe(0);
  });

  test('started while its interface\'s IPv6 link-local address is still tentative: the other addresses serve, that one binds once DAD is done', async () => {
    const ns = createNamespace(2);
    const upstream = await startUpstream(ns);
    const v4 = ns.gatewayAddress.replace(/^10\.213\./, '10.215.').replace(/\.1$/, '.9');
    // A veth pair inside the namespace; duplicate address detection made slow (5 probes, 1 s apart)
    // so the link-local address stays tentative for about five seconds after the link comes up.
    inNs(ns, 'ip', 'link', 'add', 'mgva', 'type', 'veth', 'peer', 'name', 'mgvb');
    inNs(ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.mgva.accept_dad=1', 'net.ipv6.conf.mgva.dad_transmits=5', 'net.ipv6.neigh.mgva.retrans_time_ms=1000', 'net.ipv6.conf.mgva.optimistic_dad=0');
    inNs(ns, 'ip', 'addr', 'add', `${v4}/32`, 'dev', 'mgva');
    ip('route', 'add', `${v4}/32`, 'via', ns.clientAddress);
    onTeardown(() => { try { ip('route', 'del', `${v4}/32`); } catch { /* gone with the veth */ } });
    inNs(ns, 'ip', 'link', 'set', 'mgvb', 'up');
    inNs(ns, 'ip', 'link', 'set', 'mgva', 'up');

    const r = runInNs(ns, nsConfig(ns, `  - name: lan
    port: 7003
    bind: [mgva]
    destination: ${ns.gatewayAddress}:${upstream}
`));
    const info = await started(r);
    const warning = logs(r).find((l) => String(l.msg).startsWith('address not usable yet'));
    expect(warning).toMatchObject({ level: 'warn', service: 'lan', address: expect.stringMatching(/^fe80:.*%mgva$/), port: 7003, error: expect.stringContaining('EADDRNOTAVAIL') });
    expect(info.listeners).toEqual([`lan@${v4}:7003`]);
    expect((await roundTrip(7003, 'a', v4)).toString()).toBe('up:a');
    const before = JSON.parse(await get(ns.clientAddress, 9464, '/status')) as Status;
    expect(before.services[0].waiting).toEqual([{ address: expect.stringMatching(/^\[fe80:.*%mgva\]:7003$/), error: expect.stringContaining('EADDRNOTAVAIL') }]);

    await waitFor(() => logs(r).some((l) => l.msg === 'address usable now: listening'), 15_000, 'DAD to finish and the address to bind');
    const after = JSON.parse(await get(ns.clientAddress, 9464, '/status')) as Status;
    expect(after.services[0].listeners.map((l) => l.address).sort()).toEqual([`${v4}:7003`, expect.stringMatching(/^\[fe80:.*%mgva\]:7003$/)].sort());
    expect(after.services[0].waiting).toEqual([]);
    // The link-local listener relays too: a client on the peer end of the link.
    const address = String(warning!.address);
    const peer = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '-e', `
      const s = require('net').connect({ host: ${JSON.stringify(address)}, port: 7003 }, () => s.end('ll'));
      let got = ''; s.on('data', (d) => (got += d)); s.on('end', () => { process.stdout.write(got); });
      s.on('error', (e) => { process.stdout.write('error ' + e.code); });
    `], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = collectLines(peer);
    expect(await out.exit).toBe(0);
    expect(out.stdout.join('')).toBe('up:ll');
    r.child.kill('SIGTERM');
    expect(await r.exit).toBe(0);
  });
});
