import * as net from 'node:net';
import { LoginFailures } from '../../src/auth/login-failures';
import { hashPassword, PasswordChecker } from '../../src/auth/password';
import { parseConfig } from '../../src/config/load';
import type { ClientConnectEvent, ClientDisconnectEvent } from '../../src/events/events';
import { nameTarget, SOCKS_LOGINS, SocksHandshake, type SocksLogins } from '../../src/front/socks';
import type { FrontContext, FrontRefusal } from '../../src/front/stage';
import type { Gateway } from '../../src/gateway';
import { REP, socks4Reply, socks5Reply, socks5ReplyCode } from '../../src/protocols/socks';
import { connect, listen, metricValue, portOf, recordEvents, startGateway, waitFor } from '../helpers/net';
import { prng } from '../helpers/prng';
import { exchange, greeting, login, request4, request6, requestName, socks4, socks4a } from '../helpers/socks';

type GatewayEvent = ClientConnectEvent | ClientDisconnectEvent;

let hash = '';
beforeAll(async () => {
  hash = await hashPassword('s3cret');
});
// Every test's client comes from 127.0.0.1: one test's failed logins must not block the next's.
afterEach(() => SOCKS_LOGINS.failures.clear());

function config(auth: 'password' | 'none', to: string[]): ReturnType<typeof parseConfig> {
  return parseConfig(`admin: { listen: "off" }
users:
  alice: { password: "${hash}" }
services:
  - name: socks
    port: 0
    protocol: socks
    socks: { auth: ${auth} }
    mappings:
      - { to: ${JSON.stringify(to)} }
`, 'test.yaml');
}

function freshLogins(): SocksLogins {
  return { checker: new PasswordChecker(), failures: new LoginFailures() };
}

interface StageRun {
  refusal: FrontRefusal | null;
  ctx: FrontContext;
  /** How many times `done` was called (after a pause for late calls). */
  calls: () => number;
  /** The server side's socket, paused as the stage left it. */
  socket: net.Socket;
  /** Listeners on the server socket before the stage ran, per event. */
  before: Record<string, number>;
}

const WATCHED = ['data', 'end', 'close', 'readable'];

/** Runs the stage on one real connection; `send` drives the client side. */
async function runStage(stage: SocksHandshake, send: (client: net.Socket) => Promise<void> | void): Promise<StageRun> {
  const server = net.createServer({ allowHalfOpen: true });
  // listen() adds its own 'connection' handler (teardown bookkeeping): ours goes after it.
  const port = await listen(server);
  const run = new Promise<StageRun>((resolve) => {
    server.once('connection', (socket: net.Socket) => {
      socket.on('error', () => {});
      const before = Object.fromEntries(WATCHED.map((e) => [e, socket.listenerCount(e)]));
      const ctx: FrontContext = { client: { address: socket.remoteAddress!, port: socket.remotePort! }, local: { address: '127.0.0.1', port: 0 }, tls: null, target: null, login: null };
      let calls = 0;
      stage.run(socket, ctx, (refusal) => {
        calls++;
        resolve({ refusal, ctx, calls: () => calls, socket, before });
      });
    });
  });
  const client = await connect(port);
  client.setNoDelay(true);
  await send(client);
  return run;
}

function listenersOf(s: net.Socket): Record<string, number> {
  return Object.fromEntries(WATCHED.map((e) => [e, s.listenerCount(e)]));
}

/** What arrives on `s` within `ms` once it is resumed. */
function drain(s: net.Socket, ms = 50): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  s.resume();
  return new Promise((r) => setTimeout(() => r(Buffer.concat(chunks)), ms));
}

const tick = (ms = 1): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('nameTarget', () => {
  test.each([
    ['Example.COM', { host: 'example.com', address: null }],
    ['example.com.', { host: 'example.com', address: null }],
    ['_sip._tcp.example', { host: '_sip._tcp.example', address: null }],
    ['127.0.0.1', { host: '127.0.0.1', address: { family: 4, text: '127.0.0.1' } }],
    ['127.0.0.1.', { host: '127.0.0.1', address: { family: 4, text: '127.0.0.1' } }],
    ['[::1]', { host: '::1', address: { family: 6, text: '::1' } }],
    ['0:0:0:0:0:0:0:1', { host: '::1', address: { family: 6, text: '::1' } }],
    ['::FFFF:10.0.0.1', { host: '10.0.0.1', address: { family: 4, text: '10.0.0.1' } }],
  ])('%s', (name, expected) => {
    expect(nameTarget(Buffer.from(name))).toMatchObject(expected);
  });

  test.each([
    'a b', 'exa\0mple', 'ex\u00e4mple', '-lead.example', 'a..b', '[example.com]', '[10.0.0.1]', 'fe80::1%eth0',
    // Numeric last labels are addresses to inet_aton (127.1 is 127.0.0.1), not names: refused, never guessed.
    '127.1', '0x7f000001', '127.000.000.001', 'x'.repeat(64) + '.example', `${'a.'.repeat(126)}ab`,
  ])('%j is no host', (name) => {
    expect(nameTarget(Buffer.from(name, 'latin1'))).toBeNull();
  });
});

describe('SOCKS replies', () => {
  test('encodings: IPv4 10 bytes, IPv6 22, none as IPv4 zeros; SOCKS4 8 bytes', () => {
    expect(socks5Reply(REP.SUCCEEDED, { family: 4, words: [0x7f000001], text: '127.0.0.1' }, 1080)).toEqual(Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, 4, 56]));
    expect(socks5Reply(REP.NOT_ALLOWED)).toEqual(Buffer.from([5, 2, 0, 1, 0, 0, 0, 0, 0, 0]));
    expect(socks5Reply(0, { family: 6, words: [0x20010db8, 0, 0, 1], text: '2001:db8::1' }, 1)).toEqual(
      Buffer.from([5, 0, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1]));
    expect(socks4Reply(0x5a, { family: 4, words: [0x0a000001], text: '10.0.0.1' }, 80)).toEqual(Buffer.from([0, 0x5a, 0, 80, 10, 0, 0, 1]));
    expect(socks4Reply(0x5a, { family: 6, words: [0, 0, 0, 1], text: '::1' }, 80)).toEqual(Buffer.from([0, 0x5a, 0, 0, 0, 0, 0, 0]));
  });

  test.each([
    ['rejected', null, 0x02], ['no-route', null, 0x02], ['limit', 'per-source', 0x02],
    ['connect-failed', 'ECONNREFUSED', 0x05], ['connect-failed', 'EHOSTUNREACH', 0x04], ['connect-failed', 'ENOTFOUND', 0x04],
    ['connect-failed', 'EAI_AGAIN', 0x04], ['connect-failed', 'EAI_NONAME', 0x04], ['connect-failed', 'ENETUNREACH', 0x03],
    ['connect-failed', 'ETIMEDOUT', 0x06], ['connect-timeout', 'MAPGATE_ERR_CONNECT_TIMEOUT', 0x06],
    ['connect-failed', 'EADDRNOTAVAIL', 0x01], ['tls-failed', 'CERT_HAS_EXPIRED', 0x01], ['shutdown', null, 0x01],
  ] as const)('%s %s → %i', (reason, error, code) => {
    expect(socks5ReplyCode(reason, error)).toBe(code);
  });
});

describe('SocksHandshake on a real socket', () => {
  test('one byte per segment: greeting, login, request and pipelined data; listeners removed, done once, data kept', async () => {
    const c = config('password', ['localhost']);
    const stage = new SocksHandshake(c.services[0], () => c.users, freshLogins());
    const handshake = Buffer.concat([greeting(0, 2), login('alice', 's3cret'), requestName('LocalHost.', 8080), Buffer.from('GET /')]);
    const replies: Buffer[] = [];
    const r = await runStage(stage, async (c) => {
      c.on('data', (d: Buffer) => replies.push(d));
      for (const byte of handshake) {
        c.write(Buffer.from([byte]));
        await tick();
      }
    });
    expect(r.refusal).toBeNull();
    expect(r.ctx.login).toBe('alice');
    expect(r.ctx.target).toEqual({ host: 'localhost', address: null, port: 8080, label: 'localhost:8080', version: 5 });
    expect(listenersOf(r.socket)).toEqual(r.before);
    expect(r.socket.isPaused()).toBe(true);
    // What came after the request is the relay's, still on the socket.
    expect((await drain(r.socket)).toString()).toBe('GET /');
    expect(Buffer.concat(replies)).toEqual(Buffer.from([5, 2, 1, 0]));
    expect(r.calls()).toBe(1);
  });

  test('every split of a whole handshake into two segments gives the same result', async () => {
    const stage = new SocksHandshake(config('none', ['*']).services[0], () => [], freshLogins());
    const whole = Buffer.concat([greeting(0), request6([0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 5], 443), Buffer.from('after')]);
    for (let cut = 1; cut < whole.length; cut++) {
      const r = await runStage(stage, async (c) => {
        c.write(whole.subarray(0, cut));
        await tick(2);
        c.write(whole.subarray(cut));
      });
      expect([cut, r.refusal, r.ctx.target?.label]).toEqual([cut, null, '[2001:db8::5]:443']);
      expect((await drain(r.socket, 20)).toString()).toBe('after');
    }
  });

  test('SOCKS4a: user id and host split anywhere; the name resolved when an address block needs it', async () => {
    const stage = new SocksHandshake(config('none', ['127.0.0.0/8']).services[0], () => [], freshLogins());
    expect(stage.resolveNames).toBe(true);
    const whole = socks4a('localhost', 22, 'someone');
    for (const cut of [1, 7, 8, 12, 16, 17, whole.length - 1]) {
      const r = await runStage(stage, async (c) => {
        c.write(whole.subarray(0, cut));
        await tick(2);
        c.write(whole.subarray(cut));
      });
      expect(r.refusal).toBeNull();
      expect(r.ctx.target).toMatchObject({ host: 'localhost', address: { family: 4, text: '127.0.0.1' }, port: 22, version: 4 });
    }
  });

  test('a client that leaves during the password check: done is never called and every listener is gone', async () => {
    const cfg = config('password', ['*']);
    const stage = new SocksHandshake(cfg.services[0], () => cfg.users, freshLogins());
    let server: net.Socket | null = null;
    let before: Record<string, number> = {};
    let calls = 0;
    const srv = net.createServer();
    const port = await listen(srv);
    srv.on('connection', (s) => {
      server = s;
      s.on('error', () => {});
      before = listenersOf(s);
      stage.run(s, { client: { address: '127.0.0.1', port: 1 }, local: { address: '127.0.0.1', port: 2 }, tls: null, target: null, login: null }, () => calls++);
    });
    const c = await connect(port);
    c.write(Buffer.concat([greeting(2), login('alice', 's3cret')]));
    await waitFor(() => server !== null && server.bytesRead > 0);
    c.destroy();
    await waitFor(() => server!.destroyed);
    await new Promise((r) => setTimeout(r, 300));
    expect(calls).toBe(0);
    expect(listenersOf(server!)).toMatchObject({ data: before.data, end: before.end, readable: before.readable });
  });
});

/**
 * Two services with a 500 ms handshake deadline; what the mappings forward goes to an upstream that
 * closes every connection at once. (Not a port found closed: the gateway may be given it next.)
 * No address blocks in `to`: random names are never looked up in the DNS.
 */
async function startFuzzGateway(): Promise<{ gw: Gateway; events: GatewayEvent[] }> {
  const closed = await listen(net.createServer((s) => s.destroy()));
  const svc = (name: string, auth: string): string => `  - name: ${name}
    port: 0
    bind: [127.0.0.1]
    protocol: socks
    socks: { auth: ${auth} }
    handshakeTimeout: 500ms
    connectTimeout: 500ms
    mappings:
      - { to: ["fuzz.test:9"], destination: "127.0.0.1:${closed}" }
      - { to: ["*.reject.test"], action: reject }
`;
  const gw = await startGateway(`admin: { listen: "127.0.0.1:0" }
log: { events: "off" }
users:
  alice: { password: "${hash}" }
services:
${svc('pw', 'password')}${svc('open', 'none')}`);
  return { gw, events: recordEvents(gw) };
}

async function leakFree(gw: Gateway, events: readonly GatewayEvent[]): Promise<void> {
  await waitFor(() => gw.open.size === 0, 5000, 'no open connections');
  for (const service of ['pw', 'open']) expect(await metricValue(gw, 'mapgate_connections_active', { service })).toBe(0);
  const ids = (kind: string): string[] => events.filter((e) => e.event === kind).map((e) => e.id).sort();
  expect(ids('ClientDisconnect')).toEqual(ids('ClientConnect'));
  expect(new Set(ids('ClientConnect')).size).toBe(ids('ClientConnect').length);
}

describe('malformed handshakes through the gateway', () => {
  const REFUSED4 = Buffer.from([0, 0x5b, 0, 0, 0, 0, 0, 0]);
  const rep5 = (code: number): Buffer => Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
  const cases: Array<[string, 'pw' | 'open', Buffer, Buffer, string]> = [
    ['an unknown version: closed without a word', 'open', Buffer.from([6, 1, 0]), Buffer.alloc(0), 'MAPGATE_ERR_SOCKS_VERSION'],
    ['HTTP to a SOCKS port', 'open', Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.alloc(0), 'MAPGATE_ERR_SOCKS_VERSION'],
    ['a login of version 2', 'pw', Buffer.concat([greeting(2), Buffer.from([2, 1, 0x61, 1, 0x62])]), Buffer.from([5, 2, 1, 1]), 'MAPGATE_ERR_SOCKS_VERSION'],
    ['a request of version 4 after a SOCKS5 greeting', 'open', Buffer.concat([greeting(0), Buffer.from([4, 1, 0, 1, 127, 0, 0, 1, 0, 80])]), Buffer.concat([Buffer.from([5, 0]), rep5(1)]), 'MAPGATE_ERR_SOCKS_VERSION'],
    ['an empty domain name', 'open', Buffer.concat([greeting(0), Buffer.from([5, 1, 0, 3, 0, 0, 80])]), Buffer.concat([Buffer.from([5, 0]), rep5(1)]), 'MAPGATE_ERR_SOCKS_MALFORMED'],
    ['a 254-character name', 'open', Buffer.concat([greeting(0), requestName(`${'a'.repeat(62)}.`.repeat(4) + 'ab', 80)]), Buffer.concat([Buffer.from([5, 0]), rep5(4)]), 'MAPGATE_ERR_SOCKS_HOST'],
    ['a name with a NUL', 'open', Buffer.concat([greeting(0), requestName('a\0b', 80)]), Buffer.concat([Buffer.from([5, 0]), rep5(4)]), 'MAPGATE_ERR_SOCKS_HOST'],
    ['port 0', 'open', Buffer.concat([greeting(0), request4('10.9.9.9', 0)]), Buffer.concat([Buffer.from([5, 0]), rep5(1)]), 'MAPGATE_ERR_SOCKS_PORT'],
    ['0.0.0.0 (the gateway host itself)', 'open', Buffer.concat([greeting(0), request4('0.0.0.0', 22)]), Buffer.concat([Buffer.from([5, 0]), rep5(2)]), 'MAPGATE_ERR_SOCKS_UNSPECIFIED'],
    ['[::] (the gateway host itself)', 'open', Buffer.concat([greeting(0), request6(Array(16).fill(0), 22)]), Buffer.concat([Buffer.from([5, 0]), rep5(2)]), 'MAPGATE_ERR_SOCKS_UNSPECIFIED'],
    ['SOCKS4 to 0.0.0.0', 'open', socks4('0.0.0.0', 22), REFUSED4, 'MAPGATE_ERR_SOCKS_UNSPECIFIED'],
    ['a SOCKS4 user id of 256 bytes', 'open', Buffer.concat([socks4('10.9.9.9', 9, 'u'.repeat(256))]), REFUSED4, 'MAPGATE_ERR_SOCKS_TOO_LONG'],
    ['a SOCKS4 user id of 300 bytes and no NUL', 'open', Buffer.concat([Buffer.from([4, 1, 0, 9, 10, 9, 9, 9]), Buffer.alloc(300, 0x75)]), REFUSED4, 'MAPGATE_ERR_SOCKS_TOO_LONG'],
    ['a SOCKS4a host of 256 bytes', 'open', socks4a('h'.repeat(256), 9), REFUSED4, 'MAPGATE_ERR_SOCKS_TOO_LONG'],
    ['a SOCKS4a host of 300 bytes and no NUL', 'open', Buffer.concat([socks4('0.0.0.1', 9), Buffer.alloc(300, 0x68)]), REFUSED4, 'MAPGATE_ERR_SOCKS_TOO_LONG'],
    ['an empty SOCKS4a host', 'open', socks4a('', 9), REFUSED4, 'MAPGATE_ERR_SOCKS_MALFORMED'],
    ['SOCKS4 BIND', 'open', socks4('10.9.9.9', 9, 'u', 2), REFUSED4, 'MAPGATE_ERR_SOCKS_COMMAND'],
    ['a numeric name (inet_aton would take it)', 'open', Buffer.concat([greeting(0), requestName('10.9.2313', 9)]), Buffer.concat([Buffer.from([5, 0]), rep5(4)]), 'MAPGATE_ERR_SOCKS_HOST'],
  ];

  test.each(cases)('%s', async (_what, service, sent, reply, code) => {
    const { gw, events } = await startFuzzGateway();
    const r = await exchange(portOf(gw, service), sent, { end: false });
    expect(r.data).toEqual(reply);
    await waitFor(() => events.length === 2);
    expect(events[1]).toMatchObject({ event: 'ClientDisconnect', reason: 'socks', error: code });
    await leakFree(gw, events);
  });

  test('the longest fields are read whole: a 255-byte SOCKS4 user id and 4a host, a 253-character name', async () => {
    const { gw, events } = await startFuzzGateway();
    const name = `${'a'.repeat(62)}.`.repeat(4) + 'a';
    expect(name).toHaveLength(253);
    const open = portOf(gw, 'open');
    expect((await exchange(open, socks4a('fuzz.test', 9, 'u'.repeat(255)))).data.subarray(0, 2)).toEqual(Buffer.from([0, 0x5a]));
    // 255 bytes fit the field, but no host name is longer than 253.
    expect((await exchange(open, socks4a(`${name}hh`, 9, 'u'.repeat(255)))).data).toEqual(REFUSED4);
    expect((await exchange(open, socks4a(name, 9, 'u'.repeat(255)))).data).toEqual(REFUSED4);
    expect((await exchange(open, Buffer.concat([greeting(0), requestName(name, 9)]))).data.subarray(2)).toEqual(rep5(2));
    await waitFor(() => events.length === 8);
    // Read whole and routed (served, no route), or refused as no host name, but never as too long.
    expect(events.filter((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect').map((e) => [e.destinationIndex, e.error])).toEqual([
      [0, null], [null, 'MAPGATE_ERR_SOCKS_HOST'], [null, null], [null, null]]);
  });

  test('truncated at every byte of a SOCKS5 login and request: closed at once, only the replies due', async () => {
    const { gw, events } = await startFuzzGateway();
    const whole = Buffer.concat([greeting(2), login('nobody', 'x'), requestName('fuzz.test', 9)]);
    const greetingEnd = 3;
    const loginEnd = greetingEnd + login('nobody', 'x').length;
    for (let n = 1; n < loginEnd; n++) {
      const r = await exchange(portOf(gw, 'pw'), whole.subarray(0, n), {});
      expect([n, r.data]).toEqual([n, n < greetingEnd ? Buffer.alloc(0) : Buffer.from([5, 2])]);
      expect(r.ms).toBeLessThan(400);
    }
    // Half-closed after a good login (while it is checked) or in the request after it.
    const good = Buffer.concat([greeting(2), login('alice', 's3cret'), requestName('fuzz.test', 9)]);
    const goodLoginEnd = greetingEnd + login('alice', 's3cret').length;
    for (let n = goodLoginEnd; n < good.length; n++) {
      const r = await exchange(portOf(gw, 'pw'), good.subarray(0, n));
      expect([n, r.data]).toEqual([n, Buffer.from([5, 2, 1, 0])]);
      expect(r.ms).toBeLessThan(400);
    }
    const open = Buffer.concat([greeting(0), requestName('fuzz.test', 9)]);
    for (let n = 1; n < open.length; n++) {
      const r = await exchange(portOf(gw, 'open'), open.subarray(0, n));
      expect([n, r.data]).toEqual([n, n < 3 ? Buffer.alloc(0) : Buffer.from([5, 0])]);
    }
    await waitFor(() => events.length === 2 * (loginEnd - 1 + good.length - goodLoginEnd + open.length - 1));
    const reasons = new Set(events.filter((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect').map((e) => `${e.reason} ${e.error}`));
    expect([...reasons]).toEqual(['socks MAPGATE_ERR_SOCKS_TRUNCATED']);
    await leakFree(gw, events);
  });

  test('a client that stops sending is closed at the handshake deadline, wherever it stopped', async () => {
    const { gw, events } = await startFuzzGateway();
    const stops = [Buffer.from([5]), greeting(2), Buffer.concat([greeting(2), login('alice', 's3cret')]), Buffer.concat([greeting(0), Buffer.from([5, 1, 0])]), socks4('10.9.9.9', 9).subarray(0, 9)];
    const services: Array<'pw' | 'open'> = ['open', 'pw', 'pw', 'open', 'open'];
    const runs = await Promise.all(stops.map((b, i) => exchange(portOf(gw, services[i]), b, { end: false })));
    for (const r of runs) {
      expect(r.ms).toBeGreaterThanOrEqual(450);
      expect(r.ms).toBeLessThan(1500);
    }
    await waitFor(() => events.length === 10);
    expect(events.filter((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect').map((e) => e.reason)).toEqual(Array(5).fill('handshake-timeout'));
    await leakFree(gw, events);
  });

  test('10,000 seeded random handshakes, 100 at a time: no crash, each closed within the deadline, nothing leaked', async () => {
    const { gw, events } = await startFuzzGateway();
    const ports = { pw: portOf(gw, 'pw'), open: portOf(gw, 'open') };
    const rnd = prng(0x50c5);
    const int = (n: number): number => Math.floor(rnd() * n);
    const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
    const templates: Array<() => Buffer> = [
      () => Buffer.concat([greeting(0), request4('10.9.9.9', 9)]),
      () => Buffer.concat([greeting(0, 2), login('alice', int(2) ? 's3cret' : 'nope'), requestName('fuzz.test', 9)]),
      () => Buffer.concat([greeting(2), login(bytes(int(20)).toString('latin1'), 'x'), requestName('a.reject.test', 1 + int(65535))]),
      () => Buffer.concat([greeting(0), requestName('b.reject.test', 1 + int(65535))]),
      () => Buffer.concat([greeting(0), request6([...bytes(16)], int(65536))]),
      () => Buffer.concat([greeting(int(256), int(256)), requestName(bytes(int(256)), 9)]),
      () => socks4('10.9.9.9', 9, bytes(int(300)).toString('latin1').replace(/\0/g, '')),
      () => socks4a(bytes(int(260)).toString('latin1').replace(/\0/g, 'x'), int(65536)),
      () => Buffer.concat([Buffer.from([[4, 5][int(2)]]), bytes(int(600))]),
      () => bytes(1 + int(300)),
    ];
    const mutate = (b: Buffer): Buffer => {
      const out = Buffer.from(b);
      const flips = int(3) === 0 ? 1 + int(4) : 0;
      for (let i = 0; i < flips && out.length > 0; i++) out[int(out.length)] = int(256);
      return int(4) === 0 ? out.subarray(0, int(out.length + 1)) : out;
    };
    const one = async (): Promise<void> => {
      const data = mutate(templates[int(templates.length)]());
      const cuts = [...new Set(Array.from({ length: int(4) }, () => int(data.length + 1)))].sort((x, y) => x - y);
      const parts = [0, ...cuts, data.length].slice(1).map((end, i, all) => data.subarray(i === 0 ? 0 : all[i - 1], end)).filter((p) => p.length > 0);
      const keepOpen = int(20) === 0;
      const r = await exchange(int(2) ? ports.pw : ports.open, parts.length ? parts : [Buffer.alloc(0)], { end: !keepOpen, gapMs: int(2) });
      // Seen from the client, the deadline plus however long a loaded machine takes to accept and to
      // deliver the close; the deadline itself is checked on the gateway's side below.
      if (r.ms > 3000) throw new Error(`open for ${r.ms} ms: ${data.toString('hex')}`);
    };
    const total = 10_000;
    let started = 0;
    const worker = async (): Promise<void> => {
      while (started < total) {
        started++;
        await one();
      }
    };
    await Promise.all(Array.from({ length: 100 }, worker));
    expect(events.filter((e) => e.event === 'ClientConnect')).toHaveLength(total);
    await leakFree(gw, events);
    const ends = events.filter((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect');
    // From accept to close: the 500 ms deadline, and the event loop's slack with 100 clients (and
    // the gateway) in this process on a loaded 2-core machine.
    expect(Math.max(...ends.map((e) => e.durationMs))).toBeLessThan(1500);
    // Most never got past the parser; some reached routing, a few were served.
    const reasons = new Set(ends.map((e) => e.reason));
    for (const r of ['socks', 'auth-failed', 'handshake-timeout', 'no-route', 'rejected']) expect([r, reasons.has(r as never)]).toEqual([r, true]);
    expect(ends.some((e) => e.destinationIndex === 0)).toBe(true);
  }, 60_000);
});
