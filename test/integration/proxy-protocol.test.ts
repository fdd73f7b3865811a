import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { ClientDisconnectEvent } from '../../src/events/events';
import { parseProxyHeader, V2_SIGNATURE } from '../../src/front/proxy-header';
import { connect, listen, metricValue, nextDisconnect, onTeardown, portOf, readUntilClose, recordEvents, startGateway, startTaggedServer, waitFor } from '../helpers/net';

const FIXTURES = join(__dirname, '..', 'fixtures');

/** An upstream that records everything each connection sent, and answers `ok` once the client half-closes. */
async function startRecorder(): Promise<{ port: number; received: Buffer[] }> {
  const received: Buffer[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const chunks: Buffer[] = [];
    const i = received.push(Buffer.alloc(0)) - 1;
    s.on('error', () => {});
    s.on('data', (d: Buffer) => { chunks.push(d); received[i] = Buffer.concat(chunks); });
    s.on('end', () => s.end('ok'));
  });
  return { port: await listen(server), received };
}

const yaml = (services: string): string => `
admin: { listen: "127.0.0.1:0" }
log: { events: "off" }
users:
  lb-client: { sources: [10.1.2.3] }
services:
${services}`;

async function startBehindLb(extra = ''): Promise<{ port: number; gw: Awaited<ReturnType<typeof startGateway>> }> {
  const [lb, other] = await Promise.all([startTaggedServer('lb'), startTaggedServer('other')]);
  const gw = await startGateway(yaml(`  - name: pp
    port: 0
    bind: [127.0.0.1]
    handshakeTimeout: 400ms
    accept:
      proxyProtocol: { from: [127.0.0.1/32] }
${extra}    destination: 127.0.0.1:${other}
    mappings:
      - user: lb-client
        destination: 127.0.0.1:${lb}
`), { baseDir: FIXTURES });
  return { port: portOf(gw, 'pp'), gw };
}

/** A v2 header over IPv4 from src:sport to dst:dport, with `tlvs` after the addresses. */
function v2Header(src: number[], sport: number, dst: number[], dport: number, tlvs = Buffer.alloc(0), command = 0x21): Buffer {
  const body = Buffer.alloc(12);
  body.set(src, 0);
  body.set(dst, 4);
  body.writeUInt16BE(sport, 8);
  body.writeUInt16BE(dport, 10);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(12 + tlvs.length);
  return Buffer.concat([V2_SIGNATURE, Buffer.from([command, 0x11]), len, body, tlvs]);
}

describe('accept.proxyProtocol', () => {
  test('a v1 header, one byte per segment, names the client for users, mappings, events and /status', async () => {
    const { port, gw } = await startBehindLb();
    const events = recordEvents(gw);
    const s = await connect(port);
    s.setNoDelay(true);
    const header = `PROXY TCP4 10.1.2.3 127.0.0.1 5555 ${port}\r\n`;
    for (const ch of header) {
      s.write(ch);
      await new Promise((r) => setTimeout(r, 2));
    }
    s.write('x');
    await waitFor(() => s.bytesRead >= 4);
    const status = gw.status();
    expect(status.connections).toEqual([expect.objectContaining({ client: '10.1.2.3:5555', user: 'lb-client' })]);
    const answer = readUntilClose(s);
    s.end();
    expect((await answer).data.toString()).toBe('lb:x');
    await waitFor(() => events.length === 2);
    expect(events[1]).toMatchObject({ client: '10.1.2.3:5555', user: 'lb-client', auth: 'source', reason: 'client-closed', bytesFromClient: header.length + 1 });
  });

  test('a v2 header with TLVs, sent with the first data in one segment', async () => {
    const { port } = await startBehindLb();
    const s = await connect(port);
    const answer = readUntilClose(s);
    s.end(Buffer.concat([v2Header([10, 1, 2, 3], 4444, [127, 0, 0, 1], port, Buffer.from([0x04, 0x00, 0x02, 0xab, 0xcd])), Buffer.from('y')]));
    expect((await answer).data.toString()).toBe('lb:y');
  });

  test('v2 LOCAL (a health check) keeps the socket\'s own address', async () => {
    const { port, gw } = await startBehindLb();
    const done = nextDisconnect(gw);
    const s = await connect(port);
    const answer = readUntilClose(s);
    s.end(Buffer.concat([v2Header([10, 1, 2, 3], 4444, [127, 0, 0, 1], port, Buffer.alloc(0), 0x20), Buffer.from('z')]));
    expect((await answer).data.toString()).toBe('other:z');
    expect((await done).client).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  test('refused with reason proxy-protocol: no header, an untrusted sender, a v1 line over 107 bytes; an incomplete header times out', async () => {
    const { port, gw } = await startBehindLb();
    const events = recordEvents(gw);
    const ends = (): ClientDisconnectEvent[] => events.filter((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect');
    const attempt = async (data: Buffer | string, options: net.NetConnectOpts = {} as net.NetConnectOpts): Promise<string> => {
      const s = await connect(port, '127.0.0.1', options);
      const r = readUntilClose(s);
      s.write(data);
      return (await r).data.toString();
    };
    expect(await attempt('GET / HTTP/1.1\r\n\r\n')).toBe('');
    // From 127.0.0.2, not a trusted sender: closed before a byte of it is read.
    expect(await attempt(`PROXY TCP4 10.1.2.3 127.0.0.1 5555 ${port}\r\nx`, { localAddress: '127.0.0.2' } as net.NetConnectOpts)).toBe('');
    expect(await attempt(`PROXY TCP6 ${'f'.repeat(120)}`)).toBe('');
    await waitFor(() => ends().length === 3);
    expect(ends().map((e) => [e.reason, e.error])).toEqual([
      ['proxy-protocol', 'MAPGATE_ERR_PROXY_HEADER'],
      ['proxy-protocol', 'MAPGATE_ERR_PROXY_UNTRUSTED'],
      ['proxy-protocol', 'MAPGATE_ERR_PROXY_HEADER'],
    ]);
    expect(ends()[1]).toMatchObject({ client: expect.stringMatching(/^127\.0\.0\.2:/), bytesFromClient: 0 });
    expect(await attempt('PROXY TCP4 10.1.2.3')).toBe('');
    await waitFor(() => ends().length === 4);
    expect(ends()[3]).toMatchObject({ reason: 'handshake-timeout' });
    expect(await metricValue(gw, 'mapgate_rejected_total', { service: 'pp', reason: 'proxy-protocol' })).toBe(3);
    expect(await metricValue(gw, 'mapgate_connections_active', { service: 'pp' })).toBe(0);
  });

  test('PROXY header, then TLS, on one binding: the header comes before the handshake', async () => {
    const { port, gw } = await startBehindLb('      tls: { cert: server.pem, key: server.key }\n');
    const done = nextDisconnect(gw);
    const raw = await connect(port);
    raw.write(`PROXY TCP4 10.1.2.3 127.0.0.1 5555 ${port}\r\n`);
    const s = tls.connect({ socket: raw, ca: readFileSync(join(FIXTURES, 'ca.pem')), servername: 'localhost' });
    onTeardown(() => s.destroy());
    await new Promise<void>((resolve, reject) => { s.once('secureConnect', resolve); s.once('error', reject); });
    const answer = readUntilClose(s);
    s.end('t');
    expect((await answer).data.toString()).toBe('lb:t');
    expect(await done).toMatchObject({ client: '10.1.2.3:5555', user: 'lb-client', sni: 'localhost' });
  });
});

describe('destination proxyProtocol', () => {
  test.each([1, 2] as const)('v%s: the upstream gets the header first, naming the client and the gateway address it reached', async (version) => {
    const up = await startRecorder();
    const gw = await startGateway(yaml(`  - name: out
    port: 0
    bind: [127.0.0.1]
    destination: { host: 127.0.0.1, port: ${up.port}, proxyProtocol: v${version} }
`));
    const p = portOf(gw, 'out');
    const s = await connect(p, '127.0.0.1', { localAddress: '127.0.0.9' } as net.NetConnectOpts);
    const clientPort = s.localPort;
    const answer = readUntilClose(s);
    s.end('payload');
    expect((await answer).data.toString()).toBe('ok');
    const got = up.received[0];
    const r = parseProxyHeader(got);
    if (r.state !== 'done') throw new Error(`no header: ${got.toString('hex')}`);
    expect(r.header).toEqual({ version, command: 'proxy', source: { address: '127.0.0.9', port: clientPort }, destination: { address: '127.0.0.1', port: p } });
    expect(got.subarray(r.length).toString()).toBe('payload');
    if (version === 1) expect(got.subarray(0, r.length).toString()).toBe(`PROXY TCP4 127.0.0.9 127.0.0.1 ${clientPort} ${p}\r\n`);
  });

  test('behind a trusted PROXY sender, the header sent upstream carries the original client', async () => {
    const up = await startRecorder();
    const gw = await startGateway(yaml(`  - name: relay
    port: 0
    bind: [127.0.0.1]
    accept:
      proxyProtocol: { from: [127.0.0.1] }
    destination: { host: 127.0.0.1, port: ${up.port}, proxyProtocol: v1 }
`));
    const p = portOf(gw, 'relay');
    const s = await connect(p);
    const answer = readUntilClose(s);
    s.end(`PROXY TCP4 10.1.2.3 10.9.9.9 5555 443\r\nq`);
    expect((await answer).data.toString()).toBe('ok');
    expect(up.received[0].toString()).toBe('PROXY TCP4 10.1.2.3 10.9.9.9 5555 443\r\nq');
  });
});
