import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { onTeardown, waitFor } from '../helpers/net';
import { ip, netnsAvailable, tcpFrom } from '../helpers/netns';
import { CLI, NODE_FLAGS, collectLines, started, writeConfig, type Running } from '../helpers/process';

/**
 * Interception as a LAN gateway does it, in three network namespaces the test creates: a client
 * whose default route is the gateway, the gateway (forwarding on, mapgate running in it with the
 * nftables rules of `mapgate intercept-rules` loaded), and a server behind it. The client connects
 * to the server's own address on an intercepted port, with no proxy settings, and lands in the
 * mapping; the server's listener on that port sees nothing. Needs root, iproute2 and nftables:
 * under CI a missing one fails; elsewhere these tests are skipped with a warning.
 */

const runAsync = promisify(execFile);
const DIST = join(__dirname, '..', '..', 'dist');
const NFT = ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft'].find((p) => existsSync(p)) ?? null;
const NETNS = netnsAvailable();
const INTERCEPTED = 143;
const OTHER = 1430;

function describeIf(ok: boolean, what: string): jest.Describe {
  if (ok) return describe;
  if (process.env.CI) throw new Error(`${what} missing: the interception tests need it`);
  // eslint-disable-next-line no-console
  console.warn(`SKIPPED interception tests: ${what} missing`);
  return describe.skip;
}

interface Lab {
  client: string;
  gateway: string;
  server: string;
  /** The gateway's veths: towards the client (internal), towards the server (external). */
  lanDevice: string;
  wanDevice: string;
  lanGateway: string;
  clientAddress: string;
  wanGateway: string;
  serverAddress: string;
}

/** Three namespaces, two veth pairs, default routes through the gateway; all removed at teardown. */
function createLab(): Lab {
  const tag = `${process.pid % 100_000}`;
  const net = (process.pid % 250) + 1;
  const lab: Lab = {
    client: `mgic${tag}`, gateway: `mgig${tag}`, server: `mgis${tag}`,
    lanDevice: `mgil${tag}`, wanDevice: `mgiw${tag}`,
    lanGateway: `10.217.${net}.1`, clientAddress: `10.217.${net}.2`,
    wanGateway: `10.218.${net}.1`, serverAddress: `10.218.${net}.2`,
  };
  const remove = (): void => {
    // Deleting a namespace deletes the veth ends in it, and with them their peers.
    for (const ns of [lab.client, lab.gateway, lab.server]) {
      try { ip('netns', 'del', ns); } catch { /* already gone */ }
    }
  };
  remove();
  onTeardown(remove);
  for (const ns of [lab.client, lab.gateway, lab.server]) {
    ip('netns', 'add', ns);
    ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
  }
  const inNs = (ns: string, ...args: string[]): void => ip('netns', 'exec', ns, ...args);
  const pair = (device: string, peer: string, peerNs: string, gw: string, peerAddress: string): void => {
    ip('link', 'add', device, 'netns', lab.gateway, 'type', 'veth', 'peer', 'name', peer, 'netns', peerNs);
    // No IPv6 link-local addresses: nothing tentative for bind: internal to wait on.
    inNs(lab.gateway, 'ip', 'link', 'set', device, 'addrgenmode', 'none');
    inNs(peerNs, 'ip', 'link', 'set', peer, 'addrgenmode', 'none');
    inNs(lab.gateway, 'ip', 'addr', 'add', `${gw}/24`, 'dev', device);
    inNs(peerNs, 'ip', 'addr', 'add', `${peerAddress}/24`, 'dev', peer);
    inNs(lab.gateway, 'ip', 'link', 'set', device, 'up');
    inNs(peerNs, 'ip', 'link', 'set', peer, 'up');
    inNs(peerNs, 'ip', 'route', 'add', 'default', 'via', gw);
  };
  pair(lab.lanDevice, 'eth0', lab.client, lab.lanGateway, lab.clientAddress);
  pair(lab.wanDevice, 'eth0', lab.server, lab.wanGateway, lab.serverAddress);
  inNs(lab.gateway, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1');
  return lab;
}

/**
 * The server, in its namespace: on the intercepted port it answers `direct:` and reports every
 * connection on stdout (`hit <client>`); on the other port it answers `server:`; both echo.
 */
async function startServer(lab: Lab): Promise<Running> {
  const script = `const net = require('net');
    for (const [port, tag] of [[${INTERCEPTED}, 'direct'], [${OTHER}, 'server']]) {
      net.createServer({ allowHalfOpen: true }, (s) => {
        s.on('error', () => {});
        if (port === ${INTERCEPTED}) console.log('hit ' + s.remoteAddress + ':' + s.remotePort);
        s.write(tag + ':'); s.pipe(s);
      }).listen(port, ${JSON.stringify(lab.serverAddress)}, () => console.log('listening ' + port));
    }`;
  const child = spawn('ip', ['netns', 'exec', lab.server, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  onTeardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  const r = collectLines(child);
  await waitFor(() => r.stdout.filter((l) => l.startsWith('listening')).length === 2, 10_000, 'the server to listen');
  return r;
}

/** `mapgate run` inside the gateway namespace: the client side tagged internal, the server side external. */
async function startGateway(lab: Lab): Promise<{ run: Running; config: string }> {
  const config = writeConfig(`
interfaces: { ${lab.lanDevice}: internal, ${lab.wanDevice}: external }
admin: { listen: "off" }
log: { events: stdout }
services:
  - name: imap
    port: 1143
    intercept: [${INTERCEPTED}]
    destination: "${lab.serverAddress}:${OTHER}"
`);
  const child = spawn('ip', ['netns', 'exec', lab.gateway, process.execPath, ...NODE_FLAGS, CLI, 'run', '-c', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  onTeardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  const run = collectLines(child);
  const info = await started(run);
  expect(info.listeners).toContain(`imap@${lab.lanGateway}:${INTERCEPTED}`);
  expect(info.listeners.some((l) => l.startsWith(`imap@${lab.wanGateway}:`))).toBe(false);
  return { run, config };
}

/** The rules `mapgate intercept-rules` prints, run in the gateway namespace (it reads that namespace's interfaces). */
async function rulesIn(lab: Lab, config: string): Promise<string> {
  const { stdout } = await runAsync('ip', ['netns', 'exec', lab.gateway, process.execPath, join(DIST, 'cli.js'), 'intercept-rules', '-c', config], { timeout: 20_000 });
  return stdout;
}

function events(r: Running): Array<Record<string, unknown>> {
  return r.stdout.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A client connection from the client namespace that stays open until `close()`; resolves once the answer and the echo of `hi` came back. */
async function openClient(lab: Lab, host: string, port: number): Promise<{ local: string; reply: string; close: () => Promise<void> }> {
  const script = `const s = require('net').connect({ host: ${JSON.stringify(host)}, port: ${port} });
    s.on('error', (e) => { console.log('ERR ' + e.code); process.exit(0); });
    s.on('connect', () => s.write('hi'));
    let got = '';
    // The tag and the echo may come in two chunks: report once the echo is in.
    s.on('data', (d) => { const had = got.endsWith('hi'); got += d; if (!had && got.endsWith('hi')) console.log(s.localAddress + ':' + s.localPort + ' ' + got); });
    process.stdin.on('end', () => s.end()); process.stdin.resume();
    s.on('close', () => process.exit(0));`;
  const child = spawn('ip', ['netns', 'exec', lab.client, process.execPath, '-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  onTeardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  const r = collectLines(child);
  await waitFor(() => r.stdout.length > 0, 10_000, 'the client to get an answer');
  const [local, reply] = r.stdout[0].split(' ');
  return { local, reply, close: async () => { child.stdin!.end(); await r.exit; } };
}

describeIf(NETNS, '"ip netns add" (root and iproute2)')('interception through a LAN gateway (network namespaces)', () => {
  test('without rules the client reaches the server itself through the gateway: the routing the interception relies on', async () => {
    const lab = createLab();
    const server = await startServer(lab);
    await startGateway(lab);
    expect(await tcpFrom(lab.client, lab.serverAddress, INTERCEPTED, 'x')).toBe('direct:x');
    expect(server.stdout.filter((l) => l.startsWith('hit '))).toEqual([expect.stringMatching(new RegExp(`^hit ${lab.clientAddress.replace(/\./g, '\\.')}:\\d+$`))]);
  });

  describeIf(NFT !== null, 'nft (Debian package nftables)')('with the nftables rules of interceptRules', () => {
    test('the client connects to the server\'s address on the intercepted port and lands in the mapping; the server\'s port sees nothing; conntrack gives the original destination', async () => {
      const lab = createLab();
      const server = await startServer(lab);
      const { run, config } = await startGateway(lab);
      const rules = await rulesIn(lab, config);
      expect(rules).toContain(`iifname "${lab.lanDevice}" tcp dport ${INTERCEPTED} redirect to :${INTERCEPTED}`);
      expect(rules).not.toContain(lab.wanDevice + '"');
      execFileSync('ip', ['netns', 'exec', lab.gateway, NFT!, '-f', '-'], { input: rules, stdio: ['pipe', 'ignore', 'pipe'] });
      // Loading twice leaves one copy.
      execFileSync('ip', ['netns', 'exec', lab.gateway, NFT!, '-f', '-'], { input: rules, stdio: ['pipe', 'ignore', 'pipe'] });
      const listed = execFileSync('ip', ['netns', 'exec', lab.gateway, NFT!, 'list', 'ruleset'], { encoding: 'utf8' });
      expect(listed.match(/redirect/g)).toHaveLength(1);

      const c = await openClient(lab, lab.serverAddress, INTERCEPTED);
      expect(c.reply).toBe('server:hi'); // the mapping's destination answered, not the server's port 143
      await waitFor(() => events(run).some((e) => e.event === 'ClientConnect'), 5000, 'the ClientConnect event');
      expect(events(run).find((e) => e.event === 'ClientConnect')).toMatchObject({
        service: 'imap', client: c.local, listener: `${lab.lanGateway}:${INTERCEPTED}`, destination: `${lab.serverAddress}:${OTHER}`,
      });

      // The kernel knows where the client meant to go: the lookup the gateway will make, run in its namespace.
      const [clientAddress, clientPort] = [c.local.slice(0, c.local.lastIndexOf(':')), Number(c.local.slice(c.local.lastIndexOf(':') + 1))];
      const script = `const { ConntrackTable } = require(${JSON.stringify(join(DIST, 'intercept', 'conntrack.js'))});
        const t = new ConntrackTable({ timeoutMs: 2000 });
        const ask = (local) => new Promise((r) => t.lookup({ address: ${JSON.stringify(clientAddress)}, port: ${clientPort} }, local, r));
        (async () => {
          const original = await ask({ address: ${JSON.stringify(lab.lanGateway)}, port: ${INTERCEPTED} });
          const other = await ask({ address: ${JSON.stringify(lab.lanGateway)}, port: 1 });
          console.log(JSON.stringify({ original, other, source: t.source }));
        })();`;
      const { stdout } = await runAsync('ip', ['netns', 'exec', lab.gateway, process.execPath, '-e', script], { timeout: 20_000 });
      const found = JSON.parse(stdout) as { original: string | null; other: string | null; source: string | null };
      if (found.source === null && process.env.CI) throw new Error('neither /proc/net/nf_conntrack nor the conntrack tool in the gateway namespace');
      if (found.source === null) {
        // eslint-disable-next-line no-console
        console.warn('SKIPPED the conntrack check: neither /proc/net/nf_conntrack (CONFIG_NF_CONNTRACK_PROCFS) nor the conntrack tool (conntrack-tools) here');
      } else {
        expect(found).toEqual({ original: `${lab.serverAddress}:${INTERCEPTED}`, other: null, source: expect.stringMatching(/^(proc|tool)$/) });
        // And the gateway's own event said so.
        expect(events(run).find((e) => e.event === 'ClientConnect')).toMatchObject({ originalDestination: `${lab.serverAddress}:${INTERCEPTED}` });
      }
      await c.close();
      await waitFor(() => events(run).some((e) => e.event === 'ClientDisconnect'), 5000, 'the ClientDisconnect event');
      expect(server.stdout.filter((l) => l.startsWith('hit '))).toEqual([]);

      // Removal as the rules' header says: the server's own port answers again.
      execFileSync('ip', ['netns', 'exec', lab.gateway, NFT!, 'delete', 'table', 'inet', 'mapgate']);
      expect(await tcpFrom(lab.client, lab.serverAddress, INTERCEPTED, 'y')).toBe('direct:y');
      run.child.kill('SIGTERM');
      expect(await run.exit).toBe(0);
    });
  });
});
