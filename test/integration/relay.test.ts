import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { connect, listen, nextDisconnect, portOf, readAll, roundTrip, sha256, startEchoServer, startGateway, closed, writeHashed } from '../helpers/net';

const svc = (dest: string, extra = ''): string => `
admin: { listen: "off" }
log: { events: "off" }
services:
  - name: s
    port: 0
    bind: [127.0.0.1, "::1"]
    destination: ${dest}
${extra}`;

/** Writes `total` random bytes in 64 KiB chunks, honouring backpressure; resolves their sha256. */
function writeRandom(s: net.Socket, total: number): Promise<string> {
  return writeHashed(s, total, (left) => randomBytes(Math.min(65536, left)));
}

describe('relay', () => {
  test('50 MB each way arrive intact (sha256) through the gateway', async () => {
    const MB50 = 50 * 1024 * 1024;
    // Upstream: hashes what it receives, and sends its own 50 MB.
    let upstreamGot!: Promise<string>;
    let upstreamSent!: Promise<string>;
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      upstreamGot = readAll(s).then(sha256);
      upstreamSent = writeRandom(s, MB50);
    });
    const port = await listen(server);
    const gw = await startGateway(svc(`127.0.0.1:${port}`));
    const done = nextDisconnect(gw);
    const c = await connect(portOf(gw, 's'));
    const clientGot = readAll(c).then(sha256);
    const clientSent = await writeRandom(c, MB50);
    expect(await upstreamGot).toBe(clientSent);
    expect(await clientGot).toBe(await upstreamSent);
    const e = await done;
    expect(e.bytesFromClient).toBe(MB50);
    expect(e.bytesToClient).toBe(MB50);
  }, 60000);

  test('client half-close is forwarded; the upstream can still answer', async () => {
    // Upstream answers only after it sees the client's FIN.
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      const got = readAll(s);
      got.then((b) => s.end(`got ${b.length} bytes: ${b.toString()}`));
    });
    const port = await listen(server);
    const gw = await startGateway(svc(`127.0.0.1:${port}`));
    const answer = await roundTrip(portOf(gw, 's'), 'hello');
    expect(answer.toString()).toBe('got 5 bytes: hello');
  });

  test('upstream half-close is forwarded; the client can still send', async () => {
    let received!: Promise<Buffer>;
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      received = readAll(s);
      s.end('banner-then-FIN');
    });
    const port = await listen(server);
    const gw = await startGateway(svc(`127.0.0.1:${port}`));
    const c = await connect(portOf(gw, 's'));
    const fromUpstream = await readAll(c);
    expect(fromUpstream.toString()).toBe('banner-then-FIN');
    // Our side is still open: data sent after the upstream's FIN still arrives.
    c.end('late data');
    expect((await received).toString()).toBe('late data');
    await closed(c);
  });

  test('IPv6 client through an IPv6 listener to an IPv4 upstream', async () => {
    const { port } = await startEchoServer();
    const gw = await startGateway(svc(`127.0.0.1:${port}`));
    const l = gw.endpoints().find((e) => e.address === '::1')!;
    const done = nextDisconnect(gw);
    expect((await roundTrip(l.port, 'v6 hello', '::1')).toString()).toBe('v6 hello');
    const e = await done;
    expect(e.client).toMatch(/^\[::1\]:\d+$/);
    expect(e.listener).toBe(`[::1]:${l.port}`);
  });

  test('IPv6 upstream', async () => {
    const { port } = await startEchoServer('::1');
    const gw = await startGateway(svc(`"[::1]:${port}"`));
    expect((await roundTrip(portOf(gw, 's'), 'to v6')).toString()).toBe('to v6');
  });
});
