import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { parseConfig } from '../../src/config/load';
import { configProblems } from './problems';

const CERTS = join(__dirname, '..', 'fixtures');

const problems = (yaml: string, file = 'm.yaml'): string[] => configProblems(yaml, file, { baseDir: CERTS });

const service = (accept: string, extra = ''): string => `services:
  - name: s
    port: 0
    bind: [127.0.0.1]
    accept:
${accept}
    destination: 127.0.0.1:1
${extra}`;

describe('accept, users by certificate, PROXY protocol: the config', () => {
  test('a TLS binding normalizes: PEMs read, client certificates required by default, expiry known, PROXY senders parsed', () => {
    const c = parseConfig(`defaults:
  handshakeTimeout: 3s
users:
  ops: { certificates: [{ ou: ops }, { uri: "spiffe://corp.example/ops", cn: ops-1 }] }
${service(`      tls: { cert: server.pem, key: server.key, clientCa: users-ca.pem, alpn: [h2] }
      proxyProtocol: { from: [10.0.0.5/32, "fd00::5"] }`, `    mappings:
      - sni: [IMAP.corp.example., "*.branch.example"]
        destination: { host: 127.0.0.1, port: 2, proxyProtocol: v2 }`)}`, 'm.yaml', { baseDir: CERTS });
    const s = c.services[0];
    expect(s.handshakeTimeoutMs).toBe(3000);
    expect(s.accept.tls).toMatchObject({ clientCert: 'required', alpn: ['h2'], cert: expect.stringContaining('BEGIN CERTIFICATE'), clientCa: expect.stringContaining('BEGIN CERTIFICATE') });
    expect(s.accept.tls!.notAfter).toBe(Date.parse(new X509Certificate(readFileSync(join(CERTS, 'server.pem'))).validTo));
    expect(s.accept.proxyProtocol!.from.map((x) => x.text)).toEqual(['10.0.0.5/32', 'fd00::5/128']);
    expect(s.mappings[0].sni).toEqual(['imap.corp.example', '*.branch.example']);
    expect(s.mappings[0].destinations[0].proxyProtocol).toBe(2);
    expect(c.users[0].certificates).toEqual([
      { cn: null, ou: 'ops', o: null, dns: null, uri: null, email: null },
      { cn: 'ops-1', ou: null, o: null, dns: null, uri: 'spiffe://corp.example/ops', email: null },
    ]);
  });

  test.each([
    ['a clientCa that is not a certificate', service('      tls: { cert: server.pem, key: server.key, clientCa: server.key }'),
      ['m.yaml:6:59: services[0].accept.tls.clientCa: the client CA holds no certificate ("-----BEGIN CERTIFICATE-----")']],
    ['a key that is not the certificate\'s', service('      tls: { cert: server.pem, key: client.key }'),
      [expect.stringMatching(/^m\.yaml:6:20: services\[0\]\.accept\.tls\.cert: unusable with its key: .*key values mismatch \(ERR_OSSL_X509_KEY_VALUES_MISMATCH\)$/)]],
    ['a key as the certificate', service('      tls: { cert: server.key, key: server.key }'),
      ['m.yaml:6:20: services[0].accept.tls.cert: the certificate holds no certificate ("-----BEGIN CERTIFICATE-----")']],
    ['a missing certificate file', service('      tls: { cert: nowhere.pem, key: server.key }'),
      [expect.stringMatching(/^m\.yaml:6:20: services\[0\]\.accept\.tls\.cert: cannot read .*nowhere\.pem: ENOENT$/)]],
    ['tls without a key', service('      tls: { cert: server.pem }'),
      ['m.yaml:6:12: services[0].accept.tls: missing required key "key"']],
    ['clientCert without clientCa', service('      tls: { cert: server.pem, key: server.key, clientCert: optional }'),
      ['m.yaml:6:49: services[0].accept.tls.clientCert: needs clientCa: the CA client certificates are verified against']],
    ['clientCert: maybe', service('      tls: { cert: server.pem, key: server.key, clientCa: ca.pem, clientCert: maybe }'),
      ['m.yaml:6:79: services[0].accept.tls.clientCert: must be one of: required, optional, not the string "maybe"']],
    ['proxyProtocol: v3 on a destination', `services:
  - name: s
    port: 0
    bind: [127.0.0.1]
    destination: { host: 127.0.0.1, port: 1, proxyProtocol: v3 }
`, ['m.yaml:5:61: services[0].destination.proxyProtocol: must be one of: v1, v2, not the string "v3"']],
    ['proxyProtocol without from', service('      proxyProtocol: {}'),
      ['m.yaml:6:22: services[0].accept.proxyProtocol: missing required key "from"']],
    ['a PROXY sender that is not an address', service('      proxyProtocol: { from: [lb.corp.example] }'),
      ['m.yaml:6:31: services[0].accept.proxyProtocol.from[0]: "lb.corp.example" is not an IP address or CIDR block (e.g. 10.0.0.15, 10.1.0.0/16, fd00:8::/64)']],
    ['an unknown certificate field', `users:
  ops: { certificates: [{ team: ops }] }
services: []
`, ['m.yaml:2:27: users.ops.certificates[0].team: unknown key (expected one of: cn, ou, o, dns, uri, email)']],
    ['an empty certificate entry', `users:
  ops: { certificates: [{}] }
services: []
`, ['m.yaml:2:25: users.ops.certificates[0]: needs at least one of: cn, ou, o, dns, uri, email']],
    ['sni on a binding without TLS', `services:
  - name: s
    port: 0
    bind: [127.0.0.1]
    mappings:
      - sni: a.example
        destination: 127.0.0.1:1
`, ['m.yaml:6:9: services[0].mappings[0].sni: matches only on a binding that accepts TLS: add accept.tls to the service']],
    ['an sni that is not a name', service('      tls: { cert: server.pem, key: server.key }', `    mappings:
      - sni: "a b"
        destination: 127.0.0.1:1`),
    ['m.yaml:9:14: services[0].mappings[0].sni: must match ^(\\*\\.)?[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*\\.?$, not the string "a b"']],
  ])('%s', (_what, yaml, expected) => {
    expect(problems(yaml)).toEqual(expected);
  });
});
