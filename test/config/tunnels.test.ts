import { parseConfig } from '../../src/config/load';
import { parseTunnels, parseTunnelSpec, TunnelSpecError } from '../../src/config/tunnels';
import { ConfigError } from '../../src/errors';
import { FAKE_INTERFACES } from './fake-host';

const V4_ONLY = { lo: FAKE_INTERFACES.lo!.filter((i) => i.family === 'IPv4'), eth0: FAKE_INTERFACES.eth0 };

/** The error `parseTunnelSpec` throws for `value`; fails the test if it parses. */
function specError(value: string, gateway = false): TunnelSpecError {
  try {
    parseTunnels([value], { gateway, interfaces: FAKE_INTERFACES });
  } catch (err) {
    expect(err).toBeInstanceOf(TunnelSpecError);
    expect((err as TunnelSpecError).code).toBe('MAPGATE_ERR_TUNNEL_SPEC');
    return err as TunnelSpecError;
  }
  throw new Error(`-L ${value} parsed`);
}

/** The ConfigError for a config with `tunnels`; fails the test if it loads. */
function configError(yaml: string, tunnels: string[]): ConfigError {
  try {
    parseConfig(yaml, 'm.yaml', { interfaces: FAKE_INTERFACES, extraServices: parseTunnels(tunnels, { interfaces: FAKE_INTERFACES }) });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('the config loaded');
}

describe('parseTunnelSpec: the forms -L takes', () => {
  test.each([
    ['8143:imap.corp.example:143', { protocol: 'tcp', listenAddress: null, listenPort: 8143, destination: 'imap.corp.example:143' }],
    ['tcp/8143:imap:143', { protocol: 'tcp', listenAddress: null, listenPort: 8143, destination: 'imap:143' }],
    ['ftp/2121:ftp.corp.example:21', { protocol: 'ftp', listenAddress: null, listenPort: 2121, destination: 'ftp.corp.example:21' }],
    ['socks/1080', { protocol: 'socks', listenAddress: null, listenPort: 1080, destination: null }],
    ['socks/127.0.0.1:1080', { protocol: 'socks', listenAddress: '127.0.0.1', listenPort: 1080, destination: null }],
    ['10.0.0.1:8143:imap:143', { protocol: 'tcp', listenAddress: '10.0.0.1', listenPort: 8143, destination: 'imap:143' }],
    ['[::1]:8143:imap:143', { protocol: 'tcp', listenAddress: '::1', listenPort: 8143, destination: 'imap:143' }],
    ['8143:[2001:db8::1]:143', { protocol: 'tcp', listenAddress: null, listenPort: 8143, destination: '[2001:db8::1]:143' }],
    ['[fd00::1]:1:10.1.2.3:65535', { protocol: 'tcp', listenAddress: 'fd00::1', listenPort: 1, destination: '10.1.2.3:65535' }],
    ['localhost:8143:imap:143', { protocol: 'tcp', listenAddress: 'localhost', listenPort: 8143, destination: 'imap:143' }],
  ])('%s', (value, expected) => {
    expect(parseTunnelSpec(value)).toEqual(expected);
  });
});

describe('bad -L forms: the reason, then the expected form', () => {
  const TCP_FORM = 'expected [tcp|ftp|socks/][listen-address:]listen-port:host:port (e.g. -L 8143:imap.corp.example:143)';
  const SOCKS_FORM = 'expected socks/[listen-address:]listen-port (e.g. -L socks/1080)';
  test.each([
    ['8143:imap', 'missing port', TCP_FORM],
    ['8143:imap:', 'missing port', TCP_FORM],
    ['8143', 'missing host:port', TCP_FORM],
    ['', 'missing listen-port', TCP_FORM],
    [':imap:143', 'missing listen-port', TCP_FORM],
    ['8143::143', 'missing host', TCP_FORM],
    ['0:imap:143', 'listen-port 0 is out of range (1-65535)', TCP_FORM],
    ['65536:imap:143', 'listen-port 65536 is out of range (1-65535)', TCP_FORM],
    ['8143:imap:0', 'port 0 is out of range (1-65535)', TCP_FORM],
    ['8143:imap:99999', 'port 99999 is out of range (1-65535)', TCP_FORM],
    ['imap:8143:143', 'listen-port "imap" is not a number', TCP_FORM],
    ['gw.example:8143:imap:143', 'listen address "gw.example" is not an IP address (an IPv6 one in brackets: [::1])', TCP_FORM],
    [':8143:imap:143', 'empty listen address (leave it out, with its ":", for loopback)', TCP_FORM],
    ['8143:imap:imaps', 'port "imaps" is not a number', TCP_FORM],
    ['udp/53:dns:53', 'unknown protocol "udp" (tcp, ftp or socks)', TCP_FORM],
    ['8143:host/x:80', '"/" belongs after a protocol only (tcp/, ftp/ or socks/ first)', TCP_FORM],
    ['::1:8143:imap:143', 'too many ":" (an IPv6 address needs brackets: [::1])', TCP_FORM],
    ['[::1:8143:imap:143', 'unbalanced "[" or "]": write an IPv6 address as [addr]', TCP_FORM],
    ['[10.0.0.1]:8143:imap:143', 'listen address [10.0.0.1] is not an IPv6 address', TCP_FORM],
    ['8143:[imap]:143', '[imap] is not an IPv6 address', TCP_FORM],
    ['8143:im_ap!:143', '"im_ap!" is not a host name or IP address', TCP_FORM],
    ['socks/1080:imap:143', 'socks/ takes no host:port: the SOCKS client names its destination', SOCKS_FORM],
    ['socks/', 'missing listen-port', SOCKS_FORM],
    ['socks/x', 'listen-port "x" is not a number', SOCKS_FORM],
  ])('-L %s', (value, reason, form) => {
    expect(specError(value).message).toBe(`-L ${value}: ${reason}: ${form}`);
  });

  test('a SOCKS tunnel never listens beyond loopback: -g and a LAN listen address are refused, and say why', () => {
    expect(specError('socks/1080', true).message).toMatch(/^-L socks\/1080: -g would make this SOCKS tunnel \(no login, any destination\) an open proxy/);
    expect(specError('socks/10.0.0.1:1080').message).toMatch(/^-L socks\/10\.0\.0\.1:1080: .*on 10\.0\.0\.1 it would be an open proxy/);
    // Loopback, written out, is what it listens on anyway.
    expect(() => parseTunnels(['socks/[::1]:1080', 'socks/127.0.0.2:1081', 'socks/localhost:1082'], { gateway: true, interfaces: FAKE_INTERFACES })).not.toThrow();
  });
});

describe('parseTunnels: services as YAML would give them', () => {
  test('tcp, ftp and socks, named by port, commented with their argument, on loopback', () => {
    const t = parseTunnels(['8143:imap.corp.example:143', 'ftp/2121:ftp.corp.example:21', 'socks/1080'], { interfaces: FAKE_INTERFACES });
    expect(t).toEqual([
      { spec: '-L 8143:imap.corp.example:143', service: { name: 'L8143', comment: '-L 8143:imap.corp.example:143', port: 8143, bind: ['127.0.0.1', '::1'], destination: 'imap.corp.example:143' } },
      { spec: '-L ftp/2121:ftp.corp.example:21', service: { name: 'L2121', comment: '-L ftp/2121:ftp.corp.example:21', port: 2121, bind: ['127.0.0.1', '::1'], protocol: 'ftp', destination: 'ftp.corp.example:21' } },
      { spec: '-L socks/1080', service: { name: 'L1080', comment: '-L socks/1080', port: 1080, bind: ['127.0.0.1', '::1'], protocol: 'socks', socks: { auth: 'none' }, mappings: [{ to: ['*'] }] } },
    ]);
  });

  test('loopback is ::1 too only where the host has it', () => {
    expect(parseTunnels(['1:a:2'], { interfaces: V4_ONLY })[0].service.bind).toEqual(['127.0.0.1']);
  });

  test('-g: bind internal, unless the tunnel names its address (localhost: loopback)', () => {
    const t = parseTunnels(['1:a:2', '10.0.0.1:3:a:4', '[fd00::1]:5:a:6', 'localhost:7:a:8'], { gateway: true, interfaces: FAKE_INTERFACES });
    expect(t.map((x) => x.service.bind)).toEqual(['internal', ['10.0.0.1'], ['fd00::1'], ['127.0.0.1', '::1']]);
  });

  test('two tunnels on one port (other addresses) get distinct names', () => {
    const t = parseTunnels(['10.0.0.1:8143:a:1', '[fd00::1]:8143:b:1', '8143:c:1'], { interfaces: FAKE_INTERFACES });
    expect(t.map((x) => x.service.name)).toEqual(['L8143', 'L8143-2', 'L8143-3']);
  });
});

describe('extraServices: tunnels validated with the file, problems against their -L argument', () => {
  const FILE = 'services:\n  - name: imap\n    port: 8143\n    destination: mail:143\n';

  test('file-less and with a file, the tunnels become services of the normal pipeline', () => {
    const tunnels = parseTunnels(['8144:imap.corp.example:143', 'ftp/2121:ftp:21', 'socks/1080'], { interfaces: FAKE_INTERFACES });
    const c = parseConfig(FILE, 'm.yaml', { interfaces: FAKE_INTERFACES, extraServices: tunnels });
    expect(c.services.map((s) => [s.name, s.protocol, s.port])).toEqual([['imap', 'tcp', 8143], ['L8144', 'tcp', 8144], ['L2121', 'ftp', 2121], ['L1080', 'socks', 1080]]);
    expect(c.services[1].destinations.map((d) => d.label)).toEqual(['imap.corp.example:143']);
    expect(c.services[3].socks).toEqual({ auth: 'none' });
    expect(c.services[3].mappings[0].to).not.toBeNull();
    const alone = parseConfig('services: []\n', '<inline>', { interfaces: FAKE_INTERFACES, extraServices: tunnels });
    expect(alone.services.map((s) => s.name)).toEqual(['L8144', 'L2121', 'L1080']);
    expect(alone.admin).toEqual({ host: '127.0.0.1', port: 9464 });
    // The caller's objects are appended as copies: a reload parses them again unchanged.
    expect(tunnels[0].service).not.toHaveProperty('intercept');
    expect(parseConfig(FILE, 'm.yaml', { interfaces: FAKE_INTERFACES, extraServices: tunnels }).services).toHaveLength(4);
  });

  test('a port a file service uses: reported against the -L argument, with line 0', () => {
    const err = configError(FILE, ['8143:imap.corp.example:143']);
    expect(err.problems).toEqual([{ file: '-L 8143:imap.corp.example:143', line: 0, col: 0, path: 'port', message: 'port 8143 is already used by service "imap" on 127.0.0.1' }]);
  });

  test('a name a file service has', () => {
    const err = configError('services:\n  - name: L9000\n    port: 9001\n    destination: a:1\n', ['9000:b:2']);
    expect(err.problems).toEqual([{ file: '-L 9000:b:2', line: 0, col: 0, path: 'name', message: 'duplicate service name "L9000" (first at services[0])' }]);
  });

  test('two tunnels on one address and port: the second is blamed', () => {
    const err = configError('services: []\n', ['9000:a:1', '9000:b:2']);
    expect(err.problems.map((p) => [p.file, p.message])).toEqual([['-L 9000:b:2', 'port 9000 is already used by service "L9000" on 127.0.0.1']]);
  });

  test("the file's own problems keep their positions next to a tunnel's", () => {
    const err = configError('services:\n  - name: imap\n    port: 8143\n    destination: mail:143\n    idleTimeout: 5 min\n', ['8143:x:1']);
    expect(err.problems.map((p) => `${p.file}:${p.line}:${p.col}: ${p.path}`)).toEqual(['-L 8143:x:1:0:0: port', 'm.yaml:5:18: services[0].idleTimeout']);
  });

  test('a file whose services is not a list gets no tunnels appended: its own problem is reported', () => {
    const err = configError('services: { name: x }\n', ['9000:a:1']);
    expect(err.problems.map((p) => [p.file, p.path])).toEqual([['m.yaml', 'services']]);
  });
});
