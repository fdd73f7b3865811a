import { parseConfig } from '../../src/config/load';
import { parseClientAddress } from '../../src/config/cidr';
import { findUser, identify } from '../../src/route/identify';
import { route, type Route } from '../../src/route/route';

const config = parseConfig(`
admin: { listen: "off" }
users:
  alice: { sources: [10.0.0.15] }
  ops:   { sources: [10.0.8.0/24, "fd00:8::/64"] }
  wide:  { sources: [10.0.0.0/8] }
services:
  - name: imap
    port: 1143
    bind: [127.0.0.1]
    destination: mail.corp.example:143
    mappings:
      - user: alice
        destination: { host: mail2.corp.example, port: 993, tls: { servername: mail2.corp.example } }
      - user: ops
        source: 10.0.8.128/25
        destination: ops-high.corp.example:143
      - user: ops
        destination: ops.corp.example:143
      - source: [10.1.0.0/16, "2001:db8::/32"]
        destination: branch-mail.corp.example:143
      - source: 192.168.77.0/24
        action: reject
      - source: 192.168.0.0/16
        destination: [lan1.corp.example:143, lan2.corp.example:143]
  - name: nodefault
    port: 1144
    bind: [127.0.0.1]
    mappings:
      - source: 10.9.0.0/16
        destination: only.corp.example:1
`, 'route.yaml');

const [imap, nodefault] = config.services;

/** Routes a client identified by its address alone, as a plain TCP binding does. */
function routeFrom(service: typeof imap, address: string | null): Route & { user: string | null } {
  const client = address === null ? null : parseClientAddress(address);
  const { user } = identify(config.users, client, null);
  return { ...route(service, { client, user, sni: null, now: 0 }), user };
}

function outcome(service: typeof imap, address: string): string {
  const r = routeFrom(service, address);
  const who = r.user ?? '-';
  if (r.action === 'reject') return `${who} ${r.reason}`;
  return `${who} ${r.destinations.map((d) => d.label + (d.tls ? '+tls' : '')).join(',')}`;
}

describe('route', () => {
  test.each([
    // [client, expected "user destination(s) | reason"]
    ['10.0.0.15', 'alice mail2.corp.example:993+tls'],                 // user rule, TLS destination
    ['::ffff:10.0.0.15', 'alice mail2.corp.example:993+tls'],          // IPv4-mapped IPv6 is the IPv4 address
    ['10.0.8.200', 'ops ops-high.corp.example:143'],                  // user AND source must both hold
    ['10.0.8.5', 'ops ops.corp.example:143'],                         // user holds, source not: next rule
    ['fd00:8::1234', 'ops ops.corp.example:143'],                     // IPv6 user source
    ['10.1.2.3', 'wide branch-mail.corp.example:143'],                // source list, first element
    ['2001:db8:1::5', '- branch-mail.corp.example:143'],              // source list, IPv6 element
    ['192.168.77.9', '- rejected'],                                    // reject action
    ['192.168.1.1', '- lan1.corp.example:143,lan2.corp.example:143'], // failover list, in order
    ['10.2.0.1', 'wide mail.corp.example:143'],                       // user without a rule: default
    ['172.16.0.1', '- mail.corp.example:143'],                        // nothing matches: default
    ['::1', '- mail.corp.example:143'],
  ])('imap: %s → %s', (client, expected) => {
    expect(outcome(imap, client)).toBe(expected);
  });

  test('first matching rule wins even when a later one is more specific', () => {
    // 192.168.77.9 matches the reject rule before the broader 192.168.0.0/16 forward rule.
    expect(outcome(imap, '192.168.77.9')).toBe('- rejected');
    // and alice's user rule precedes every source rule that also contains her address.
    expect(routeFrom(imap, '10.0.0.15').rule?.index).toBe(0);
  });

  test('no matching rule and no default destination → no-route', () => {
    expect(outcome(nodefault, '10.9.1.1')).toBe('wide only.corp.example:1');
    expect(outcome(nodefault, '10.8.1.1')).toBe('wide no-route');
    expect(outcome(nodefault, '127.0.0.1')).toBe('- no-route');
  });

  test('an unparseable client address matches no user and no source rule', () => {
    expect(routeFrom(imap, null)).toMatchObject({ action: 'forward', user: null, rule: null });
  });

  test('users: first entry whose sources contain the address wins', () => {
    // 10.0.0.15 is in both alice (exact) and wide (10/8); alice comes first.
    expect(findUser(config.users, parseClientAddress('10.0.0.15'))).toBe('alice');
    expect(findUser(config.users, parseClientAddress('10.0.0.16'))).toBe('wide');
    expect(findUser(config.users, parseClientAddress('11.0.0.1'))).toBeNull();
  });

  test('route is pure: the same inputs give the same answer', () => {
    const a = routeFrom(imap, '10.1.2.3');
    const b = routeFrom(imap, '10.1.2.3');
    expect(a).toEqual(b);
  });
});

describe('route with schedules: `now` is an input like the others', () => {
  const scheduled = parseConfig(`
admin: { listen: "off" }
schedules:
  night: { timezone: America/New_York, windows: [{ days: [sat], from: "22:00", to: "02:00" }] }
services:
  - name: backup
    port: 1
    bind: [127.0.0.1]
    destination: day.corp.example:1
    mappings:
      - { schedule: night, destination: night.corp.example:1 }
`, 'night.yaml').services[0];
  const at = (iso: string): string => {
    const r = route(scheduled, { client: parseClientAddress('10.0.0.1'), user: null, sni: null, now: Date.parse(iso) });
    return r.action === 'forward' ? r.destinations[0].host : r.reason;
  };

  test.each([
    ['Saturday 21:59 New York', '2026-12-05T21:59:00-05:00', 'day.corp.example'],
    ['Saturday 22:00', '2026-12-05T22:00:00-05:00', 'night.corp.example'],
    ['Sunday 01:59, after midnight', '2026-12-06T01:59:59-05:00', 'night.corp.example'],
    ['Sunday 02:00', '2026-12-06T02:00:00-05:00', 'day.corp.example'],
    ['Friday 23:00', '2026-12-04T23:00:00-05:00', 'day.corp.example'],
    ['Saturday 23:00 on the fall-back night (EDT→EST at 02:00)', '2026-10-31T23:00:00-04:00', 'night.corp.example'],
    ['Sunday 01:30 EDT, the first pass of the repeated hour', '2026-11-01T01:30:00-04:00', 'night.corp.example'],
    ['Sunday 01:30 EST, the second pass', '2026-11-01T01:30:00-05:00', 'night.corp.example'],
    ['Sunday 02:00 EST', '2026-11-01T02:00:00-05:00', 'day.corp.example'],
  ])('%s', (_what, iso, expected) => {
    expect(at(iso)).toBe(expected);
  });
});

describe('route on a SOCKS service: `to` matches where the client asked to go', () => {
  const socksConfig = parseConfig(`
admin: { listen: "off" }
users:
  alice: { sources: [10.0.0.15] }
services:
  - name: socks
    port: 1080
    bind: [127.0.0.1]
    protocol: socks
    socks: { auth: none }
    mappings:
      - { user: alice, to: ["10.0.0.0/8", "*.corp.example:443", "db.corp.example:5432"] }
      - { to: ["intranet.corp.example:80"], destination: "intranet-proxy.corp.example:8080" }
      - { action: reject }
`, 'socks.yaml');
  const socks = socksConfig.services[0];
  const ask = (from: string, host: string, port: number, resolved: string | null = null): string => {
    const client = parseClientAddress(from);
    const { user } = identify(socksConfig.users, client, null);
    const literal = parseClientAddress(host);
    const address = literal ?? (resolved === null ? null : parseClientAddress(resolved));
    const target = { host, address, port, label: `${host}:${port}`, version: 5 as const };
    const r = route(socks, { client, user, sni: null, now: 0, target });
    return r.action === 'forward' ? r.destinations.map((d) => d.label).join(',') : r.reason;
  };

  test.each([
    ['an address in alice\'s block: where she asked', '10.0.0.15', '10.9.8.7', 22, null, '10.9.8.7:22'],
    ['a name resolved into her block: the address that was checked', '10.0.0.15', 'files.lan', 445, '10.1.1.1', '10.1.1.1:445'],
    ['a name not resolved: no block matches it', '10.0.0.15', 'files.lan', 445, null, 'rejected'],
    ['one label under *.corp.example, on its port', '10.0.0.15', 'mail.corp.example', 443, null, 'mail.corp.example:443'],
    ['several labels under it', '10.0.0.15', 'a.b.corp.example', 443, null, 'a.b.corp.example:443'],
    ['*.corp.example is not corp.example itself', '10.0.0.15', 'corp.example', 443, null, 'rejected'],
    ['the wrong port', '10.0.0.15', 'mail.corp.example', 80, null, 'rejected'],
    ['an exact name and port', '10.0.0.15', 'db.corp.example', 5432, null, 'db.corp.example:5432'],
    ['not alice: only the intranet, sent to its proxy', '192.0.2.1', 'intranet.corp.example', 80, null, 'intranet-proxy.corp.example:8080'],
    ['not alice, anything else: refused', '192.0.2.1', '10.9.8.7', 22, null, 'rejected'],
  ])('%s', (_what, from, host, port, resolved, expected) => {
    expect(ask(from, host, port, resolved)).toBe(expected);
  });
});
