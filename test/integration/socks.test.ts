import { execFile } from 'node:child_process';
import * as http from 'node:http';
import * as net from 'node:net';
import { hashPassword } from '../../src/auth/password';
import type { ClientConnectEvent, ClientDisconnectEvent } from '../../src/events/events';
import type { Gateway } from '../../src/gateway';
import { adminGet, connect, listen, metricValue, portOf, recordEvents, startBlackHole, startEchoServer, startGateway, unusedPort, waitFor } from '../helpers/net';
import { exchange, greeting, login, parseReply5, readBytes, request4, request6, requestName, socks4, socks4a } from '../helpers/socks';
import { startSshd } from '../helpers/sshd';

type GatewayEvent = ClientConnectEvent | ClientDisconnectEvent;

let aliceHash = '';
let bobHash = '';

beforeAll(async () => {
  [aliceHash, bobHash] = await Promise.all([hashPassword('s3cret'), hashPassword('b0b')]);
});

function yaml(services: string): string {
  return `admin: { listen: "127.0.0.1:0" }
log: { events: "off" }
users:
  alice: { password: "${aliceHash}" }
  bob: { password: "${bobHash}" }
services:
${services}`;
}

/** A `protocol: socks` service named `name` on 127.0.0.1, port 0; `mappings` are flow-style YAML lines. */
function socksService(name: string, auth: 'password' | 'none', mappings: string[], extra: string[] = []): string {
  return [
    `  - name: ${name}`, '    port: 0', '    bind: [127.0.0.1]', '    protocol: socks', `    socks: { auth: ${auth} }`,
    ...extra.map((l) => `    ${l}`),
    mappings.length === 0 ? '    mappings: []' : '    mappings:', ...mappings.map((m) => `      - ${m}`),
  ].join('\n') + '\n';
}

/** An HTTP server on 127.0.0.1 answering `hello PATH`; it records the peer port of each request. */
async function startHttp(): Promise<{ port: number; peers: number[] }> {
  const peers: number[] = [];
  const server = http.createServer((req, res) => {
    peers.push(req.socket.remotePort!);
    res.setHeader('connection', 'close');
    res.end(`hello ${req.url}`);
  });
  return { port: await listen(server), peers };
}

/** An upstream that says which local port the gateway dialled from (`PEER:port`), then echoes. */
async function startPeerReporter(host = '127.0.0.1'): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.write(`PEER:${s.remotePort}\n`);
    s.pipe(s);
  });
  return listen(server, host);
}

const NO_PROXY_ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/_proxy$/i.test(k)));

function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', ...args], { env: NO_PROXY_ENV }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

function disconnects(events: readonly GatewayEvent[]): ClientDisconnectEvent[] {
  return events.filter((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect');
}

async function start(services: string): Promise<{ gw: Gateway; events: GatewayEvent[] }> {
  const gw = await startGateway(yaml(services));
  return { gw, events: recordEvents(gw) };
}

/** The gateway closed every connection it opened, and said so once each. */
async function nothingLeft(gw: Gateway, events: readonly GatewayEvent[], service: string): Promise<void> {
  await waitFor(() => gw.open.size === 0, 5000, 'no open connections');
  expect(await metricValue(gw, 'mapgate_connections_active', { service })).toBe(0);
  const connects = events.filter((e) => e.event === 'ClientConnect').map((e) => e.id).sort();
  expect(disconnects(events).map((e) => e.id).sort()).toEqual(connects);
}

describe('protocol: socks with curl', () => {
  test('--socks5 -U, --socks5-hostname and socks5h://user:pass@ log in and reach what the mappings allow; destination: rewrites', async () => {
    const web = await startHttp();
    const { gw, events } = await start(socksService('socks', 'password', [
      '{ user: alice, to: ["127.0.0.1/32", "localhost"] }',
      `{ to: ["intranet.test:80"], destination: "127.0.0.1:${web.port}" }`,
      '{ action: reject }',
    ]));
    const p = portOf(gw, 'socks');
    const runs = [
      await curl(['--socks5', `127.0.0.1:${p}`, '-U', 'alice:s3cret', `http://127.0.0.1:${web.port}/a`]),
      await curl(['--socks5-hostname', `127.0.0.1:${p}`, '-U', 'alice:s3cret', `http://localhost:${web.port}/b`]),
      await curl(['-x', `socks5h://alice:s3cret@127.0.0.1:${p}`, `http://LocalHost.:${web.port}/c`]),
      await curl(['-x', `socks5h://bob:b0b@127.0.0.1:${p}`, 'http://intranet.test/d']),
    ];
    expect(runs.map((r) => [r.code, r.stdout])).toEqual([[0, 'hello /a'], [0, 'hello /b'], [0, 'hello /c'], [0, 'hello /d']]);
    await waitFor(() => disconnects(events).length === 4);
    expect(disconnects(events).map((e) => [e.user, e.auth, e.requested, e.destination])).toEqual([
      ['alice', 'password', `127.0.0.1:${web.port}`, `127.0.0.1:${web.port}`],
      // The gateway resolved the name (the service has an address block) and dialled that address.
      ['alice', 'password', `localhost:${web.port}`, `127.0.0.1:${web.port}`],
      ['alice', 'password', `localhost:${web.port}`, `127.0.0.1:${web.port}`],
      ['bob', 'password', 'intranet.test:80', `127.0.0.1:${web.port}`],
    ]);
    // Bob's login is good, but no mapping gives him 127.0.0.1: 0x02, not allowed.
    const bob = await curl(['-x', `socks5h://bob:b0b@127.0.0.1:${p}`, `http://127.0.0.1:${web.port}/e`]);
    expect(bob.code).toBe(97);
    await waitFor(() => disconnects(events).length === 5);
    expect(disconnects(events)[4]).toMatchObject({ user: 'bob', auth: 'password', reason: 'rejected', requested: `127.0.0.1:${web.port}`, destination: null });
    await nothingLeft(gw, events, 'socks');
  });

  test('a wrong password or an unknown user: RFC 1929 status 0x01, closed, reason auth-failed', async () => {
    const web = await startHttp();
    const { gw, events } = await start(socksService('socks', 'password', ['{ user: alice, to: ["*"] }']));
    const p = portOf(gw, 'socks');
    const bad = await curl(['--interface', '127.0.0.3', '-x', `socks5h://alice:wrong@127.0.0.1:${p}`, `http://127.0.0.1:${web.port}/`]);
    expect(bad.code).toBe(97);
    const unknown = await exchange(p, [greeting(2), login('mallory', 's3cret')], { localAddress: '127.0.0.3', gapMs: 20 });
    expect(unknown.data).toEqual(Buffer.from([5, 2, 1, 1]));
    await waitFor(() => disconnects(events).length === 2);
    expect(disconnects(events).map((e) => [e.reason, e.error, e.user])).toEqual([
      ['auth-failed', 'MAPGATE_ERR_SOCKS_AUTH', null], ['auth-failed', 'MAPGATE_ERR_SOCKS_AUTH', null]]);
    expect(web.peers).toEqual([]);
    expect(await metricValue(gw, 'mapgate_rejected_total', { service: 'socks', reason: 'auth-failed' })).toBe(2);
  });

  test('failed logins are limited per source: after 5 in a minute the next is refused at once, even with the right password', async () => {
    const web = await startHttp();
    const { gw, events } = await start(socksService('socks', 'password', ['{ user: alice, to: ["*"] }']));
    const p = portOf(gw, 'socks');
    const from = '127.0.0.5';
    for (let i = 0; i < 5; i++) {
      const r = await exchange(p, [greeting(2), login('alice', `guess-${i}`)], { localAddress: from, gapMs: 5 });
      expect(r.data).toEqual(Buffer.from([5, 2, 1, 1]));
    }
    const blocked = await exchange(p, [greeting(2), login('alice', 's3cret')], { localAddress: from, gapMs: 5 });
    expect(blocked.data).toEqual(Buffer.from([5, 2, 1, 1]));
    await waitFor(() => disconnects(events).length === 6);
    expect(disconnects(events).map((e) => e.error)).toEqual([...Array(5).fill('MAPGATE_ERR_SOCKS_AUTH'), 'MAPGATE_ERR_SOCKS_AUTH_LIMITED']);
    // Another source is not held back by this one's failures.
    const other = await curl(['--interface', '127.0.0.6', '-x', `socks5h://alice:s3cret@127.0.0.1:${p}`, `http://127.0.0.1:${web.port}/ok`]);
    expect([other.code, other.stdout]).toEqual([0, 'hello /ok']);
  });

  test('--socks4 and --socks4a on an auth: none service; SOCKS4 on a password service gets 0x5B', async () => {
    const web = await startHttp();
    const { gw, events } = await start(
      socksService('open', 'none', ['{ to: ["127.0.0.1/32"] }']) + socksService('locked', 'password', ['{ user: alice, to: ["*"] }']),
    );
    const p = portOf(gw, 'open');
    const v4 = await curl(['--socks4', `127.0.0.1:${p}`, `http://127.0.0.1:${web.port}/4`]);
    const v4a = await curl(['--socks4a', `127.0.0.1:${p}`, `http://localhost:${web.port}/4a`]);
    expect([v4.stdout, v4a.stdout]).toEqual(['hello /4', 'hello /4a']);
    const refused = await curl(['--socks4', `127.0.0.1:${portOf(gw, 'locked')}`, `http://127.0.0.1:${web.port}/x`]);
    expect(refused.code).toBe(97);
    const raw = await exchange(portOf(gw, 'locked'), socks4('127.0.0.1', web.port));
    expect(raw.data).toEqual(Buffer.from([0, 0x5b, 0, 0, 0, 0, 0, 0]));
    await waitFor(() => disconnects(events).length === 4);
    expect(disconnects(events).map((e) => [e.service, e.requested, e.reason, e.error])).toEqual([
      ['open', `127.0.0.1:${web.port}`, 'upstream-closed', null],
      ['open', `localhost:${web.port}`, 'upstream-closed', null],
      ['locked', null, 'socks', 'MAPGATE_ERR_SOCKS_METHOD'],
      ['locked', null, 'socks', 'MAPGATE_ERR_SOCKS_METHOD'],
    ]);
    expect(web.peers).toHaveLength(2);
  });
});

describe('protocol: socks is never an open proxy', () => {
  test('no mappings refuses everything with 0x02 (SOCKS4: 0x5B); only what a to: pattern allows gets through', async () => {
    const web = await startHttp();
    const { gw, events } = await start(
      socksService('none', 'none', [])
      + socksService('some', 'none', [`{ to: ["127.0.0.1/32:${web.port}"] }`])
      + socksService('all', 'none', ['{ to: ["*"] }']),
    );
    const [none, some, all] = ['none', 'some', 'all'].map((s) => portOf(gw, s));
    const ask = (port: number, req: Buffer): Promise<Buffer> => exchange(port, [greeting(0), req]).then((r) => r.data);
    const notAllowed = Buffer.concat([Buffer.from([5, 0]), Buffer.from([5, 2, 0, 1, 0, 0, 0, 0, 0, 0])]);
    expect(await ask(none, request4('127.0.0.1', web.port))).toEqual(notAllowed);
    expect(await ask(none, requestName('localhost', web.port))).toEqual(notAllowed);
    expect((await exchange(none, socks4('127.0.0.1', web.port))).data).toEqual(Buffer.from([0, 0x5b, 0, 0, 0, 0, 0, 0]));
    expect(await ask(some, request4('127.0.0.1', web.port + 1 > 65535 ? 1 : web.port + 1))).toEqual(notAllowed);
    // A name is not an address block's unless the gateway resolves it into the block: localhost is.
    expect((await curl(['--socks5-hostname', `127.0.0.1:${some}`, `http://localhost:${web.port}/name`])).stdout).toBe('hello /name');
    expect((await curl(['--socks5', `127.0.0.1:${some}`, `http://127.0.0.1:${web.port}/ip`])).stdout).toBe('hello /ip');
    expect((await curl(['--socks5-hostname', `127.0.0.1:${all}`, `http://localhost:${web.port}/any`])).stdout).toBe('hello /any');
    expect((await curl(['--socks4', `127.0.0.1:${all}`, `http://127.0.0.1:${web.port}/any4`])).stdout).toBe('hello /any4');
    await waitFor(() => disconnects(events).length === 8);
    expect(disconnects(events).slice(0, 4).map((e) => [e.service, e.reason])).toEqual([['none', 'no-route'], ['none', 'no-route'], ['none', 'no-route'], ['some', 'no-route']]);
    expect(web.peers).toHaveLength(4);
    for (const s of ['none', 'some', 'all']) await nothingLeft(gw, events.filter((e) => e.service === s), s);
  });

  test('address blocks match names only as the gateway resolved them; a name that does not resolve matches none', async () => {
    const web = await startHttp();
    const { gw, events } = await start(socksService('socks', 'none', ['{ to: ["127.0.0.0/8"] }', '{ to: ["10.0.0.0/8", "*.example"], action: reject }']));
    const p = portOf(gw, 'socks');
    const ok = await curl(['-x', `socks5h://127.0.0.1:${p}`, `http://localhost:${web.port}/r`]);
    expect(ok.stdout).toBe('hello /r');
    const gone = await exchange(p, [greeting(0), requestName('nonexistent.invalid', web.port)]);
    expect(gone.data.subarray(2)).toEqual(Buffer.from([5, 2, 0, 1, 0, 0, 0, 0, 0, 0]));
    await waitFor(() => disconnects(events).length === 2);
    expect(disconnects(events).map((e) => [e.requested, e.destination, e.reason])).toEqual([
      [`localhost:${web.port}`, `127.0.0.1:${web.port}`, 'upstream-closed'],
      [`nonexistent.invalid:${web.port}`, null, 'no-route'],
    ]);
  });
});

describe('protocol: socks replies', () => {
  test('refused 0x05, host unreachable 0x04, TTL expired 0x06 (connect timeout), each with a 10-byte IPv4 bound address', async () => {
    const hole = await startBlackHole();
    const { gw, events } = await start(socksService('socks', 'none', ['{ to: ["*"] }'], ['connectTimeout: 300ms']));
    // Found after the gateway bound its port, so it cannot be the gateway's.
    const closed = await unusedPort();
    const p = portOf(gw, 'socks');
    const reply = async (req: Buffer): Promise<{ rep: number; atyp: number; length: number; ms: number }> => {
      const r = await exchange(p, [greeting(0), req], { end: false });
      expect(r.data.subarray(0, 2)).toEqual(Buffer.from([5, 0]));
      return { ...parseReply5(r.data.subarray(2)), ms: r.ms };
    };
    expect(await reply(request4('127.0.0.1', closed))).toMatchObject({ rep: 0x05, atyp: 1, length: 10 });
    expect(await reply(requestName('nonexistent.invalid', 80))).toMatchObject({ rep: 0x04, atyp: 1, length: 10 });
    const timedOut = await reply(request4('127.0.0.1', hole.port));
    expect(timedOut).toMatchObject({ rep: 0x06, atyp: 1, length: 10 });
    expect(timedOut.ms).toBeGreaterThanOrEqual(290);
    await waitFor(() => disconnects(events).length === 3);
    expect(disconnects(events).map((e) => [e.reason, e.error])).toEqual([
      ['connect-failed', 'ECONNREFUSED'], ['connect-failed', 'ENOTFOUND'], ['connect-timeout', 'MAPGATE_ERR_CONNECT_TIMEOUT']]);
    await nothingLeft(gw, events, 'socks');
  });

  test('command not supported 0x07 (BIND, UDP ASSOCIATE), address type not supported 0x08', async () => {
    const { gw, events } = await start(socksService('socks', 'none', ['{ to: ["*"] }']));
    const p = portOf(gw, 'socks');
    const rest = async (req: Buffer): Promise<Buffer> => (await exchange(p, [greeting(0), req], { end: false })).data.subarray(2);
    expect(await rest(request4('127.0.0.1', 80, 2))).toEqual(Buffer.from([5, 7, 0, 1, 0, 0, 0, 0, 0, 0]));
    expect(await rest(request4('127.0.0.1', 80, 3))).toEqual(Buffer.from([5, 7, 0, 1, 0, 0, 0, 0, 0, 0]));
    expect(await rest(Buffer.from([5, 1, 0, 5, 1, 2, 3, 4, 0, 80]))).toEqual(Buffer.from([5, 8, 0, 1, 0, 0, 0, 0, 0, 0]));
    await waitFor(() => disconnects(events).length === 3);
    expect(disconnects(events).map((e) => [e.reason, e.error])).toEqual([
      ['socks', 'MAPGATE_ERR_SOCKS_COMMAND'], ['socks', 'MAPGATE_ERR_SOCKS_COMMAND'], ['socks', 'MAPGATE_ERR_SOCKS_ADDRESS']]);
    expect(await metricValue(gw, 'mapgate_rejected_total', { service: 'socks', reason: 'socks' })).toBe(3);
    await nothingLeft(gw, events, 'socks');
  });

  test('success names the bound address: IPv4 in 10 bytes, IPv6 in 22, SOCKS4 0x5A with port and address', async () => {
    const [up4, up6] = await Promise.all([startPeerReporter('127.0.0.1'), startPeerReporter('::1')]);
    const { gw } = await start(socksService('socks', 'none', ['{ to: ["127.0.0.1/32", "::1/128"] }']));
    const p = portOf(gw, 'socks');

    const s4 = await connect(p);
    s4.write(Buffer.concat([greeting(0), request4('127.0.0.1', up4)]));
    expect(await readBytes(s4, 2)).toEqual(Buffer.from([5, 0]));
    const r4 = await readBytes(s4, 10);
    const peer4 = (await readBytes(s4, 'PEER:'.length + String(r4.readUInt16BE(8)).length + 1)).toString();
    expect([...r4.subarray(0, 8)]).toEqual([5, 0, 0, 1, 127, 0, 0, 1]);
    expect(peer4).toBe(`PEER:${r4.readUInt16BE(8)}\n`);

    const s6 = await connect(p);
    s6.write(Buffer.concat([greeting(0), request6([...Array(15).fill(0), 1], up6)]));
    await readBytes(s6, 2);
    const r6 = await readBytes(s6, 22);
    expect([...r6.subarray(0, 20)]).toEqual([5, 0, 0, 4, ...Array(15).fill(0), 1]);
    expect((await readBytes(s6, 'PEER:'.length + String(r6.readUInt16BE(20)).length + 1)).toString()).toBe(`PEER:${r6.readUInt16BE(20)}\n`);

    const s = await connect(p);
    s.write(socks4('127.0.0.1', up4));
    const r = await readBytes(s, 8);
    expect([r[0], r[1], ...r.subarray(4)]).toEqual([0, 0x5a, 127, 0, 0, 1]);
    expect((await readBytes(s, 'PEER:'.length + String(r.readUInt16BE(2)).length + 1)).toString()).toBe(`PEER:${r.readUInt16BE(2)}\n`);
    for (const c of [s4, s6, s]) c.destroy();
  });

  test('bytes sent with the request, in the same segment as the whole handshake, are relayed', async () => {
    const echo = await startEchoServer();
    const { gw, events } = await start(
      socksService('pw', 'password', ['{ user: alice, to: ["127.0.0.1/32"] }']) + socksService('open', 'none', ['{ to: ["127.0.0.1/32"] }']),
    );
    const pw = await exchange(portOf(gw, 'pw'), Buffer.concat([greeting(2), login('alice', 's3cret'), request4('127.0.0.1', echo.port), Buffer.from('ping')]));
    expect(pw.data.subarray(0, 4)).toEqual(Buffer.from([5, 2, 1, 0]));
    expect(pw.data.subarray(4, 6)).toEqual(Buffer.from([5, 0]));
    expect(pw.data.subarray(14).toString()).toBe('ping');
    const open = await exchange(portOf(gw, 'open'), Buffer.concat([socks4a('localhost', echo.port), Buffer.from('pong')]));
    expect(open.data.subarray(8).toString()).toBe('pong');
    await waitFor(() => disconnects(events).length === 2);
    expect(disconnects(events).map((e) => [e.user, e.bytesFromClient > 4, e.reason])).toEqual([['alice', true, 'client-closed'], [null, true, 'client-closed']]);
  });

  test('no acceptable method: 0xFF, whichever side lacks it', async () => {
    const { gw, events } = await start(socksService('pw', 'password', ['{ to: ["*"] }']) + socksService('open', 'none', ['{ to: ["*"] }']));
    expect((await exchange(portOf(gw, 'pw'), greeting(0))).data).toEqual(Buffer.from([5, 0xff]));
    expect((await exchange(portOf(gw, 'open'), greeting(2))).data).toEqual(Buffer.from([5, 0xff]));
    expect((await exchange(portOf(gw, 'open'), greeting())).data).toEqual(Buffer.from([5, 0xff]));
    await waitFor(() => disconnects(events).length === 3);
    expect(disconnects(events).every((e) => e.reason === 'socks' && e.error === 'MAPGATE_ERR_SOCKS_METHOD')).toBe(true);
  });
});

describe('protocol: socks with ssh', () => {
  test("ssh -o ProxyCommand='nc -X 5 -x …' runs a command on an sshd only through the gateway", async () => {
    const sshd = await startSshd();
    const { gw, events } = await start(socksService('socks', 'none', [`{ to: ["127.0.0.1/32:${sshd.port}", "localhost:${sshd.port}"] }`]));
    const proxy = `nc -X 5 -x 127.0.0.1:${portOf(gw, 'socks')} %h %p`;
    const r = await sshd.ssh(['echo', 'hello'], ['-o', `ProxyCommand=${proxy}`]);
    expect([r.code, r.stdout, r.stderr.trim()]).toEqual([0, 'hello\n', '']);
    await waitFor(() => disconnects(events).length === 1);
    expect(disconnects(events)[0]).toMatchObject({ requested: `127.0.0.1:${sshd.port}`, destination: `127.0.0.1:${sshd.port}` });
    // Another port on the same host is not in the mapping: nc gets 0x02 and ssh cannot start.
    const other = await unusedPort();
    const refused = await sshd.ssh(['echo', 'hello'], ['-o', `ProxyCommand=nc -X 5 -x 127.0.0.1:${portOf(gw, 'socks')} %h ${other}`]);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout).toBe('');
  });
});

describe('protocol: socks in events and /status', () => {
  test('an open connection shows its user, auth and requested destination', async () => {
    const echo = await startEchoServer();
    const { gw, events } = await start(socksService('socks', 'password', ['{ user: alice, to: ["localhost"] }']));
    const s = await connect(portOf(gw, 'socks'));
    s.write(Buffer.concat([greeting(2), login('alice', 's3cret'), requestName('localhost', echo.port)]));
    await readBytes(s, 14);
    const status = JSON.parse((await adminGet(gw, '/status')).body) as { connections: Array<Record<string, unknown>> };
    expect(status.connections).toEqual([expect.objectContaining({ user: 'alice', auth: 'password', requested: `localhost:${echo.port}`, state: 'relaying' })]);
    expect(events[0]).toMatchObject({ event: 'ClientConnect', user: 'alice', auth: 'password', requested: `localhost:${echo.port}` });
    s.end();
    await nothingLeft(gw, events, 'socks');
  });
});
