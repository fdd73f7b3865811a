import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { Gateway } from '../../src/gateway';
import type { ClientDisconnectEvent } from '../../src/events/events';
import { closed, connect, listen, metricValue, nextDisconnect, portOf, readAll, recordEvents, roundTrip, startGateway } from '../helpers/net';

// PEMs made by test/fixtures/gen-certs.sh; committed, so no openssl runs here.
const FIXTURES = join(__dirname, '..', 'fixtures');
const pem = (name: string): Buffer => readFileSync(join(FIXTURES, name));
const SERVER = { key: pem('server.key'), cert: pem('server.pem') };
const WRONG_SERVER = { key: pem('wrong-server.key'), cert: pem('wrong-server.pem') };

/** What a TLS upstream saw of each connection, in accept order. */
interface Accepted {
  readonly servername: string | false;
  readonly reused: boolean;
  readonly protocol: string | null;
  readonly authorized: boolean;
  readonly peerCN: string | null;
}

interface TlsUpstream {
  readonly port: number;
  readonly accepted: Accepted[];
  /** SNI values the server's SNICallback was asked about. */
  readonly sniAsked: string[];
  /** Handshakes the server refused (`tlsClientError`), by code. */
  readonly refused: string[];
  /** Bytes received by the server, over all connections. */
  received(): number;
}

type Handler = (s: tls.TLSSocket) => void;

const echo: Handler = (s) => s.pipe(s);

/** A node:tls server on 127.0.0.1 port 0 (closed at teardown), recording what it sees of each handshake. */
async function startTlsServer(options: tls.TlsOptions, handler: Handler = echo, host = '127.0.0.1'): Promise<TlsUpstream> {
  const accepted: Accepted[] = [];
  const sniAsked: string[] = [];
  const refused: string[] = [];
  let bytes = 0;
  const server = tls.createServer({
    allowHalfOpen: true,
    SNICallback: (name, cb) => {
      sniAsked.push(name);
      cb(null, null as unknown as tls.SecureContext);
    },
    ...options,
  }, (s) => {
    s.on('error', () => {});
    s.on('data', (c: Buffer) => { bytes += c.length; });
    const peer = s.getPeerCertificate();
    accepted.push({
      servername: (s as tls.TLSSocket & { servername: string | false }).servername,
      reused: s.isSessionReused(),
      protocol: s.getProtocol(),
      authorized: s.authorized,
      peerCN: peer && peer.subject ? String(peer.subject.CN) : null,
    });
    handler(s);
  });
  server.on('tlsClientError', (err: NodeJS.ErrnoException) => refused.push(err.code ?? 'EUNKNOWN'));
  const port = await listen(server, host);
  return { port, accepted, sniAsked, refused, received: () => bytes };
}

interface Dest {
  host: string;
  port: number;
  tls: boolean | { servername?: string; ca?: string; cert?: string; key?: string; verify?: boolean };
}

/** A gateway with one service per entry, each bound to 127.0.0.1 port 0; TLS paths resolve in test/fixtures. */
function startTlsGateway(services: Record<string, Dest>, connectTimeout = '5s'): Promise<Gateway> {
  const yaml = `
admin: { listen: "off" }
log: { events: "off" }
services:
${Object.entries(services).map(([name, d]) => `  - name: ${name}
    port: 0
    bind: [127.0.0.1]
    connectTimeout: ${connectTimeout}
    destination: ${JSON.stringify(d)}`).join('\n')}
`;
  return startGateway(yaml, { baseDir: FIXTURES });
}

/** Connects to a service, sends `data` (which must never reach a refused upstream), expects a close with no byte back. */
async function expectRefused(gw: Gateway, service: string, data = 'must not arrive'): Promise<ClientDisconnectEvent> {
  const done = nextDisconnect(gw);
  const c = await connect(portOf(gw, service));
  const answer = readAll(c).catch(() => Buffer.alloc(0));
  c.write(data);
  let timer!: NodeJS.Timeout;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`the gateway did not close the client of ${service}`)), 5000);
  });
  try {
    await Promise.race([closed(c), deadline]);
  } finally {
    clearTimeout(timer);
  }
  expect((await answer).length).toBe(0);
  return done;
}

describe('upstream TLS', () => {
  test('verified upstream: bytes round-trip, events say tls: true, handshake is verified', async () => {
    const up = await startTlsServer(SERVER);
    const gw = await startTlsGateway({ s: { host: '127.0.0.1', port: up.port, tls: { ca: 'ca.pem', servername: 'upstream.test' } } });
    const events = recordEvents(gw);
    const done = nextDisconnect(gw);
    const answer = await roundTrip(portOf(gw, 's'), 'hello over TLS');
    expect(answer.toString()).toBe('hello over TLS');
    const e = await done;
    expect(events.map((x) => x.event)).toEqual(['ClientConnect', 'ClientDisconnect']);
    expect(events[0]).toMatchObject({ tls: true, destination: `127.0.0.1:${up.port}` });
    expect(e).toMatchObject({ tls: true, reason: 'client-closed', error: null, bytesFromClient: 14, bytesToClient: 14, destinationIndex: 0 });
    expect(up.accepted).toHaveLength(1);
    expect(up.accepted[0]).toMatchObject({ servername: 'upstream.test', reused: false, protocol: 'TLSv1.3' });
    expect(await metricValue(gw, 'mapgate_connections_total', { service: 's', outcome: 'client-closed' })).toBe(1);
    expect(await metricValue(gw, 'mapgate_upstream_connect_seconds_count', { service: 's' })).toBe(1);
    expect(await metricValue(gw, 'mapgate_bytes_total', { service: 's', direction: 'to_client' })).toBe(14);
  });

  test.each([
    ['the server cert is signed by another CA', WRONG_SERVER, 'ca.pem'],
    ['the configured ca is another CA', SERVER, 'wrong-ca.pem'],
  ])('wrong CA refused: %s', async (_what, serverCert, ca) => {
    const up = await startTlsServer(serverCert);
    const gw = await startTlsGateway({ s: { host: '127.0.0.1', port: up.port, tls: { ca, servername: 'localhost' } } });
    // Twice: a failed handshake must leave no session behind that a second attempt could resume.
    for (let i = 0; i < 2; i++) {
      const e = await expectRefused(gw, 's');
      expect(e).toMatchObject({ reason: 'tls-failed', error: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', tls: true, bytesToClient: 0, destinationIndex: null });
    }
    expect(up.received()).toBe(0);
    expect(await metricValue(gw, 'mapgate_upstream_connect_failures_total', { service: 's', code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })).toBe(2);
    expect(await metricValue(gw, 'mapgate_connections_total', { service: 's', outcome: 'tls-failed' })).toBe(2);
    expect(await metricValue(gw, 'mapgate_connections_total', { service: 's', outcome: 'connect-failed' })).toBe(0);
    expect(await metricValue(gw, 'mapgate_connections_active', { service: 's' })).toBe(0);
  });

  test('tls: true verifies against the system roots, which do not hold the test CA', async () => {
    const up = await startTlsServer(SERVER);
    const gw = await startTlsGateway({ s: { host: '127.0.0.1', port: up.port, tls: true } });
    const e = await expectRefused(gw, 's');
    expect(e).toMatchObject({ reason: 'tls-failed', error: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    expect(up.received()).toBe(0);
  });

  test.each([
    ['TLSv1.3', {}],
    ['TLSv1.2', { maxVersion: 'TLSv1.2' as const }],
  ])('hostname mismatch over %s: servername not in the cert is refused', async (_protocol, limits) => {
    const up = await startTlsServer({ ...SERVER, ...limits });
    const gw = await startTlsGateway({ s: { host: '127.0.0.1', port: up.port, tls: { ca: 'ca.pem', servername: 'other.test' } } });
    // Twice: Node skips the name check on a resumed session, so none may be cached from the first
    // (with TLS 1.2 the server hands one out before our check runs).
    for (let i = 0; i < 2; i++) {
      const e = await expectRefused(gw, 's');
      expect(e).toMatchObject({ reason: 'tls-failed', error: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    }
    expect(up.received()).toBe(0);
    // The mismatch is ours to find: the server accepted the handshake, SNI and all.
    expect(up.sniAsked).toEqual(['other.test', 'other.test']);
    expect(up.accepted.filter((a) => a.reused)).toEqual([]);
    expect(await metricValue(gw, 'mapgate_upstream_connect_failures_total', { service: 's', code: 'ERR_TLS_CERT_ALTNAME_INVALID' })).toBe(2);
  });

  test('an IP destination is verified against the IP SANs: 127.0.0.2 is not one of them', async () => {
    // 127.0.0.0/8 is all loopback on Linux; the cert names 127.0.0.1 and ::1 only.
    const up = await startTlsServer(SERVER, echo, '127.0.0.2');
    const gw = await startTlsGateway({ s: { host: '127.0.0.2', port: up.port, tls: { ca: 'ca.pem' } } });
    const e = await expectRefused(gw, 's');
    expect(e).toMatchObject({ reason: 'tls-failed', error: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    expect(up.sniAsked).toEqual([]);
  });

  test('verify: false connects to a server whose CA and name are both wrong', async () => {
    const up = await startTlsServer(WRONG_SERVER);
    const gw = await startTlsGateway({ s: { host: '127.0.0.1', port: up.port, tls: { ca: 'ca.pem', servername: 'other.test', verify: false } } });
    const done = nextDisconnect(gw);
    expect((await roundTrip(portOf(gw, 's'), 'unverified')).toString()).toBe('unverified');
    expect(await done).toMatchObject({ reason: 'client-closed', error: null, tls: true });
    expect(up.accepted[0].servername).toBe('other.test');
  });

  test('SNI: the configured servername, else the host name; none for an IP, still verified by IP SAN', async () => {
    const up = await startTlsServer(SERVER);
    const gw = await startTlsGateway({
      named: { host: '127.0.0.1', port: up.port, tls: { ca: 'ca.pem', servername: 'upstream.test' } },
      byhost: { host: 'localhost', port: up.port, tls: { ca: 'ca.pem' } },
      byip: { host: '127.0.0.1', port: up.port, tls: { ca: 'ca.pem' } },
    });
    expect((await roundTrip(portOf(gw, 'named'), 'a')).toString()).toBe('a');
    expect((await roundTrip(portOf(gw, 'byhost'), 'b')).toString()).toBe('b');
    expect((await roundTrip(portOf(gw, 'byip'), 'c')).toString()).toBe('c');
    expect(up.accepted.map((a) => a.servername)).toEqual(['upstream.test', 'localhost', false]);
    expect(up.sniAsked).toEqual(['upstream.test', 'localhost']);
  });

  describe.each([
    ['TLSv1.3', {}],
    ['TLSv1.2', { maxVersion: 'TLSv1.2' as const }],
  ])('mutual TLS over %s', (protocol, limits) => {
    const mtlsServer = (): Promise<TlsUpstream> => startTlsServer({ ...SERVER, ...limits, ca: pem('ca.pem'), requestCert: true, rejectUnauthorized: true });

    test('the server accepts the gateway with cert/key', async () => {
      const up = await mtlsServer();
      const gw = await startTlsGateway({ s: { host: '127.0.0.1', port: up.port, tls: { ca: 'ca.pem', servername: 'localhost', cert: 'client.pem', key: 'client.key' } } });
      expect((await roundTrip(portOf(gw, 's'), 'mutual')).toString()).toBe('mutual');
      expect(up.accepted).toEqual([expect.objectContaining({ authorized: true, peerCN: 'mapgate-client', protocol })]);
    });

    const noCertGateway = async (): Promise<{ up: TlsUpstream; gw: Gateway }> => {
      const up = await mtlsServer();
      const gw = await startTlsGateway({ nocert: { host: '127.0.0.1', port: up.port, tls: { ca: 'ca.pem', servername: 'localhost' } } });
      return { up, gw };
    };
    // The server's alert, as OpenSSL names it on our side.
    const alert = protocol === 'TLSv1.3' ? 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' : 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE';

    test('without a client cert the connection fails with the server\'s alert', async () => {
      const { up, gw } = await noCertGateway();
      const e = await expectRefused(gw, 'nocert');
      expect(up.accepted).toHaveLength(0);
      expect(up.received()).toBe(0);
      expect(up.refused).toHaveLength(1);
      expect(e.error).toBe(alert);
      expect(e.bytesToClient).toBe(0);
    });

    // In TLS 1.3 the client's handshake is complete before the server checks its certificate
    // (RFC 8446 §4.4.2.4): the alert arrives after the dial has handed the socket to the relay;
    // the connection classifies an upstream TLS error before any byte reached the client.
    test('without a client cert the reason is tls-failed, counted as a connect failure', async () => {
      const { gw } = await noCertGateway();
      const e = await expectRefused(gw, 'nocert');
      expect(e.reason).toBe('tls-failed');
      expect(await metricValue(gw, 'mapgate_upstream_connect_failures_total', { service: 'nocert', code: alert })).toBe(1);
    });
  });

  test.each([
    ['TLSv1.3', {}],
    ['TLSv1.2', { maxVersion: 'TLSv1.2' as const }],
  ])('session resumption over %s: the second connection to the same destination is resumed', async (protocol, limits) => {
    const up = await startTlsServer({ ...SERVER, ...limits });
    const dest = { host: '127.0.0.1', port: up.port, tls: { ca: 'ca.pem', servername: 'localhost' } };
    const gw = await startTlsGateway({ s: dest, other: dest });
    for (const [service, text] of [['s', 'first'], ['s', 'second'], ['other', 'third']]) {
      const done = nextDisconnect(gw);
      expect((await roundTrip(portOf(gw, service), text)).toString()).toBe(text);
      await done;
    }
    // `other` has an equal but distinct destination: sessions are never shared across destinations.
    expect(up.accepted.map((a) => [a.protocol, a.reused])).toEqual([[protocol, false], [protocol, true], [protocol, false]]);
  });

  test('TLS 1.2 minimum: a TLSv1.1-only server is refused', async () => {
    // OpenSSL 3 only negotiates TLS 1.1 at security level 0 (SHA-1 signatures).
    const old = { ...SERVER, minVersion: 'TLSv1' as const, maxVersion: 'TLSv1.1' as const, ciphers: 'DEFAULT@SECLEVEL=0' };
    const up = await startTlsServer(old);
    // Control: this server really does serve TLS 1.1 to a client that allows it.
    const control = await new Promise<string | null>((resolve, reject) => {
      const c = tls.connect({ host: '127.0.0.1', port: up.port, ca: pem('ca.pem'), servername: 'localhost', minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' }, () => {
        resolve(c.getProtocol());
        c.destroy();
      });
      c.once('error', reject);
    });
    expect(control).toBe('TLSv1.1');

    const gw = await startTlsGateway({ s: { host: '127.0.0.1', port: up.port, tls: { ca: 'ca.pem', servername: 'localhost' } } });
    const e = await expectRefused(gw, 's');
    expect(e.reason).toBe('tls-failed');
    expect(e.error).toBe('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    expect(up.accepted).toHaveLength(1); // the control connection, not the gateway's
    expect(up.refused).toEqual(['ERR_SSL_UNSUPPORTED_PROTOCOL']);
    expect(await metricValue(gw, 'mapgate_upstream_connect_failures_total', { service: 's', code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' })).toBe(1);
  });

  test('half-close over TLS: the client ends, the upstream answers after the end', async () => {
    const up = await startTlsServer(SERVER, (s) => {
      readAll(s).then((b) => s.end(`got ${b.length} bytes: ${b.toString()}`), () => s.destroy());
    });
    const gw = await startTlsGateway({ s: { host: '127.0.0.1', port: up.port, tls: { ca: 'ca.pem', servername: 'localhost' } } });
    const done = nextDisconnect(gw);
    const answer = await roundTrip(portOf(gw, 's'), 'question');
    expect(answer.toString()).toBe('got 8 bytes: question');
    expect(await done).toMatchObject({ reason: 'client-closed', bytesFromClient: 8, bytesToClient: 21, tls: true });
  });

  test('IPv6 destination [::1] is verified against the IP:::1 SAN, without SNI', async () => {
    const up = await startTlsServer(SERVER, echo, '::1');
    const gw = await startTlsGateway({ s: { host: '::1', port: up.port, tls: { ca: 'ca.pem' } } });
    const done = nextDisconnect(gw);
    expect((await roundTrip(portOf(gw, 's'), 'six')).toString()).toBe('six');
    expect(await done).toMatchObject({ destination: `[::1]:${up.port}`, tls: true, reason: 'client-closed' });
    expect(up.accepted.map((a) => a.servername)).toEqual([false]);
  });

  test('a refused TLS destination is connect-failed, not tls-failed', async () => {
    const server = net.createServer();
    const port = await listen(server);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const gw = await startTlsGateway({ s: { host: '127.0.0.1', port, tls: { ca: 'ca.pem', servername: 'localhost' } } });
    const e = await expectRefused(gw, 's');
    expect(e).toMatchObject({ reason: 'connect-failed', error: 'ECONNREFUSED', tls: true });
    expect(await metricValue(gw, 'mapgate_upstream_connect_failures_total', { service: 's', code: 'ECONNREFUSED' })).toBe(1);
  });

  test('a plain-TCP upstream on a TLS destination is tls-failed', async () => {
    let got = 0;
    const server = net.createServer((s) => {
      s.on('error', () => {});
      s.on('data', (c: Buffer) => { got += c.length; });
      s.write('* OK IMAP4rev1 ready\r\n');
    });
    const port = await listen(server);
    const gw = await startTlsGateway({ s: { host: '127.0.0.1', port, tls: { ca: 'ca.pem', servername: 'localhost' } } });
    const e = await expectRefused(gw, 's', 'a1 LOGIN secret\r\n');
    expect(e).toMatchObject({ reason: 'tls-failed', error: 'ERR_SSL_WRONG_VERSION_NUMBER' });
    expect(got).toBeGreaterThan(0); // our ClientHello, never the client's bytes
  });

  test('the connect timeout covers the TLS handshake: a server that never answers it', async () => {
    const server = net.createServer((s) => { s.on('error', () => {}); });
    const port = await listen(server);
    const gw = await startTlsGateway({ s: { host: '127.0.0.1', port, tls: { ca: 'ca.pem', servername: 'localhost' } } }, '300ms');
    const started = Date.now();
    const e = await expectRefused(gw, 's');
    expect(e).toMatchObject({ reason: 'connect-timeout', error: 'MAPGATE_ERR_CONNECT_TIMEOUT' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(3000);
  });
});
