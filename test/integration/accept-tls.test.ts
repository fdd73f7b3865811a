import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { ClientDisconnectEvent } from '../../src/events/events';
import type { Gateway } from '../../src/gateway';
import { connect, listen, metricValue, nextDisconnect, onTeardown, portOf, readUntilClose, recordEvents, startEchoServer, startGateway, startTaggedServer, waitFor } from '../helpers/net';

// PEMs made by test/fixtures/gen-certs.sh.
const FIXTURES = join(__dirname, '..', 'fixtures');
const pem = (name: string): Buffer => readFileSync(join(FIXTURES, name));
const CA = pem('ca.pem');
const client = (name: string): { cert: Buffer; key: Buffer } => ({ cert: pem(`${name}.pem`), key: pem(`${name}.key`) });

/** A TLS client of the gateway; resolves once the handshake is done (destroyed at teardown). */
function tlsConnect(port: number, options: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: CA, servername: 'localhost', allowHalfOpen: true, ...options } as tls.ConnectionOptions);
    onTeardown(() => s.destroy());
    s.once('secureConnect', () => { s.off('error', reject); resolve(s); });
    s.once('error', reject);
  });
}

/** Sends `data` over TLS, half-closes, and collects the answer until the gateway closes. */
async function tlsRoundTrip(port: number, data: string, options: tls.ConnectionOptions = {}): Promise<string> {
  const s = await tlsConnect(port, options);
  const answer = readUntilClose(s);
  s.end(data);
  return (await answer).data.toString();
}

/** A TLS client that may be refused: what it received and how it ended. */
async function tlsAttempt(port: number, options: tls.ConnectionOptions = {}): Promise<{ data: string; error: string | null }> {
  const s = tls.connect({ host: '127.0.0.1', port, ca: CA, servername: 'localhost', ...options });
  onTeardown(() => s.destroy());
  const r = await readUntilClose(s);
  return { data: r.data.toString(), error: r.error };
}

/** A gateway with one service, `tlsin`, terminating TLS (server.pem) in front of 127.0.0.1:`up`. */
function startTlsGateway(up: number, options = ''): Promise<Gateway> {
  return startGateway(yaml(`  - name: tlsin
    port: 0
    bind: [127.0.0.1]
${options}    accept:
      tls: { cert: server.pem, key: server.key }
    destination: 127.0.0.1:${up}
`), { baseDir: FIXTURES });
}

const yaml = (service: string, extra = ''): string => `
admin: { listen: "127.0.0.1:0" }
log: { events: "off" }
${extra}
services:
${service}`;

describe('TLS on bindings', () => {
  test('the gateway terminates TLS: plaintext upstream, SNI in the events, TLS 1.2 at least, bytes counted', async () => {
    const { port: up } = await startEchoServer();
    const gw = await startTlsGateway(up);
    const events = recordEvents(gw);
    const p = portOf(gw, 'tlsin');
    expect(await tlsRoundTrip(p, 'hello over tls')).toBe('hello over tls');
    await waitFor(() => events.length === 2);
    expect(events[0]).toMatchObject({ event: 'ClientConnect', sni: 'localhost', alpn: null, user: null, auth: null, tls: false });
    expect(events[1]).toMatchObject({ event: 'ClientDisconnect', reason: 'client-closed', bytesFromClient: 14, bytesToClient: 14, sni: 'localhost' });

    // TLS 1.1 and older are refused, and the failure is counted with its code.
    const old = await tlsAttempt(p, { maxVersion: 'TLSv1.1', minVersion: 'TLSv1' });
    expect(old.error).not.toBeNull();
    await waitFor(() => events.length === 4);
    expect(events[3]).toMatchObject({ event: 'ClientDisconnect', reason: 'tls-failed', error: expect.stringMatching(/^ERR_SSL_/), destination: null });
    expect(await metricValue(gw, 'mapgate_tls_handshake_failures_total', { service: 'tlsin', code: (events[3] as ClientDisconnectEvent).error! })).toBe(1);
    expect(await metricValue(gw, 'mapgate_connections_total', { service: 'tlsin', outcome: 'tls-failed' })).toBe(1);
  });

  test('plaintext on a TLS port is refused as tls-failed; a silent client as handshake-timeout', async () => {
    const { port: up } = await startEchoServer();
    const gw = await startTlsGateway(up, '    handshakeTimeout: 300ms\n');
    const p = portOf(gw, 'tlsin');
    const plain = await connect(p);
    const refused = nextDisconnect(gw);
    plain.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await refused).toMatchObject({ reason: 'tls-failed', error: expect.stringMatching(/^ERR_SSL_/) });

    const silent = await connect(p);
    const t0 = Date.now();
    const timedOut = nextDisconnect(gw);
    const gone = readUntilClose(silent);
    expect(await timedOut).toMatchObject({ reason: 'handshake-timeout', error: null, user: null });
    await gone;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(await metricValue(gw, 'mapgate_rejected_total', { service: 'tlsin', reason: 'handshake-timeout' })).toBe(1);
    expect(await metricValue(gw, 'mapgate_tls_handshake_failures_total', { service: 'tlsin', code: 'MAPGATE_ERR_HANDSHAKE_TIMEOUT' })).toBe(1);
    expect(await metricValue(gw, 'mapgate_connections_active', { service: 'tlsin' })).toBe(0);
  });

  test('half-close crosses the TLS leg: the client ends, the upstream still answers', async () => {
    // An upstream that answers only once the client has finished sending.
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      let got = '';
      s.on('data', (d) => (got += d));
      s.on('end', () => s.end(`got ${got}`));
    });
    const up = await listen(server);
    const gw = await startTlsGateway(up);
    expect(await tlsRoundTrip(portOf(gw, 'tlsin'), 'abc')).toBe('got abc');
  });

  test('a client that closes its side right after the handshake, having sent nothing: the FIN still reaches the upstream', async () => {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('data', () => {});
      s.on('end', () => s.end('bye'));
    });
    const up = await listen(server);
    const gw = await startTlsGateway(up);
    const s = await tlsConnect(portOf(gw, 'tlsin'));
    const answer = readUntilClose(s);
    s.end();
    expect((await answer).data.toString()).toBe('bye');
  });

  test('SNI picks the mapping: exact names and *.wildcards, else the default', async () => {
    const [a, b, d] = await Promise.all([startTaggedServer('a'), startTaggedServer('b'), startTaggedServer('default')]);
    const gw = await startGateway(yaml(`  - name: sni
    port: 0
    bind: [127.0.0.1]
    accept:
      tls: { cert: server.pem, key: server.key }
    destination: 127.0.0.1:${d}
    mappings:
      - sni: imap.corp.example
        destination: 127.0.0.1:${a}
      - sni: ["*.branch.example", other.example]
        destination: 127.0.0.1:${b}
`), { baseDir: FIXTURES });
    const p = portOf(gw, 'sni');
    // The server certificate names localhost only: these clients check nothing but the route.
    const ask = (servername: string): Promise<string> => tlsRoundTrip(p, 'x', { servername, checkServerIdentity: () => undefined });
    expect(await ask('imap.corp.example')).toBe('a:x');
    expect(await ask('IMAP.Corp.Example')).toBe('a:x');
    expect(await ask('mail.branch.example')).toBe('b:x');
    expect(await ask('deep.mail.branch.example')).toBe('default:x');
    expect(await ask('other.example')).toBe('b:x');
    expect(await ask('localhost')).toBe('default:x');
  });

  test('ALPN: the binding offers its protocols; the one negotiated is in the events', async () => {
    const { port: up } = await startEchoServer();
    const gw = await startGateway(yaml(`  - name: alpn
    port: 0
    bind: [127.0.0.1]
    accept:
      tls: { cert: server.pem, key: server.key, alpn: [h2, http/1.1] }
    destination: 127.0.0.1:${up}
`), { baseDir: FIXTURES });
    const events = recordEvents(gw);
    const s = await tlsConnect(portOf(gw, 'alpn'), { ALPNProtocols: ['http/1.1'] });
    expect(s.alpnProtocol).toBe('http/1.1');
    const answer = readUntilClose(s);
    s.end('q');
    expect((await answer).data.toString()).toBe('q');
    await waitFor(() => events.length === 2);
    expect(events[0]).toMatchObject({ alpn: 'http/1.1' });
  });
});

describe('users by client certificate', () => {
  async function startCertGateway(clientCert: 'required' | 'optional'): Promise<{ gw: Gateway; port: number }> {
    const [staff, ops, anyone] = await Promise.all([startTaggedServer('staff'), startTaggedServer('ops'), startTaggedServer('anyone')]);
    const gw = await startGateway(yaml(`  - name: certs
    port: 0
    bind: [127.0.0.1]
    accept:
      tls:
        cert: server.pem
        key: server.key
        clientCa: users-ca.pem
        clientCert: ${clientCert}
    destination: 127.0.0.1:${anyone}
    mappings:
      - user: alice
        destination: 127.0.0.1:${staff}
      - user: ops
        destination: 127.0.0.1:${ops}
      - user: nobody-here
        action: reject
`, `users:
  alice: { sources: [127.0.0.1], certificates: [{ cn: alice, ou: staff }] }
  ops: { certificates: [{ ou: ops, cn: not-this-one }, { uri: "spiffe://corp.example/ops" }] }
  nobody-here: { sources: [192.0.2.1] }`), { baseDir: FIXTURES });
    return { gw, port: portOf(gw, 'certs') };
  }

  test('required: a verified certificate names the user (auth certificate); without one, or with one that does not verify, the handshake fails', async () => {
    const { gw, port } = await startCertGateway('required');
    const events = recordEvents(gw);
    expect(await tlsRoundTrip(port, 'x', client('alice'))).toBe('staff:x');
    expect(await tlsRoundTrip(port, 'y', client('ops'))).toBe('ops:y');
    // Verified, but no user's entry matches: user null, and the mappings decide (here: the default).
    expect(await tlsRoundTrip(port, 'z', client('mallory'))).toBe('anyone:z');
    await waitFor(() => events.length === 6);
    const connects = events.filter((e) => e.event === 'ClientConnect');
    expect(connects.map((e) => [e.user, e.auth])).toEqual([['alice', 'certificate'], ['ops', 'certificate'], [null, null]]);

    const before = events.length;
    const none = await tlsAttempt(port, {});
    expect(none.data).toBe('');
    const stranger = await tlsAttempt(port, client('stranger'));
    expect(stranger.data).toBe('');
    await waitFor(() => events.length === before + 4);
    const failed = events.slice(before).filter((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect');
    expect(failed.map((e) => [e.reason, e.error])).toEqual([
      ['tls-failed', 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE'],
      ['tls-failed', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
    ]);
    expect(await metricValue(gw, 'mapgate_tls_handshake_failures_total', { service: 'certs', code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })).toBe(1);
  });

  test('optional: no certificate falls back to the source address; a certificate that does not verify is still refused', async () => {
    const { gw, port } = await startCertGateway('optional');
    const events = recordEvents(gw);
    // 127.0.0.1 is alice's source: assumed, not authenticated.
    expect(await tlsRoundTrip(port, 'x')).toBe('staff:x');
    expect(await tlsRoundTrip(port, 'y', client('ops'))).toBe('ops:y');
    await waitFor(() => events.length === 4);
    expect(events.filter((e) => e.event === 'ClientConnect').map((e) => [e.user, e.auth])).toEqual([['alice', 'source'], ['ops', 'certificate']]);
    const refused = nextDisconnect(gw);
    expect((await tlsAttempt(port, client('stranger'))).data).toBe('');
    expect(await refused).toMatchObject({ reason: 'tls-failed', error: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  });

  test('/status shows the user and how it was known', async () => {
    const { gw, port } = await startCertGateway('required');
    const s = await tlsConnect(port, client('alice'));
    s.write('hold');
    await waitFor(() => s.bytesRead > 0);
    const status = gw.status();
    expect(status.connections).toEqual([expect.objectContaining({ user: 'alice', auth: 'certificate', sni: 'localhost', state: 'relaying' })]);
    s.destroy();
  });
});

describe('certificates that change', () => {
  test('new certificate files are picked up for new handshakes; open connections keep theirs; a broken one is refused and the old stays', async () => {
    const { mkdtempSync, copyFileSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { X509Certificate } = await import('node:crypto');
    const { loadConfigFile } = await import('../../src/config/load');
    const { createGateway } = await import('../../src/gateway');
    const dir = mkdtempSync(join(tmpdir(), 'mapgate-certs-'));
    copyFileSync(join(FIXTURES, 'server.pem'), join(dir, 'gw.pem'));
    copyFileSync(join(FIXTURES, 'server.key'), join(dir, 'gw.key'));
    const { port: up } = await startEchoServer();
    const file = join(dir, 'mappings.yaml');
    writeFileSync(file, yaml(`  - name: tlsin
    port: 0
    bind: [127.0.0.1]
    accept:
      tls: { cert: gw.pem, key: gw.key }
    destination: 127.0.0.1:${up}
`));
    const gw = createGateway(loadConfigFile(file), { defaultMetrics: false, watch: true });
    const logs: Array<{ msg: string; problems?: string[] }> = [];
    gw.on('log', (r) => logs.push(r as never));
    await gw.start();
    onTeardown(() => gw.destroy());
    const p = portOf(gw, 'tlsin');
    const expiry = (name: string): number => Date.parse(new X509Certificate(pem(name)).validTo) / 1000;
    expect(await metricValue(gw, 'mapgate_tls_certificate_expiry_timestamp_seconds', { service: 'tlsin' })).toBe(expiry('server.pem'));

    const held = await tlsConnect(p);
    expect(held.getPeerCertificate().issuer.CN).toBe('mapgate test CA');
    held.write('1');
    await waitFor(() => held.bytesRead >= 1);

    // A key that is not the certificate's: refused, positioned at the cert key, OpenSSL's reason given.
    writeFileSync(join(dir, 'gw.key'), pem('client.key'));
    await waitFor(() => logs.some((l) => l.msg.startsWith('config reload refused')), 5000, 'the broken pair to be refused');
    expect(logs.find((l) => l.msg.startsWith('config reload refused'))!.problems).toEqual([
      expect.stringMatching(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:10:20: services\\[0\\]\\.accept\\.tls\\.cert: unusable with its key: .*key values mismatch`)),
    ]);
    expect((await tlsConnect(p)).getPeerCertificate().issuer.CN).toBe('mapgate test CA');

    // The other certificate and its key: new handshakes present it.
    writeFileSync(join(dir, 'gw.pem'), pem('wrong-server.pem'));
    writeFileSync(join(dir, 'gw.key'), pem('wrong-server.key'));
    await waitFor(() => logs.some((l) => l.msg === 'config reloaded'), 5000, 'the new pair to load');
    const fresh = await tlsConnect(p, { ca: pem('wrong-ca.pem') });
    expect(fresh.getPeerCertificate().issuer.CN).toBe('mapgate wrong CA');
    // The connection opened before still relays, on its old session.
    held.write('2');
    await waitFor(() => held.bytesRead >= 2, 2000, 'the open connection to still relay');
    expect(await metricValue(gw, 'mapgate_tls_certificate_expiry_timestamp_seconds', { service: 'tlsin' })).toBe(expiry('wrong-server.pem'));
  });
});
