import { parseConfig } from '../../src/config/load';
import { parseTarget } from '../../src/config/normalize/targets';
import { configProblems } from './problems';
import { FAKE_INTERFACES } from './fake-host';

/** Config keys of protocol-aware services: `protocol`, `ftp:`, `socks:`, users' passwords, mappings' `to`. */

const y = (...lines: string[]): string => lines.join('\n') + '\n';
const problems = (yaml: string): string[] => configProblems(yaml, 'p.yaml', { interfaces: FAKE_INTERFACES });
const parse = (yaml: string) => parseConfig(yaml, 'p.yaml', { interfaces: FAKE_INTERFACES });
const HASH = 'scrypt:16384:8:1:c2FsdHNhbHRzYWx0c2FsdA==:a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U=';

describe('protocol: ftp', () => {
  test('settings with their defaults', () => {
    const c = parse(y(
      'services:',
      '  - { name: a, port: 1, protocol: ftp, destination: "ftp.example:21" }',
      '  - { name: b, port: 2, protocol: ftp, destination: "ftp.example:21", ftp: { passivePorts: 50000-50100, allowForeignPassive: true, dataTimeout: 5s, maxDataChannels: 2 } }',
      '  - { name: c, port: 3, destination: "x.example:1" }',
    ));
    expect(c.services.map((s) => [s.protocol, s.ftp, s.socks])).toEqual([
      ['ftp', { passivePorts: null, allowForeignPassive: false, dataTimeoutMs: 30_000, maxDataChannels: 4 }, null],
      ['ftp', { passivePorts: { from: 50000, to: 50100 }, allowForeignPassive: true, dataTimeoutMs: 5000, maxDataChannels: 2 }, null],
      ['tcp', null, null],
    ]);
  });

  test.each([
    ['a protocol that is none', y('services:', '  - { name: a, port: 1, protocol: smtp, destination: "x.example:1" }'), [
      'p.yaml:2:35: services[0].protocol: must be one of: tcp, ftp, socks, not the string "smtp"',
    ]],
    ['a port range that is no range', y('services:', '  - { name: a, port: 1, protocol: ftp, destination: "x.example:21", ftp: { passivePorts: "50000" } }'), [
      'p.yaml:2:90: services[0].ftp.passivePorts: must be a port range such as 50000-50100, not the string "50000"',
    ]],
    ['a range upside down', y('services:', '  - { name: a, port: 1, protocol: ftp, destination: "x.example:21", ftp: { passivePorts: 50100-50000 } }'), [
      'p.yaml:2:90: services[0].ftp.passivePorts: 50100-50000: the first port must not be above the last',
    ]],
    ['a range past 65535', y('services:', '  - { name: a, port: 1, protocol: ftp, destination: "x.example:21", ftp: { passivePorts: 60000-70000 } }'), [
      'p.yaml:2:90: services[0].ftp.passivePorts: 60000-70000: ports go up to 65535',
    ]],
    ['privileged data ports', y('services:', '  - { name: a, port: 1, protocol: ftp, destination: "x.example:21", ftp: { passivePorts: 20-30 } }'), [
      'p.yaml:2:90: services[0].ftp.passivePorts: 20-30: data ports must be 1024 or above',
    ]],
    ['ftp settings on a tcp service', y('services:', '  - { name: a, port: 1, destination: "x.example:21", ftp: { dataTimeout: 5s } }'), [
      'p.yaml:2:54: services[0].ftp: only with protocol: ftp',
    ]],
  ])('%s', (_what, yaml, expected) => {
    expect(problems(yaml)).toEqual(expected);
  });
});

describe('protocol: socks', () => {
  test('mappings allow what their `to` names, and may send it elsewhere', () => {
    const c = parse(y(
      'users:',
      `  alice: { password: "${HASH}" }`,
      'services:',
      '  - name: socks',
      '    port: 1080',
      '    protocol: socks',
      '    mappings:',
      '      - { user: alice, to: ["10.0.0.0/8", "*.corp.example:443", "db.corp.example:5432"] }',
      '      - { to: "intranet.corp.example:80", destination: "intranet-proxy.corp.example:8080" }',
      '      - { action: reject }',
    ));
    const [s] = c.services;
    expect([s.protocol, s.socks, c.users[0].password]).toEqual(['socks', { auth: 'password' }, HASH]);
    expect(s.mappings[0].to!.map((t) => [t.host, t.cidr?.text ?? null, t.port])).toEqual([
      [null, '10.0.0.0/8', null], ['*.corp.example', null, 443], ['db.corp.example', null, 5432],
    ]);
    expect(s.mappings[0].destinations).toEqual([]);
    expect(s.mappings[1].destinations.map((d) => d.label)).toEqual(['intranet-proxy.corp.example:8080']);
    expect(s.mappings[2]).toMatchObject({ action: 'reject', to: null });
  });

  test('an empty mappings list is allowed: it refuses everything', () => {
    const c = parse(y('services:', '  - { name: s, port: 1, protocol: socks, socks: { auth: none } }'));
    expect(c.services[0].mappings).toEqual([]);
  });

  test.each([
    ['a forwarding mapping without to', y('services:', '  - { name: s, port: 1, protocol: socks, socks: { auth: none }, mappings: [{ source: 10.0.0.0/8 }] }'), [
      'p.yaml:2:76: services[0].mappings[0]: a SOCKS mapping that forwards needs to: [...] (the destinations it allows; "*" for any)',
    ]],
    ['a default destination', y('services:', '  - { name: s, port: 1, protocol: socks, socks: { auth: none }, destination: "x.example:1" }'), [
      'p.yaml:2:65: services[0].destination: a SOCKS service has no default destination: mappings with to: [...] say what clients may reach',
    ]],
    ['logins without any password', y('services:', '  - { name: s, port: 1, protocol: socks, mappings: [{ to: "*" }] }'), [
      'p.yaml:2:5: services[0]: SOCKS logins (auth: password, the default) need users with a password: add one from `mapgate passwd`, or set socks: { auth: none }',
    ]],
    ['to on a tcp service', y('services:', '  - { name: a, port: 1, mappings: [{ to: "*", destination: "x.example:1" }] }'), [
      'p.yaml:2:38: services[0].mappings[0].to: matches what a SOCKS client asks for: only on a service with protocol: socks',
    ]],
    ['a malformed to', y('services:', '  - { name: s, port: 1, protocol: socks, socks: { auth: none }, mappings: [{ to: ["ok.example", "bad host:80", "x.example:99999"] }] }'), [
      'p.yaml:2:97: services[0].mappings[0].to[1]: "bad host:80" is not a destination pattern: write *, a host name, *.domain, an address or CIDR block, each with an optional :port (e.g. "*.corp.example:443", "10.0.0.0/8", "[fd00::/8]:22")',
      'p.yaml:2:112: services[0].mappings[0].to[2]: "x.example:99999" is not a destination pattern: write *, a host name, *.domain, an address or CIDR block, each with an optional :port (e.g. "*.corp.example:443", "10.0.0.0/8", "[fd00::/8]:22")',
    ]],
    ['a password written in clear', y('users:', '  alice: { password: hunter2 }', 'services: []'), [
      'p.yaml:2:22: users.alice.password: must be a hash printed by `mapgate passwd` (scrypt:…), never the password itself, not the string "hunter2"',
    ]],
    ['an unknown auth', y('services:', '  - { name: s, port: 1, protocol: socks, socks: { auth: kerberos } }'), [
      'p.yaml:2:57: services[0].socks.auth: must be one of: password, none, not the string "kerberos"',
    ]],
  ])('%s', (_what, yaml, expected) => {
    expect(problems(yaml)).toEqual(expected);
  });
});

describe('to patterns', () => {
  test.each([
    ['*', { host: '*', cidr: null, port: null }],
    ['*:443', { host: '*', cidr: null, port: 443 }],
    ['*.Corp.Example.', { host: '*.corp.example', cidr: null, port: null }],
    ['db.corp.example:5432', { host: 'db.corp.example', cidr: null, port: 5432 }],
    ['10.0.0.0/8', { host: null, cidr: '10.0.0.0/8', port: null }],
    ['10.1.2.3:22', { host: null, cidr: '10.1.2.3/32', port: 22 }],
    ['fd00::/8', { host: null, cidr: 'fd00::/8', port: null }],
    ['[fd00::/8]:22', { host: null, cidr: 'fd00::/8', port: 22 }],
    ['[::1]:80', { host: null, cidr: '::1/128', port: 80 }],
  ])('%s', (text, expected) => {
    const t = parseTarget(text)!;
    expect({ host: t.host, cidr: t.cidr?.text ?? null, port: t.port }).toEqual(expected);
  });

  test.each(['', 'a b', 'x:0', 'x:65536', '[fd00::/8', '[10.0.0.1]:80', '*.*.example', 'x.example:http', '10.0.0.0/33'])('%j is refused', (text) => {
    expect(parseTarget(text)).toBeNull();
  });
});

describe('what an FTP service cannot do', () => {
  test.each([
    ['TLS to the server', y('services:', '  - name: f', '    port: 1', '    protocol: ftp', '    destination: { host: ftp.example, port: 21, tls: true }'), [
      'p.yaml:5:49: services[0].destination.tls: an FTP destination cannot use TLS: its data channels would be plain',
    ]],
    ['a PROXY header to a mapping\'s server', y('services:', '  - name: f', '    port: 1', '    protocol: ftp', '    mappings:', '      - { source: 10.0.0.0/8, destination: [{ host: ftp.example, port: 21, proxyProtocol: v2 }] }'), [
      'p.yaml:6:76: services[0].mappings[0].destination[0].proxyProtocol: an FTP destination cannot take a PROXY header: its data channels carry none',
    ]],
    ['a PROXY header from clients', y('services:', '  - name: f', '    port: 1', '    protocol: ftp', '    destination: "ftp.example:21"', '    accept: { proxyProtocol: { from: [10.0.0.1] } }'), [
      'p.yaml:6:15: services[0].accept.proxyProtocol: an FTP service cannot take a PROXY header: its data channels check the client by its TCP address',
    ]],
    ['data ports from 0', y('services:', '  - { name: a, port: 1, protocol: ftp, destination: "x.example:21", ftp: { passivePorts: 0-100 } }'), [
      'p.yaml:2:90: services[0].ftp.passivePorts: 0-100: data ports must be 1024 or above',
    ]],
  ])('%s', (_what, yaml, expected) => {
    expect(problems(yaml)).toEqual(expected);
  });
});
