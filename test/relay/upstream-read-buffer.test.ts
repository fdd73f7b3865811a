import { createCipheriv, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { ClientDisconnectEvent } from '../../src/events/events';
import { Relay, UPSTREAM_READ, type RelayResult } from '../../src/relay/relay';
import { lentBuffers, MAX_LENT, READ_BUFFER_BYTES } from '../../src/relay/read-buffer';
import { connect, listen, onTeardown, portOf, readAll, sha256, startGateway, waitFor, writeHashed } from '../helpers/net';
import { prng } from '../helpers/prng';

// The upstream leg is read into reused buffers (onread): these tests check that no byte is
// overwritten, lost or reordered, with slow readers, many connections at once, half-closes, and
// servers that speak first. The streams are longer than loopback's kernel buffers hold, so the
// gateway's writes to a slow client do stay pending: reading into a buffer such a write still
// references (or handing the shared one to a direct write) fails the sha256 checks here.

const FIXTURES = join(__dirname, '..', 'fixtures');
const pem = (name: string): Buffer => readFileSync(join(FIXTURES, name));

/** A seeded pseudo-random byte stream (AES-128-CTR keystream): the same bytes for the same seed, fast. */
function byteStream(seed: number): (n: number) => Buffer {
  const key = createHash('sha256').update(`seed ${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return (n) => cipher.update(Buffer.alloc(n));
}

/**
 * Writes `total` seeded bytes in chunks of random size (1 B to 256 KiB), honouring backpressure,
 * then half-closes; resolves the sha256 of what was written.
 */
function send(s: net.Socket, seed: number, total: number): Promise<string> {
  const rnd = prng(seed ^ 0x5eed);
  const bytes = byteStream(seed);
  return writeHashed(s, total, (left) => bytes(Math.min(left, 1 + Math.floor(rnd() ** 3 * 256 * 1024))));
}

/**
 * Reads nothing for 300 ms, then reads to the end, pausing after every other chunk or so for up
 * to `maxPauseMs`: the kernels' buffers fill (about 4 MB on loopback) and the writer's writes stay
 * pending, again and again. Resolves the sha256 and length of what came.
 */
function readSlowly(s: net.Socket, seed: number, maxPauseMs: number): Promise<{ hash: string; length: number }> {
  const rnd = prng(seed ^ 0x510e);
  const hash = createHash('sha256');
  let length = 0;
  return new Promise((resolve, reject) => {
    s.pause();
    setTimeout(() => s.resume(), 300);
    s.on('data', (c: Buffer) => {
      hash.update(c);
      length += c.length;
      if (rnd() < 0.5) {
        s.pause();
        setTimeout(() => s.resume(), Math.floor(rnd() * maxPauseMs));
      }
    });
    s.once('end', () => resolve({ hash: hash.digest('hex'), length }));
    s.once('error', reject);
  });
}

interface Upstream {
  readonly port: number;
  /** Per accepted connection: the sha256 of what it sent, and of what it received. */
  readonly sent: Array<Promise<string>>;
  readonly received: Array<Promise<{ hash: string; length: number }>>;
}

/**
 * An upstream (TCP or TLS) that, the moment it accepts, sends `sizeOf(i)` seeded bytes (seed
 * 1000 + i for the i-th connection) and half-closes; it reads what it is sent slowly as well.
 */
async function startStreamer(sizeOf: (i: number) => number, secure = false): Promise<Upstream> {
  const sent: Array<Promise<string>> = [];
  const received: Array<Promise<{ hash: string; length: number }>> = [];
  const serve = (s: net.Socket): void => {
    const i = sent.length;
    s.on('error', () => {});
    received.push(readSlowly(s, 2000 + i, 4));
    sent.push(send(s, 1000 + i, sizeOf(i)));
  };
  const server = secure
    ? tls.createServer({ key: pem('server.key'), cert: pem('server.pem'), allowHalfOpen: true }, serve)
    : net.createServer({ allowHalfOpen: true }, serve);
  return { port: await listen(server), sent, received };
}

const gatewayYaml = (destination: string): string => `
admin: { listen: "off" }
log: { events: "off" }
services:
  - name: s
    port: 0
    bind: [127.0.0.1]
    maxConnections: 1000
    limits: { perSource: 1000 }
    destination: ${destination}
`;

/** Collects the next `n` ClientDisconnect events. */
function disconnects(gw: Awaited<ReturnType<typeof startGateway>>, n: number): Promise<ClientDisconnectEvent[]> {
  const events: ClientDisconnectEvent[] = [];
  return new Promise((resolve) => {
    gw.on('ClientDisconnect', (e) => {
      events.push(e);
      if (events.length === n) resolve(events);
    });
  });
}

/**
 * `conns` clients at once: each sends `up(i)` seeded bytes while the upstream sends `down(i)`;
 * both sides read slowly. Every stream must arrive whole (sha256 and length, matched as sets:
 * the upstream cannot tell which client is which), and the events must count every byte.
 */
async function manyBothWays(destination: string, upstream: Upstream, conns: number, up: (i: number) => number, down: (i: number) => number): Promise<void> {
  const gw = await startGateway(gatewayYaml(destination), { baseDir: FIXTURES });
  const events = disconnects(gw, conns);
  const port = portOf(gw, 's');
  const clients = await Promise.all(Array.from({ length: conns }, () => connect(port)));
  const clientGot = clients.map((c, i) => readSlowly(c, 3000 + i, 20));
  const clientSent = clients.map((c, i) => send(c, 4000 + i, up(i)));

  await waitFor(() => upstream.sent.length === conns, 10000, 'every connection at the upstream');
  const expectedDown = await Promise.all(upstream.sent);
  const gotDown = await Promise.all(clientGot);
  expect(gotDown.map((g) => g.hash).sort()).toEqual([...expectedDown].sort());
  const expectedUp = await Promise.all(clientSent);
  const gotUp = await Promise.all(upstream.received);
  expect(gotUp.map((g) => g.hash).sort()).toEqual([...expectedUp].sort());

  // Both sides have half-closed by now (send() ends), so every connection ends by itself.
  const e = await events;
  const total = (f: (i: number) => number): number => Array.from({ length: conns }, (_, i) => f(i)).reduce((a, b) => a + b, 0);
  expect(e.map((x) => x.bytesToClient).reduce((a, b) => a + b, 0)).toBe(total(down));
  expect(e.map((x) => x.bytesFromClient).reduce((a, b) => a + b, 0)).toBe(total(up));
  expect(gotDown.map((g) => g.length).sort((a, b) => a - b)).toEqual(e.map((x) => x.bytesToClient).sort((a, b) => a - b));
}

const MB = 1024 * 1024;

describe('upstream read buffer', () => {
  test('24 connections at once, slow readers both ways: every byte arrives, in order (sha256)', async () => {
    // Sizes that are not multiples of the read buffer, and some that are (a read exactly filling it).
    const down = (i: number): number => (i % 4 === 0 ? (100 + i) * READ_BUFFER_BYTES : 6 * MB + i * 77_777);
    const up = (i: number): number => MB + i * 33_333;
    const upstream = await startStreamer(down);
    await manyBothWays(`127.0.0.1:${upstream.port}`, upstream, 24, up, down);
  }, 60000);

  test('TLS upstream: 12 connections at once, slow readers both ways (sha256)', async () => {
    // Sizes around multiples of a TLS record (16 KiB), the most one TLS read delivers.
    const down = (i: number): number => 6 * MB + i * 16_385 - (i % 3) * 16_384;
    const up = (i: number): number => 512 * 1024 + i * 1_000;
    const upstream = await startStreamer(down, true);
    await manyBothWays(JSON.stringify({ host: '127.0.0.1', port: upstream.port, tls: { ca: 'ca.pem', servername: 'localhost' } }), upstream, 12, up, down);
  }, 60000);

  test('half-close: the upstream finishes long before the client, and the other way round', async () => {
    // Even connections: the upstream sends 64 KiB and ends while the client still sends 6 MB.
    // Odd ones: the client sends 1 byte and ends while the upstream still sends 6 MB.
    const down = (i: number): number => (i % 2 === 0 ? 64 * 1024 : 6 * MB);
    const up = (i: number): number => (i % 2 === 0 ? 6 * MB : 1);
    const upstream = await startStreamer(down);
    await manyBothWays(`127.0.0.1:${upstream.port}`, upstream, 8, up, down);
  }, 60000);

  test.each([
    ['plain', '', false],
    ['with a PROXY header sent upstream first', ', proxyProtocol: v1', false],
    ['TLS', ', tls: { ca: ca.pem, servername: localhost }', true],
    ['TLS after a PROXY header', ', proxyProtocol: v2, tls: { ca: ca.pem, servername: localhost }', true],
  ])('a server that speaks first, the moment it accepts (%s): its banner arrives whole, before the answer', async (_what, extra, secure) => {
    const banner = Buffer.concat([Buffer.from('220 ready\r\n'), byteStream(7)(300_000)]);
    const heard: Buffer[] = [];
    const serve = (s: net.Socket): void => {
      s.on('error', () => {});
      s.write(banner);
      readAll(s).then((b) => {
        heard.push(b);
        s.end(Buffer.concat([Buffer.from('bye '), b.subarray(b.length - 4)]));
      }, () => s.destroy());
    };
    const tlsOptions = { key: pem('server.key'), cert: pem('server.pem'), allowHalfOpen: true };
    let server: net.Server;
    if (!secure) server = net.createServer({ allowHalfOpen: true }, serve);
    else if (!extra.includes('proxyProtocol')) server = tls.createServer(tlsOptions, serve);
    else {
      // The PROXY header arrives in clear before the handshake: read it off, then speak TLS.
      server = net.createServer({ allowHalfOpen: true }, (raw) => {
        raw.on('error', () => {});
        raw.once('readable', function takeHeader() {
          const head = raw.read(16) as Buffer | null;
          if (head === null) return raw.once('readable', takeHeader);
          const rest = raw.read(head.readUInt16BE(14)) as Buffer;
          heard.push(Buffer.concat([head, rest]));
          serve(new tls.TLSSocket(raw, { ...tlsOptions, isServer: true }));
        });
      });
    }
    const port = await listen(server);
    const gw = await startGateway(gatewayYaml(`{ host: 127.0.0.1, port: ${port}${extra} }`), { baseDir: FIXTURES });
    const c = await connect(portOf(gw, 's'));
    // The client reads nothing for a while: the banner waits in the gateway's queue and the kernels'.
    await new Promise((r) => setTimeout(r, 200));
    const answer = readAll(c);
    c.end('QUIT');
    const got = await answer;
    expect(sha256(got.subarray(0, banner.length))).toBe(sha256(banner));
    expect(got.subarray(banner.length).toString()).toBe('bye QUIT');
    const quit = heard.pop()!;
    if (extra.includes('v1')) expect(quit.toString('latin1')).toMatch(/^PROXY TCP4 127\.0\.0\.1 127\.0\.0\.1 \d+ \d+\r\nQUIT$/);
    else expect(quit.toString()).toBe('QUIT');
    if (extra.includes('v2')) expect(heard.pop()!.subarray(0, 12).toString('latin1')).toBe('\r\n\r\n\0\r\nQUIT\n');
    expect(heard).toHaveLength(0);
  });
});

/** Two connected sockets on loopback: [the one we dialled, the one the server accepted]. One pair at a time. */
async function socketPair(server: net.Server, port: number, options: Partial<net.TcpNetConnectOpts> = {}): Promise<[net.Socket, net.Socket]> {
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const dialled = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true, ...options });
  onTeardown(() => dialled.destroy());
  await new Promise<void>((resolve, reject) => {
    dialled.once('connect', resolve);
    dialled.once('error', reject);
  });
  const s = await accepted;
  onTeardown(() => s.destroy());
  return [dialled, s];
}

describe('owned read buffers are bounded', () => {
  test(`${MAX_LENT * 2} connections that go quiet right after a burst of exactly 64 KiB hold at most ${MAX_LENT} buffers, and none once closed`, async () => {
    // An echo upstream: each client sends exactly one read buffer's worth and gets it back, then
    // stays open and quiet. A read that filled the buffer hands the socket a buffer of its own
    // for the next read, which an idle socket keeps: the bound caps how many are out.
    const echo = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.pipe(s); });
    const gw = await startGateway(gatewayYaml(`127.0.0.1:${await listen(echo)}`));
    onTeardown(() => new Promise<void>((r) => echo.close(() => r())));
    const port = portOf(gw, 's');
    const before = lentBuffers();
    const conns = MAX_LENT * 2;
    const burst = Buffer.alloc(READ_BUFFER_BYTES, 0x42);
    const clients = await Promise.all(Array.from({ length: conns }, async () => {
      const c = await connect(port);
      let got = 0;
      c.on('data', (d: Buffer) => { got += d.length; });
      c.write(burst);
      await waitFor(() => got === burst.length, 20_000, 'the echoed burst');
      return c;
    }));
    // Quiet now: whatever buffers the upstream sockets hold for their next read stay out.
    const held = lentBuffers() - before;
    // It does happen (most bursts arrive in one full read), and no more than the bound.
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(MAX_LENT);
    for (const c of clients) c.destroy();
    await waitFor(() => lentBuffers() === before, 10_000, 'every owned buffer given back');
  }, 60_000);
});

describe('an upstream socket read with UPSTREAM_READ and no relay yet', () => {
  // What the gateway's other readers see (FTP's control channel, bytes before the relay): a stream.
  test('behaves as a stream: data with pause and resume, then end, every byte in order (8 sockets at once)', async () => {
    const server = net.createServer({ allowHalfOpen: true });
    const port = await listen(server);
    const pairs: Array<[net.Socket, net.Socket]> = [];
    for (let i = 0; i < 8; i++) pairs.push(await socketPair(server, port, { onread: UPSTREAM_READ }));
    const sent = pairs.map(([, peer], i) => send(peer, 11 + i, 2 * MB + i * 1_001));
    const got = await Promise.all(pairs.map(([up], i) => readSlowly(up, 31 + i, 10)));
    for (let i = 0; i < pairs.length; i++) {
      expect(got[i].hash).toBe(await sent[i]);
      expect(got[i].length).toBe(2 * MB + i * 1_001);
      expect(pairs[i][0].bytesRead).toBe(2 * MB + i * 1_001);
    }
  });

  test('bytes read before a relay is attached come first, then the rest, in order', async () => {
    const server = net.createServer({ allowHalfOpen: true });
    const port = await listen(server);
    const [up, upPeer] = await socketPair(server, port, { onread: UPSTREAM_READ });
    const [client, clientPeer] = await socketPair(server, port);
    const bytes = byteStream(21);
    const first = bytes(200_000);
    const rest = bytes(3 * MB);
    upPeer.write(first);
    // The upstream socket reads these on its own before any relay exists (up to its high-water mark).
    await new Promise((r) => setTimeout(r, 100));
    expect(up.readableLength).toBeGreaterThan(0);
    const result = new Promise<RelayResult>((resolve) => {
      // The relay's "client" is the accepted end of the second pair.
      new Relay(clientPeer, up, 0, { relayDone: resolve });
    });
    const got = readSlowly(client, 22, 5);
    upPeer.end(rest);
    client.end();
    const g = await got;
    expect(g.hash).toBe(sha256(Buffer.concat([first, rest])));
    expect(['client-closed', 'upstream-closed']).toContain((await result).end);
  });
});
