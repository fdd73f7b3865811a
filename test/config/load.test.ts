import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile, parseConfig } from '../../src/config/load';
import { ConfigError, MapgateError, formatProblem } from '../../src/errors';
import { FAKE_INTERFACES } from './fake-host';
import { configProblems } from './problems';

const ROOT = join(__dirname, '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'config');

const problems = (yaml: string, file = 'm.yaml'): string[] => configProblems(yaml, file, { interfaces: FAKE_INTERFACES });

const y = (...lines: string[]): string => lines.join('\n') + '\n';

describe('valid configs', () => {
  test('the bundled mappings.yaml loads (with this host\'s interfaces)', () => {
    const file = join(ROOT, 'mappings.yaml');
    const c = loadConfigFile(file);
    expect(c.file).toBe(file);
    expect(c.admin).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(c.services.map((s) => [s.name, s.port])).toEqual([['admin-via-gateway', 9465]]);
    expect(c.services[0].destinations.map((d) => d.label)).toEqual(['127.0.0.1:9464']);
    expect(c.shutdownGraceMs).toBe(10_000);
  });

  test('the issue-2 example normalizes: durations in ms, CIDRs, destinations, users, reject, intercept', () => {
    const c = loadConfigFile(join(FIXTURES, 'issue-2.yaml'), { interfaces: FAKE_INTERFACES });
    expect(c.interfaces).toEqual({ lo: 'internal', eth1: 'internal', eth0: 'external' });
    expect(c.admin).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(c.events).toBe('stdout');
    expect(c.workers).toBe(1);
    expect(c.shutdownGraceMs).toBe(10_000);
    expect(c.users.map((u) => [u.name, u.sources.map((s) => s.text)])).toEqual([
      ['alice', ['10.0.0.15/32']],
      ['ops', ['10.0.8.0/24', 'fd00:8::/64']],
    ]);
    expect(c.users[1].sources[1]).toEqual({ family: 6, words: [0xfd000008, 0, 0, 0], prefix: 64, text: 'fd00:8::/64' });

    expect(c.services).toHaveLength(1);
    const imap = c.services[0];
    expect(imap).toMatchObject({ name: 'imap', port: 1143, bind: { kind: 'internal' }, intercept: [143], connectTimeoutMs: 5000, idleTimeoutMs: 1_800_000, maxConnections: 256 });
    expect(imap.destinations).toEqual([{ host: 'mail.corp.example', port: 143, tls: null, proxyProtocol: null, label: 'mail.corp.example:143' }]);
    const [toAlice, branch, reject] = imap.mappings;
    expect(toAlice).toEqual({
      index: 0, user: 'alice', sources: null, sni: null, schedule: null, endAtClose: false, to: null, action: 'forward',
      destinations: [{ host: 'mail2.corp.example', port: 993, label: 'mail2.corp.example:993', proxyProtocol: null,
        tls: { servername: 'mail2.corp.example', ca: null, cert: null, key: null, verify: true } }],
    });
    expect(branch).toMatchObject({ index: 1, user: null, action: 'forward', destinations: [{ label: 'branch-mail.corp.example:143', tls: null }] });
    expect(branch.sources!.map((s) => s.text)).toEqual(['10.1.0.0/16']);
    expect(reject).toMatchObject({ index: 2, user: null, action: 'reject', destinations: [] });
    expect(reject.sources!.map((s) => s.text)).toEqual(['192.168.77.0/24']);
  });

  test('the normalized config is frozen all the way down', () => {
    const c = loadConfigFile(join(FIXTURES, 'issue-2.yaml'), { interfaces: FAKE_INTERFACES });
    const imap = c.services[0];
    const objects: object[] = [c, c.interfaces, c.admin!, c.users, c.users[0], c.users[0].sources, c.users[0].sources[0],
      c.services, imap, imap.bind, imap.intercept, imap.destinations, imap.destinations[0], imap.mappings, imap.mappings[0],
      imap.mappings[0].destinations[0], imap.mappings[0].destinations[0].tls!, imap.mappings[1].sources!];
    for (const o of objects) expect(Object.isFrozen(o)).toBe(true);
    expect(() => { (imap as { port: number }).port = 1; }).toThrow(TypeError);
  });

  test('the richer fixture: defaults, overrides, bind lists, failover lists, IPv6 destinations, tls: true', () => {
    const c = loadConfigFile(join(FIXTURES, 'rich.yaml'), { interfaces: FAKE_INTERFACES });
    expect(c.workers).toBe(2);
    expect(c.events).toBe('stderr');
    expect(c.shutdownGraceMs).toBe(15_000);
    const [imap, ssh, proxy] = c.services;
    expect([imap.connectTimeoutMs, imap.idleTimeoutMs, imap.maxConnections]).toEqual([3000, 3_600_000, 512]);
    expect([ssh.connectTimeoutMs, ssh.idleTimeoutMs, ssh.maxConnections]).toEqual([250, 900_000, 100]);
    expect(imap.intercept).toEqual([143, 993]);
    expect(ssh.bind).toEqual({ kind: 'list', interfaces: ['eth1'], addresses: ['10.0.0.1', '::1'] });
    expect(ssh.destinations.map((d) => d.label)).toEqual(['bastion1.corp.example:22', 'bastion2.corp.example:22']);
    expect(imap.mappings[1].destinations.map((d) => [d.host, d.label])).toEqual([['ops1.corp.example', 'ops1.corp.example:143'], ['2001:db8::1', '[2001:db8::1]:143']]);
    expect(proxy.bind).toEqual({ kind: 'all' });
    expect(proxy.destinations[0]).toMatchObject({ host: '2001:db8::8', port: 3128, label: '[2001:db8::8]:3128', tls: { servername: '2001:db8::8', verify: true } });
    expect(c.users[2].sources.map((s) => s.text)).toEqual(['192.168.50.0/23']);
  });

  test('admin off, 0s timeouts, port 0, idle timeout disabled', () => {
    const c = parseConfig(y(
      'admin: { listen: "off" }',
      'services:',
      '  - { name: a, port: 0, idleTimeout: 0s, connectTimeout: 1500ms }',
    ), 'm.yaml', { interfaces: FAKE_INTERFACES });
    expect(c.admin).toBeNull();
    expect(c.services[0]).toMatchObject({ port: 0, idleTimeoutMs: 0, connectTimeoutMs: 1500, destinations: [], mappings: [] });
  });
});

describe('config mistakes: every one located as file:line:col: path: message', () => {
  test.each<[string, string, string[]]>([
    ['YAML syntax error', y('services:', '  - name: a', '    port: 1: 2'), [
      'm.yaml:3:11: (yaml): Nested mappings are not allowed in compact mappings',
    ]],
    ['tab indentation', y('services:', '\t- name: a'), [
      'm.yaml:2:1: (yaml): Tabs are not allowed as indentation',
    ]],
    ['duplicate key', y('services:', '  - name: a', '    port: 1', '    port: 2'), [
      'm.yaml:4:5: services[0].port: duplicate key "port": a key may appear only once in a mapping',
    ]],
    ['two YAML documents', y('services: []', '---', 'services: []'), [
      'm.yaml:2:1: (yaml): a second YAML document ("---") follows: the config is one document',
    ]],
    ['unknown top-level key (with a suggestion)', y('services: []', 'admn:', '  listen: "off"'), [
      'm.yaml:2:1: admn: unknown key (did you mean "admin"?)',
    ]],
    ['unknown top-level key (nothing close)', y('services: []', 'frobnicate: 1'), [
      'm.yaml:2:1: frobnicate: unknown key (expected one of: interfaces, admin, log, shutdownGrace, interfacePoll, workers, defaults, users, schedules, services)',
    ]],
    ['typo in a nested key', y('services:', '  - name: a', '    port: 1', '    destinaton: h:1'), [
      'm.yaml:4:5: services[0].destinaton: unknown key (did you mean "destination"?)',
    ]],
    ['typo deep in a mapping', y('services:', '  - name: a', '    port: 1', '    mappings:', '      - sources: 10.0.0.0/8', '        action: reject'), [
      'm.yaml:5:9: services[0].mappings[0].sources: unknown key (did you mean "source"?)',
    ]],
    ['port out of range', y('services:', '  - name: a', '    port: 65536'), [
      'm.yaml:3:11: services[0].port: must be <= 65535',
    ]],
    ['negative port', y('services:', '  - name: a', '    port: -1'), [
      'm.yaml:3:11: services[0].port: must be >= 0',
    ]],
    ['port of the wrong type', y('services:', '  - name: a', '    port: "80"'), [
      'm.yaml:3:11: services[0].port: must be a port number or "auto", not the string "80"',
    ]],
    ['fractional port', y('services:', '  - { name: a, port: 80.5 }'), [
      'm.yaml:2:22: services[0].port: must be a port number or "auto", not the number 80.5 (not whole)',
    ]],
    ['services is not a list', y('services:', '  name: a'), [
      'm.yaml:2:3: services: must be a list, not a mapping',
    ]],
    ['services left empty', y('services:'), [
      'm.yaml:1:10: services: must be a list, not empty',
    ]],
    ['duplicate service names', y('services:', '  - { name: a, port: 1 }', '  - { name: a, port: 2 }'), [
      'm.yaml:3:13: services[1].name: duplicate service name "a" (first at services[0])',
    ]],
    ['bad service name', y('services:', '  - { name: "mail server", port: 1 }'), [
      'm.yaml:2:13: services[0].name: must be 1 to 128 letters, digits, \'-\' or \'_\', not the string "mail server"',
    ]],
    ['two services on the same port', y('services:', '  - { name: a, port: 1000, bind: [10.0.0.1] }', '  - { name: b, port: 1000, bind: [eth1] }'), [
      'm.yaml:3:22: services[1].port: port 1000 is already used by service "a" on 10.0.0.1',
    ]],
    ['a wildcard bind clashes with a specific one', y('services:', '  - { name: a, port: 1000 }', '  - { name: b, port: 1000, bind: all }'), [
      'm.yaml:3:22: services[1].port: port 1000 is already used by service "a" on 127.0.0.1',
    ]],
    ['intercept port clashing with another service', y('services:', '  - { name: a, port: 143 }', '  - { name: b, port: 1143, intercept: [993, 143] }'), [
      'm.yaml:3:45: services[1].intercept[1]: port 143 is already used by service "a" on 127.0.0.1',
    ]],
    ['intercept port repeating the service port', y('services:', '  - name: a', '    port: 1143', '    intercept: [1143]'), [
      'm.yaml:4:17: services[0].intercept[0]: port 1143 is already used by service "a" on 127.0.0.1',
    ]],
    ['mapping naming an unknown user', y('users:', '  alice: { sources: 10.0.0.15 }', 'services:', '  - name: a', '    port: 1', '    mappings:', '      - { user: bob, destination: "h:1" }'), [
      'm.yaml:7:17: services[0].mappings[0].user: unknown user "bob" (users defines: alice)',
    ]],
    ['mapping naming a user when there are none', y('services:', '  - name: a', '    port: 1', '    mappings:', '      - { user: bob, action: reject }'), [
      'm.yaml:5:17: services[0].mappings[0].user: unknown user "bob" (no users are defined)',
    ]],
    ['CIDR with a bad prefix', y('users:', '  ops: { sources: [10.0.8.0/33, "fd00::/129"] }', 'services: []'), [
      'm.yaml:2:20: users.ops.sources[0]: "10.0.8.0/33": the prefix after "/" must be 0-32 for IPv4',
      'm.yaml:2:33: users.ops.sources[1]: "fd00::/129": the prefix after "/" must be 0-128 for IPv6',
    ]],
    ['CIDR with a bad address', y('services:', '  - name: a', '    port: 1', '    mappings:', '      - source: 10.0.300.0/24', '        action: reject'), [
      'm.yaml:5:17: services[0].mappings[0].source: "10.0.300.0/24" is not an IP address or CIDR block (e.g. 10.0.0.15, 10.1.0.0/16, fd00:8::/64)',
    ]],
    ['CIDR with a non-numeric prefix', y('users:', '  ops: { sources: "10.0.0.0/x" }', 'services: []'), [
      'm.yaml:2:19: users.ops.sources: "10.0.0.0/x": the prefix after "/" must be 0-32 for IPv4',
    ]],
    ['host:port without a port', y('services:', '  - { name: a, port: 1, destination: mail.corp.example }'), [
      'm.yaml:2:38: services[0].destination: "mail.corp.example": no port: write host:port, e.g. mail.example.com:143',
    ]],
    ['host:port with port 0', y('services:', '  - { name: a, port: 1, destination: "mail:0" }'), [
      'm.yaml:2:38: services[0].destination: "mail:0": port 0 is out of range (port 1-65535)',
    ]],
    ['host:port with port 70000', y('services:', '  - { name: a, port: 1, destination: "mail:70000" }'), [
      'm.yaml:2:38: services[0].destination: "mail:70000": port 70000 is out of range (port 1-65535)',
    ]],
    ['host:port with a bad host', y('services:', '  - { name: a, port: 1, destination: "mail_gw!:143" }'), [
      'm.yaml:2:38: services[0].destination: "mail_gw!:143": "mail_gw!" is not a host name or IP address',
    ]],
    ['IPv6 destination without brackets', y('services:', '  - { name: a, port: 1, destination: "2001:db8::1:143" }'), [
      'm.yaml:2:38: services[0].destination: "2001:db8::1:143": an IPv6 address needs brackets and a port: write [addr]:port, e.g. [::1]:443',
    ]],
    ['bad host in a destination object, failover list entry', y('services:', '  - name: a', '    port: 1', '    destination:', '      - h1:1', '      - { host: "bad host", port: 2 }'), [
      'm.yaml:6:17: services[0].destination[1].host: "bad host" is not a host name or IP address',
    ]],
    ['destination object without a port', y('services:', '  - name: a', '    port: 1', '    destination: { host: h }'), [
      'm.yaml:4:18: services[0].destination: missing required key "port"',
    ]],
    ['bad duration 5x', y('defaults:', '  connectTimeout: 5x', 'services: []'), [
      'm.yaml:2:19: defaults.connectTimeout: must be a duration such as 250ms, 5s, 15m or 1h, not the string "5x"',
    ]],
    ['bad duration 1d', y('services:', '  - { name: a, port: 1, idleTimeout: 1d }'), [
      'm.yaml:2:38: services[0].idleTimeout: must be a duration such as 250ms, 5s, 15m or 1h, not the string "1d"',
    ]],
    ['duration too large for a timer', y('shutdownGrace: 600h', 'services: []'), [
      'm.yaml:1:16: shutdownGrace: must be at most 24 days (2147483647ms), not "600h"',
    ]],
    ['duration as a bare number', y('shutdownGrace: 10', 'services: []'), [
      'm.yaml:1:16: shutdownGrace: must be a string, not the number 10',
    ]],
    ['missing required name and port', y('services:', '  - bind: all'), [
      'm.yaml:2:5: services[0]: missing required key "name"',
      'm.yaml:2:5: services[0]: missing required key "port"',
    ]],
    ['missing services', y('admin:', '  listen: "off"'), [
      'm.yaml:1:1: (root): missing required key "services"',
    ]],
    ['reject mapping with a destination', y('services:', '  - name: a', '    port: 1', '    mappings:', '      - source: 10.0.0.0/8', '        action: reject', '        destination: h:1'), [
      'm.yaml:7:9: services[0].mappings[0].destination: a mapping with action: reject takes no destination',
    ]],
    ['forward mapping without a destination', y('services:', '  - name: a', '    port: 1', '    mappings:', '      - source: 10.0.0.0/8'), [
      'm.yaml:5:9: services[0].mappings[0]: needs a destination (or action: reject)',
    ]],
    ['bad action', y('services:', '  - name: a', '    port: 1', '    mappings:', '      - { source: 10.0.0.0/8, action: drop }'), [
      'm.yaml:5:39: services[0].mappings[0].action: must be one of: forward, reject, not the string "drop"',
    ]],
    ['bind entry that is no interface of this host', y('services:', '  - { name: a, port: 1, bind: [eth1, wlan0] }'), [
      'm.yaml:2:38: services[0].bind[1]: "wlan0" is neither an IP address nor an interface of this host (interfaces: lo, eth1, eth0)',
    ]],
    ['bind word that is not internal or all', y('services:', '  - { name: a, port: 1, bind: everywhere }'), [
      'm.yaml:2:31: services[0].bind: must be "internal", "all" or a list of interface names and addresses, not the string "everywhere"',
    ]],
    ['internal inside a bind list', y('services:', '  - { name: a, port: 1, bind: [internal, 10.0.0.1] }'), [
      'm.yaml:2:32: services[0].bind[0]: "internal" cannot be part of a list: write bind: internal',
    ]],
    ['bad interface tag', y('interfaces:', '  eth0: outside', 'services: []'), [
      'm.yaml:2:9: interfaces.eth0: must be one of: internal, external, not the string "outside"',
    ]],
    ['bad admin address', y('admin:', '  listen: 9464', 'services: []'), [
      'm.yaml:2:11: admin.listen: must be a string, not the number 9464',
    ]],
    ['admin address without a port', y('admin:', '  listen: 127.0.0.1', 'services: []'), [
      'm.yaml:2:11: admin.listen: "127.0.0.1": no port: write host:port, e.g. mail.example.com:143 (or "off" to disable)',
    ]],
    ['user with neither sources, certificates, MACs nor a password', y('users:', '  alice: {}', 'services: []'), [
      'm.yaml:2:10: users.alice: needs at least one of: sources, certificates, macs, password',
    ]],
    ['user with an empty source list', y('users:', '  alice: { sources: [] }', 'services: []'), [
      'm.yaml:2:21: users.alice.sources: must not be an empty list',
    ]],
    ['user name with a space', y('users:', '  "alice b": { sources: 10.0.0.1 }', 'services: []'), [
      'm.yaml:2:3: users."alice b": key must be 1 to 128 letters, digits, \'-\' or \'_\'',
    ]],
    ['maxConnections of 0', y('defaults:', '  maxConnections: 0', 'services: []'), [
      'm.yaml:2:19: defaults.maxConnections: must be >= 1',
    ]],
    ['empty file', '', ['m.yaml:1:1: (root): the file is empty: it needs at least a "services:" list']],
    ['comments only', y('# nothing here', '   '), ['m.yaml:1:1: (root): the file is empty: it needs at least a "services:" list']],
    ['root is a list', y('- services'), ['m.yaml:1:1: (root): must be a mapping, not a list']],
    ['root is a scalar', y('services'), ['m.yaml:1:1: (root): must be a mapping, not the string "services"']],
    ['a key that is a list', y('[a, b]: 1', 'services: []'), ['m.yaml:1:1: (root): a key must be a plain name, not a list']],
    ['an empty key', y('services: []', ': 1'), ['m.yaml:2:1: (root): a key must be a plain name, not empty']],
    ['an alias without an anchor', y('services: [*svc]'), ['m.yaml:1:12: services[0]: alias *svc has no anchor &svc before it']],
    ['a recursive alias', y('services: &s [*s]'), ['m.yaml:1:15: services[0]: alias *s refers to a node that contains it: recursive structures are not allowed']],
    ['nesting deeper than 64 levels', `services: []\nx: ${'['.repeat(70)}${']'.repeat(70)}\n`, [
      'm.yaml:2:67: (yaml): nested more than 64 levels deep',
    ]],
    ['deep block nesting', y('services: []', ...Array.from({ length: 70 }, (_, d) => `${' '.repeat(2 * d)}k${d}:`), ' '.repeat(140) + '1'), [
      'm.yaml:66:129: (yaml): nested more than 64 levels deep',
    ]],
    ['a megabyte of open brackets is refused before parsing', `services: []\nx: ${'['.repeat(1_000_000)}\n`, [
      'm.yaml:2:1004: (yaml): nested more than 64 levels deep',
    ]],
    ['multiple problems, all reported, in line order', y(
      'frobnicate: 1',
      'services:',
      '  - name: a',
      '    port: 99999',
      '    destination: nowhere',
      '  - name: a',
      '    port: "x"',
      '    idleTimeout: 3 days',
    ), [
      'm.yaml:1:1: frobnicate: unknown key (expected one of: interfaces, admin, log, shutdownGrace, interfacePoll, workers, defaults, users, schedules, services)',
      'm.yaml:4:11: services[0].port: must be <= 65535',
      'm.yaml:5:18: services[0].destination: "nowhere": no port: write host:port, e.g. mail.example.com:143',
      'm.yaml:6:11: services[1].name: duplicate service name "a" (first at services[0])',
      'm.yaml:7:11: services[1].port: must be a port number or "auto", not the string "x"',
      'm.yaml:8:18: services[1].idleTimeout: must be a duration such as 250ms, 5s, 15m or 1h, not the string "3 days"',
    ]],
  ])('%s', (_kind, yaml, expected) => {
    expect(problems(yaml)).toEqual(expected);
  });

  test('a key written as a number is found where it is, quoted or not', () => {
    expect(problems(y('users:', '  5: { sources: bad }', 'services: []'))).toEqual([
      'm.yaml:2:17: users.5.sources: "bad" is not an IP address or CIDR block (e.g. 10.0.0.15, 10.1.0.0/16, fd00:8::/64)',
    ]);
    expect(problems(y('users:', '  "5": { sources: bad }', 'services: []'))).toEqual([
      'm.yaml:2:19: users.5.sources: "bad" is not an IP address or CIDR block (e.g. 10.0.0.15, 10.1.0.0/16, fd00:8::/64)',
    ]);
  });

  test('a billion-laughs alias bomb is refused fast, pointing at the alias', () => {
    const levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 9; i++) {
      const prev = String.fromCharCode(96 + i);
      const cur = String.fromCharCode(97 + i);
      levels.push(`${cur}: &${cur} [${Array(9).fill(`*${prev}`).join(',')}]`);
    }
    const started = performance.now();
    const out = problems(y(...levels, 'services: []'));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(out).toEqual([
      'm.yaml:5:8: e[0]: alias *d makes the aliases expand to more than 10000 nodes: refused as a "billion laughs" document',
    ]);
  });

  test('anchors and aliases within bounds are fine', () => {
    const c = parseConfig(y(
      'defaults: &d { connectTimeout: 2s }',
      'services:',
      '  - { name: a, port: 1, destination: &dest "h:1", connectTimeout: 7s }',
      '  - { name: b, port: 2, destination: *dest }',
    ), 'm.yaml', { interfaces: FAKE_INTERFACES });
    expect(c.services.map((s) => [s.destinations[0].label, s.connectTimeoutMs])).toEqual([['h:1', 7000], ['h:1', 2000]]);
  });

  test('ConfigError: instanceof, code, fields of the first problem, message = every problem', () => {
    let caught: unknown;
    try {
      parseConfig(y('services:', '  - name: a', '    port: 70000', '    bind: nowhere'), 'ops/mappings.yaml');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect(caught).toBeInstanceOf(MapgateError);
    expect(caught).toBeInstanceOf(Error);
    const e = caught as ConfigError;
    expect(e.code).toBe('MAPGATE_ERR_CONFIG');
    expect(e.name).toBe('ConfigError');
    expect([e.file, e.line, e.col, e.path]).toEqual(['ops/mappings.yaml', 3, 11, 'services[0].port']);
    expect(e.problems).toHaveLength(2);
    expect(e.message).toBe([
      'ops/mappings.yaml:3:11: services[0].port: must be <= 65535',
      'ops/mappings.yaml:4:11: services[0].bind: must be "internal", "all" or a list of interface names and addresses, not the string "nowhere"',
    ].join('\n'));
  });
});

describe('an unclosed "[", "{" or quote is located where it was opened, not at the end of the file (issue 8)', () => {
  const LIST = 'this "[" is never closed: a flow list needs its "]"';
  const MAP = 'this "{" is never closed: a flow mapping needs its "}"';
  const DOUBLE = 'this \'"\' is never closed: a quoted string needs its closing \'"\' (until then the rest of the file is part of the string)';
  const SINGLE = 'this "\'" is never closed: a quoted string needs its closing "\'" (until then the rest of the file is part of the string)';

  test.each<[string, string, string[]]>([
    ['the issue-8 example: "[" left open at the end of the file', y('services:', '  - name: web', '    port: 8080', '    destination: [127.0.0.1:80'), [
      `m.yaml:4:18: services[0].destination: ${LIST}`,
    ]],
    ['the same without a final newline', 'services:\n  - name: web\n    port: 8080\n    destination: [127.0.0.1:80', [
      `m.yaml:4:18: services[0].destination: ${LIST}`,
    ]],
    ['the short form that used to point past the end', y('services:', '  - name: a', '    port: [1'), [
      `m.yaml:3:11: services[0].port: ${LIST}`,
    ]],
    ['"{" left open', y('services:', '  - name: web', '    port: 8080', '    destination: { host: h, port: 80'), [
      `m.yaml:4:18: services[0].destination: ${MAP}`,
    ]],
    ['a flow list over several lines, left open', y('services:', '  - name: web', '    port: 8080', '    bind: [eth0,', '      eth1,', '      10.0.0.1'), [
      `m.yaml:4:11: services[0].bind: ${LIST}`,
    ]],
    ['left open in the middle of the file: one problem, not the parser\'s confusion after it', y(
      'services:', '  - name: a', '    bind: [eth0, eth1', '    port: 1', '  - name: b', '    port: 2',
    ), [
      `m.yaml:3:11: services[0].bind: ${LIST}`,
    ]],
    // yaml misreads the lines after the first cut, so the second has no path it could be sure of.
    ['two lists left open in two services: both, located', y(
      'services:', '  - name: a', '    port: 1', '    bind: [eth0', '  - name: b', '    port: 2', '    bind: [eth1',
    ), [
      `m.yaml:4:11: services[0].bind: ${LIST}`,
      `m.yaml:7:11: (yaml): ${LIST}`,
    ]],
    ['nested, both open: the innermost, naming the one around it', y('services:', '  - name: a', '    port: 1', '    destination: [{ host: a, port: 1 }, { host: b, port: 2'), [
      `m.yaml:4:41: services[0].destination[1]: ${MAP} (so does the "[" at 4:18 around it)`,
    ]],
    ['nested three deep', y('services: []', 'x: [a, {b: [c'), [
      `m.yaml:2:12: x[1].b: ${LIST} (so do the "[" at 2:4 and the "{" at 2:8 around it)`,
    ]],
    ['nested, the inner one closed: the outer', y('services:', '  - name: a', '    port: 1', '    destination: [{ host: a, port: 1 }, { host: b, port: 2 }'), [
      `m.yaml:4:18: services[0].destination: ${LIST}`,
    ]],
    ['a flow list at the root', y('[a, b'), [`m.yaml:1:1: (root): ${LIST}`]],
    ['a flow mapping at the root', y('{services: []'), [`m.yaml:1:1: (root): ${MAP}`]],
    ['a double quote left open swallows the rest of the file', y('services:', '  - name: web', '    destination: "127.0.0.1:80', '    port: 8080'), [
      `m.yaml:3:18: services[0].destination: ${DOUBLE}`,
    ]],
    ['a single quote left open', y('services:', "  - name: 'web", '    port: 8080'), [
      `m.yaml:2:11: services[0].name: ${SINGLE}`,
    ]],
    ['a quote left open inside a list: the quote, which took the "]" with it', y('services:', '  - name: a', '    port: 1', '    bind: [eth0, "eth1]'), [
      `m.yaml:4:18: services[0].bind[1]: ${DOUBLE}`,
    ]],
    ['brackets inside quotes and comments are not openers', y('services:', '  - name: a # [old name', '    port: 1', '    destination: ["[::1]:80", "{x"', '    bind: all'), [
      `m.yaml:4:18: services[0].destination: ${LIST}`,
    ]],
  ])('%s', (_kind, yaml, expected) => {
    expect(problems(yaml)).toEqual(expected);
  });

  test.each<[string, string, string[]]>([
    ['a closed list over several lines, then another error', y('services:', '  - name: a', '    bind: [eth0,', '      eth1]', '    port: 1: 2'), [
      'm.yaml:5:11: (yaml): Nested mappings are not allowed in compact mappings',
    ]],
    ['a closed list with brackets in quotes and a comment, then a duplicate key', y(
      'services:', '  - name: a', '    destination: ["[::1]:80", "{x"] # [', '    port: 1', '    port: 2',
    ), [
      'm.yaml:5:5: services[0].port: duplicate key "port": a key may appear only once in a mapping',
    ]],
    ['a "]" that exists but sits on a line indented too little: yaml\'s indentation error stays there', y('services:', '  - name: a', '    bind: [eth0,', '  eth1]', '    port: 1'), [
      'm.yaml:4:3: (yaml): Flow sequence in block collection must be sufficiently indented and end with a ]',
      'm.yaml:4:3: (yaml): All mapping items must start at the same column',
      'm.yaml:4:3: (yaml): Implicit keys need to be on a single line',
    ]],
    ['a closer of the wrong kind is reported where it is', y('services: []', 'x: {a: [b}'), [
      'm.yaml:2:10: (yaml): Flow sequence in block collection must be sufficiently indented and end with a ]',
      'm.yaml:2:11: (yaml): Flow map in block collection must be sufficiently indented and end with a }',
    ]],
  ])('not unclosed: %s', (_kind, yaml, expected) => {
    expect(problems(yaml)).toEqual(expected);
  });
});

describe('loadConfigFile', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'mapgate-config-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function loadError(file: string): ConfigError {
    try {
      loadConfigFile(file, { interfaces: FAKE_INTERFACES });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return err as ConfigError;
    }
    throw new Error('expected a ConfigError');
  }

  test('a missing file', () => {
    const file = join(dir, 'nope.yaml');
    expect(loadError(file).problems.map(formatProblem)).toEqual([`${file}:1:1: (file): cannot read the config file: no such file (ENOENT)`]);
  });

  test('a directory', () => {
    expect(loadError(dir).problems.map(formatProblem)).toEqual([`${dir}:1:1: (file): cannot read the config file: is a directory, not a file (EISDIR)`]);
  });

  test('invalid UTF-8 is located at its line and column', () => {
    const file = join(dir, 'latin1.yaml');
    writeFileSync(file, Buffer.concat([Buffer.from('services:\n  - name: caf'), Buffer.from([0xe9]), Buffer.from('\n    port: 1\n')]));
    expect(loadError(file).problems.map(formatProblem)).toEqual([`${file}:2:14: (file): not valid UTF-8 (byte 0xe9): save the file as UTF-8`]);
  });

  test('overlong UTF-8 and surrogates are refused; multi-byte text before them counts as characters', () => {
    const overlong = join(dir, 'overlong.yaml');
    writeFileSync(overlong, Buffer.concat([Buffer.from('# ünïcode\nservices: [] # '), Buffer.from([0xc0, 0xaf])]));
    expect(loadError(overlong).problems.map(formatProblem)).toEqual([`${overlong}:2:16: (file): not valid UTF-8 (byte 0xc0): save the file as UTF-8`]);
    const surrogate = join(dir, 'surrogate.yaml');
    writeFileSync(surrogate, Buffer.concat([Buffer.from('# é'), Buffer.from([0xed, 0xa0, 0x80])]));
    expect(loadError(surrogate).problems.map(formatProblem)).toEqual([`${surrogate}:1:4: (file): not valid UTF-8 (byte 0xed): save the file as UTF-8`]);
  });

  test('valid UTF-8 (with a BOM and non-ASCII comments) loads', () => {
    const file = join(dir, 'ok.yaml');
    writeFileSync(file, '\ufeff# größe 😀\nservices:\n  - { name: a, port: 1, destination: "h:1" }\n');
    expect(loadConfigFile(file, { interfaces: FAKE_INTERFACES }).services[0].name).toBe('a');
  });

  test('errors after a multi-byte character keep their column in characters', () => {
    const file = join(dir, 'col.yaml');
    writeFileSync(file, 'services:\n  - { name: a, port: 1, destination: "ü:0" }\n');
    expect(loadError(file).problems.map(formatProblem)).toEqual([
      `${file}:2:38: services[0].destination: "ü:0": "ü" is not a host name or IP address`,
    ]);
  });

  test('relative TLS paths resolve against the config file; an unreadable one is located', () => {
    const file = join(dir, 'tls.yaml');
    writeFileSync(file, y('services:', '  - name: a', '    port: 1', '    destination: { host: h, port: 1, tls: { ca: certs/none.pem } }'));
    expect(loadError(file).problems.map(formatProblem)).toEqual([
      `${file}:4:49: services[0].destination.tls.ca: cannot read ${join(dir, 'certs', 'none.pem')}: ENOENT`,
    ]);
    writeFileSync(file, y('services:', '  - name: a', '    port: 1', `    destination: { host: h, port: 1, tls: { ca: ${join(ROOT, 'test', 'fixtures', 'ca.pem')} } }`));
    const tls = loadConfigFile(file, { interfaces: FAKE_INTERFACES }).services[0].destinations[0].tls!;
    expect(tls.ca).toBe(readFileSync(join(ROOT, 'test', 'fixtures', 'ca.pem'), 'utf8'));
  });

  test('a TLS file without a PEM block is refused at load, not at the first handshake', () => {
    const file = join(dir, 'nopem.yaml');
    writeFileSync(join(dir, 'ca.txt'), 'this is not a certificate\n');
    writeFileSync(file, y('services:', '  - name: a', '    port: 1', '    destination: { host: h, port: 1, tls: { ca: ca.txt } }'));
    expect(loadError(file).problems.map(formatProblem)).toEqual([
      `${file}:4:49: services[0].destination.tls.ca: ${join(dir, 'ca.txt')} holds no PEM block ("-----BEGIN ...")`,
    ]);
  });

  test('a device as TLS material is refused without reading it', () => {
    const file = join(dir, 'dev.yaml');
    writeFileSync(file, y('services:', '  - name: a', '    port: 1', '    destination: { host: h, port: 1, tls: { ca: /dev/zero } }'));
    expect(loadError(file).problems.map(formatProblem)).toEqual([
      `${file}:4:49: services[0].destination.tls.ca: /dev/zero is not a regular file`,
    ]);
  });
});

describe('admin.token and admin.tls (issue 9 part 5): every mistake located', () => {
  const TLS = join(ROOT, 'test', 'fixtures');
  const service = '  - { name: a, port: 1, bind: [127.0.0.1], destination: "h:1" }';
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'mapgate-admin-config-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** Writes `lines` as dir/m.yaml and loads it: the config, or the formatted problems. */
  function load(...lines: string[]): { file: string; problems: string[]; config?: ReturnType<typeof loadConfigFile> } {
    const file = join(dir, 'm.yaml');
    writeFileSync(file, y(...lines));
    try {
      return { file, problems: [], config: loadConfigFile(file, { interfaces: FAKE_INTERFACES }) };
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return { file, problems: (err as ConfigError).problems.map(formatProblem) };
    }
  }

  test('a token file, its trailing newline dropped, and the TLS files are read, recorded among the files, and frozen', () => {
    writeFileSync(join(dir, 'admin-token'), 'a-long-random-string-0123\r\n');
    const { config } = load('admin:', '  listen: 0.0.0.0:9464', '  token: { file: admin-token }', `  tls: { cert: ${TLS}/server.pem, key: ${TLS}/server.key }`, 'services:', service);
    expect(config!.admin).toEqual({
      host: '0.0.0.0', port: 9464, token: 'a-long-random-string-0123',
      tls: { cert: readFileSync(join(TLS, 'server.pem'), 'utf8'), key: readFileSync(join(TLS, 'server.key'), 'utf8') },
    });
    expect(config!.files).toEqual([join(dir, 'admin-token'), join(TLS, 'server.key'), join(TLS, 'server.pem')].sort());
    expect(Object.isFrozen(config!.admin)).toBe(true);
    expect(Object.isFrozen(config!.admin!.tls)).toBe(true);
    // Inline: the string itself.
    expect(load('admin: { listen: 127.0.0.1:1, token: "0123456789abcdef" }', 'services:', service).config!.admin).toEqual({ host: '127.0.0.1', port: 1, token: '0123456789abcdef' });
  });

  test('an inline token shorter than 16 characters, or not a string or { file }', () => {
    expect(load('admin:', '  listen: 0.0.0.0:9464', '  token: too-short', 'services:', service).problems)
      .toEqual([`${join(dir, 'm.yaml')}:3:10: admin.token: must be at least 16 characters long`]);
    expect(load('admin:', '  token: 12345', 'services:', service).problems)
      .toEqual([`${join(dir, 'm.yaml')}:2:10: admin.token: must be a string or a mapping, not the number 12345`]);
    writeFileSync(join(dir, 't'), '0123456789abcdef');
    expect(load('admin:', '  token: { file: t, mode: 1 }', 'services:', service).problems)
      .toEqual([`${join(dir, 'm.yaml')}:2:21: admin.token.mode: unknown key (expected one of: file)`]);
    expect(load('admin:', '  token: "has spaces in the middle"', 'services:', service).problems)
      .toEqual([`${join(dir, 'm.yaml')}:2:10: admin.token: the token must be printable ASCII without spaces or line breaks: clients send it in an HTTP header`]);
  });

  test('a token file that is missing, a directory, empty, or too short', () => {
    const file = join(dir, 'm.yaml');
    expect(load('admin:', '  listen: 0.0.0.0:9464', '  token: { file: missing-token }', 'services:', service).problems)
      .toEqual([`${file}:3:18: admin.token.file: cannot read ${join(dir, 'missing-token')}: ENOENT`]);
    expect(load('admin:', `  token: { file: ${dir} }`, 'services:', service).problems)
      .toEqual([`${file}:2:18: admin.token.file: ${dir} is not a regular file`]);
    writeFileSync(join(dir, 'empty'), '\n');
    expect(load('admin:', '  token: { file: empty }', 'services:', service).problems)
      .toEqual([`${file}:2:18: admin.token.file: ${join(dir, 'empty')} is empty: it must hold the token`]);
    writeFileSync(join(dir, 'short'), 'short\n');
    expect(load('admin:', '  token: { file: short }', 'services:', service).problems)
      .toEqual([`${file}:2:18: admin.token.file: the token in ${join(dir, 'short')} is 5 characters long; it must have 16 to 1024`]);
    writeFileSync(join(dir, 'two-lines'), 'first-line-of-token\nsecond-line-of-it\n');
    expect(load('admin:', '  token: { file: two-lines }', 'services:', service).problems)
      .toEqual([`${file}:2:18: admin.token.file: the token in ${join(dir, 'two-lines')} must be printable ASCII without spaces or line breaks: clients send it in an HTTP header`]);
  });

  test("an admin certificate that does not match its key, with OpenSSL's reason; a missing key; an unreadable cert", () => {
    const file = join(dir, 'm.yaml');
    const mismatch = load('admin:', '  listen: 0.0.0.0:9464', `  tls: { cert: ${TLS}/server.pem, key: ${TLS}/wrong-server.key }`, 'services:', service).problems;
    expect(mismatch).toEqual([expect.stringMatching(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:3:16: admin\\.tls\\.cert: unusable with its key: .*key values mismatch`))]);
    expect(load('admin:', `  tls: { cert: ${TLS}/server.pem }`, 'services:', service).problems)
      .toEqual([`${file}:2:8: admin.tls: missing required key "key"`]);
    expect(load('admin:', '  tls: { cert: nope.pem, key: nope.key }', 'services:', service).problems).toEqual([
      `${file}:2:16: admin.tls.cert: cannot read ${join(dir, 'nope.pem')}: ENOENT`,
      `${file}:2:31: admin.tls.key: cannot read ${join(dir, 'nope.key')}: ENOENT`,
    ]);
  });
});
