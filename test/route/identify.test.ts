import type { CertificateMatch, User } from '../../src/config/types';
import { parseSubjectAltName } from '../../src/front/tls';
import { parseCidr, parseClientAddress } from '../../src/config/cidr';
import { certificateMatches, identify, type PeerCertificate } from '../../src/route/identify';

const match = (m: Partial<CertificateMatch>): CertificateMatch => ({ cn: null, ou: null, o: null, dns: null, uri: null, email: null, ...m });
const cert = (c: Partial<PeerCertificate>): PeerCertificate => ({ cn: [], ou: [], o: [], dns: [], uri: [], email: [], ...c });
const user = (name: string, sources: string[], certificates: Array<Partial<CertificateMatch>>, macs: string[] = []): User =>
  ({ name, sources: sources.map((s) => parseCidr(s)!), certificates: certificates.map(match), macs, password: null });

const users: User[] = [
  user('alice', ['10.0.0.15'], [{ cn: 'alice' }]),
  user('ops', [], [{ ou: 'ops' }, { uri: 'spiffe://corp.example/ops' }, { dns: 'ops-gw.corp.example' }]),
  user('both', [], [{ cn: 'bob', o: 'corp' }]),
  user('lan', ['10.0.0.0/8'], []),
  user('kiosk', [], [], ['52:54:00:12:34:56', '52:54:00:00:00:02']),
];

describe('identify', () => {
  test.each([
    // [what, client address, certificate, expected user, expected auth]
    ['certificate CN', '192.0.2.1', cert({ cn: ['alice'] }), 'alice', 'certificate'],
    ['an OU among several', '192.0.2.1', cert({ cn: ['x'], ou: ['staff', 'ops'] }), 'ops', 'certificate'],
    ['a URI SAN: one entry of the user is enough', '192.0.2.1', cert({ uri: ['spiffe://corp.example/ops'] }), 'ops', 'certificate'],
    ['a DNS SAN', '192.0.2.1', cert({ dns: ['ops-gw.corp.example'] }), 'ops', 'certificate'],
    ['every field of an entry must hold', '192.0.2.1', cert({ cn: ['bob'], o: ['other'] }), null, null],
    ['every field of an entry holds', '192.0.2.1', cert({ cn: ['bob'], o: ['corp'] }), 'both', 'certificate'],
    ['exact, case-sensitive', '192.0.2.1', cert({ cn: ['Alice'] }), null, null],
    ['a certificate wins over the address', '10.0.0.15', cert({ ou: ['ops'] }), 'ops', 'certificate'],
    ['a verified certificate of nobody we know: nobody, not the address', '10.0.0.15', cert({ cn: ['mallory'] }), null, null],
    ['no certificate: the address', '10.0.0.15', null, 'alice', 'source'],
    ['no certificate: a wider source', '10.9.9.9', null, 'lan', 'source'],
    ['no certificate, unknown address', '192.0.2.1', null, null, null],
  ])('%s', (_what, address, certificate, expectedUser, expectedAuth) => {
    expect(identify(users, parseClientAddress(address), certificate)).toEqual({ user: expectedUser, auth: expectedAuth });
  });

  test.each([
    // [what, client address, certificate, MAC, expected user, expected auth]
    ['a MAC wins over the address', '10.0.0.15', null, '52:54:00:12:34:56', 'kiosk', 'mac'],
    ["any of the user's MACs", '192.0.2.1', null, '52:54:00:00:00:02', 'kiosk', 'mac'],
    ['a certificate wins over the MAC', '192.0.2.1', cert({ cn: ['alice'] }), '52:54:00:12:34:56', 'alice', 'certificate'],
    ['a MAC of nobody: the address decides', '10.0.0.15', null, '52:54:00:99:99:99', 'alice', 'source'],
    ['no MAC known: the address decides', '10.9.9.9', null, null, 'lan', 'source'],
  ])('%s', (_what, address, certificate, mac, expectedUser, expectedAuth) => {
    expect(identify(users, parseClientAddress(address), certificate, mac)).toEqual({ user: expectedUser, auth: expectedAuth });
  });

  test('an entry with no fields matches any verified certificate', () => {
    expect(certificateMatches(match({}), cert({}))).toBe(true);
  });
});

describe("Node's subjectaltname text", () => {
  test('kinds, repeated entries, and JSON-quoted values with commas', () => {
    const san = parseSubjectAltName('DNS:a.example, DNS:"b,c.example", URI:spiffe://corp.example/ops, email:ops@corp.example, IP Address:10.0.0.1');
    expect(Object.fromEntries(san)).toEqual({
      DNS: ['a.example', 'b,c.example'],
      URI: ['spiffe://corp.example/ops'],
      email: ['ops@corp.example'],
      'IP Address': ['10.0.0.1'],
    });
    expect(parseSubjectAltName('')).toEqual(new Map());
  });
});
