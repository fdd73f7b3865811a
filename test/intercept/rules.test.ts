import type { NetworkInterfaceInfo } from 'node:os';
import { parseConfig } from '../../src/config/load';
import type { InterfaceTable } from '../../src/config/bind';
import { interceptPlan, interceptRules } from '../../src/intercept/rules';

function v4(address: string, internal = false): NetworkInterfaceInfo {
  return { address, netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal, cidr: `${address}/24` };
}
function v6(address: string, internal = false): NetworkInterfaceInfo {
  return { address, netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal, cidr: `${address}/64`, scopeid: 0 };
}

/** A host: loopback, two LAN links (eth1 dual-stack, eth2 IPv4 only), the uplink eth0. */
const HOST: InterfaceTable = {
  lo: [v4('127.0.0.1', true), v6('::1', true)],
  eth0: [v4('203.0.113.5')],
  eth1: [v4('10.0.1.1'), v6('fd00:1::1'), v6('fe80::1')],
  eth2: [v4('10.0.2.1')],
};

function config(yaml: string, table: InterfaceTable = HOST) {
  return parseConfig(yaml, 'test.yaml', { interfaces: table });
}

const TAGGED = `
interfaces: { eth1: internal, eth2: internal, eth0: external }
admin: { listen: "off" }
services:
`;

describe('interceptPlan: which ports are redirected on which interfaces', () => {
  test('internal interfaces only (config tags; loopback left out), ports grouped and sorted per interface', () => {
    const plan = interceptPlan(config(`${TAGGED}
  - { name: mail, port: 1143, intercept: [993, 143], destination: "mail.example:143" }
  - { name: pop, port: 1110, intercept: [110], destination: "mail.example:110" }
  - { name: plain, port: 1200, destination: "x.example:1" }
`), HOST);
    expect(plan.devices).toEqual([
      { device: 'eth1', ports: [110, 143, 993], services: ['mail', 'pop'], ipv4: true, ipv6: true },
      { device: 'eth2', ports: [110, 143, 993], services: ['mail', 'pop'], ipv4: true, ipv6: false },
    ]);
    expect(plan.notes).toEqual([expect.stringMatching(/^lo: loopback, no rule/)]);
  });

  test('untagged: loopback internal, the rest external, so nothing is redirected', () => {
    const plan = interceptPlan(config(`admin: { listen: "off" }
services:
  - { name: mail, port: 1143, intercept: [143], destination: "mail.example:143" }
`), HOST);
    expect(plan.devices).toEqual([]);
    expect(plan.notes).toContain('service mail: intercept 143 not redirected: it listens on no internal interface');
  });

  test('a bind list covers the internal interfaces it names or holds an address of; a tagged interface the host lacks still gets its rule', () => {
    const plan = interceptPlan(config(`
interfaces: { eth1: internal, eth2: internal, wg0: internal }
admin: { listen: "off" }
services:
  - { name: a, port: 1001, bind: [eth2], intercept: [21], destination: "x.example:21" }
  - { name: b, port: 1002, bind: ["10.0.1.1"], intercept: [22], destination: "x.example:22" }
  - { name: c, port: 1003, bind: all, intercept: [23], destination: "x.example:23" }
  - { name: d, port: 1004, bind: [eth0], intercept: [24], destination: "x.example:24" }
`), HOST);
    expect(plan.devices).toEqual([
      { device: 'eth1', ports: [22, 23], services: ['b', 'c'], ipv4: true, ipv6: true },
      { device: 'eth2', ports: [21, 23], services: ['a', 'c'], ipv4: true, ipv6: false },
      { device: 'wg0', ports: [23], services: ['c'], ipv4: true, ipv6: true },
    ]);
    expect(plan.notes).toContain('service d: intercept 24 not redirected: it listens on no internal interface');
  });

  test('interface names: an address label becomes its device; anything beyond [A-Za-z0-9_.-] never reaches a rule', () => {
    const table: InterfaceTable = { ...HOST, 'eth1:1': [v4('10.0.9.1')] };
    const plan = interceptPlan(config(`
interfaces: { "eth1:1": internal, "evil\\"; flush ruleset; #": internal, "..": internal, "a-very-long-name-0": internal }
admin: { listen: "off" }
services:
  - { name: mail, port: 1143, intercept: [143], destination: "mail.example:143" }
`, table), table);
    expect(plan.devices.map((d) => d.device)).toEqual(['eth1']);
    const text = interceptRules(config(`
interfaces: { "evil\\"; flush ruleset; #": internal, "eth1": internal }
admin: { listen: "off" }
services:
  - { name: mail, port: 1143, intercept: [143], destination: "mail.example:143" }
`), { format: 'nftables', interfaces: HOST });
    // The name shows, defused, in a comment only: no quote, semicolon or space of it survives.
    expect(text).not.toContain('flush ruleset');
    expect(text).not.toContain('evil"');
    expect(text.split('\n').filter((l) => !l.startsWith('#') && l.includes('evil'))).toEqual([]);
    expect(text).toContain('skipped interface "evil??');
    for (const line of text.split('\n').filter((l) => l.includes('iifname'))) expect(line).toMatch(/iifname "[A-Za-z0-9_.-]+" /);
  });
});

describe('interceptRules: nftables', () => {
  const cfg = (): ReturnType<typeof config> => config(`${TAGGED}
  - { name: mail, port: 1143, intercept: [993, 143], destination: "mail.example:143" }
  - { name: ssh, port: 2222, bind: [eth2], intercept: [22], destination: "ssh.example:22" }
`);

  test('one table of its own, created idempotently; a nat prerouting chain at dstnat; a rule per interface', () => {
    const text = interceptRules(cfg(), { format: 'nftables', interfaces: HOST });
    const rules = text.split('\n').filter((l) => !l.trimStart().startsWith('#') && l.trim() !== '');
    expect(rules).toEqual([
      'table inet mapgate',
      'delete table inet mapgate',
      'table inet mapgate {',
      '\tchain prerouting {',
      '\t\ttype nat hook prerouting priority dstnat; policy accept;',
      '\t\tiifname "eth1" tcp dport { 143, 993 } redirect',
      '\t\tiifname "eth2" tcp dport { 22, 143, 993 } redirect',
      '\t}',
      '}',
    ]);
    expect(text.startsWith('#!/usr/sbin/nft -f\n')).toBe(true);
    expect(text).toMatch(/^# Load: +nft -f /m);
    expect(text).toMatch(/^# Remove: nft delete table inet mapgate$/m);
    expect(text).toMatch(/locally and pass through output, never prerouting/);
  });

  test('a single port: redirect to that port', () => {
    const text = interceptRules(config(`${TAGGED}
  - { name: mail, port: 1143, bind: [eth1], intercept: [143], destination: "mail.example:143" }
`), { format: 'nftables', interfaces: HOST });
    expect(text).toContain('\t\tiifname "eth1" tcp dport 143 redirect to :143\n');
    expect(text).not.toContain('eth2');
  });

  test('deterministic: the same text whatever the order of services and interfaces', () => {
    const shuffled: InterfaceTable = { eth2: HOST.eth2, eth0: HOST.eth0, eth1: HOST.eth1, lo: HOST.lo };
    const other = config(`
interfaces: { eth0: external, eth2: internal, eth1: internal }
admin: { listen: "off" }
services:
  - { name: ssh, port: 2222, bind: [eth2], intercept: [22], destination: "ssh.example:22" }
  - { name: mail, port: 1143, intercept: [143, 993], destination: "mail.example:143" }
`, shuffled);
    expect(interceptRules(other, { format: 'nftables', interfaces: shuffled })).toBe(interceptRules(cfg(), { format: 'nftables', interfaces: HOST }));
  });

  test('no service with intercept ports: no rule, a comment saying so, and a load that removes an earlier table', () => {
    const text = interceptRules(config(`${TAGGED}
  - { name: plain, port: 1200, destination: "x.example:1" }
`), { format: 'nftables', interfaces: HOST });
    expect(text).toContain('# Nothing is intercepted');
    expect(text).not.toContain('chain');
    expect(text).toContain('delete table inet mapgate\n');
  });

  test('no internal interface: a comment saying nothing is intercepted', () => {
    const text = interceptRules(config(`admin: { listen: "off" }
services:
  - { name: mail, port: 1143, intercept: [143], destination: "mail.example:143" }
`), { format: 'nftables', interfaces: HOST });
    expect(text).toContain('# Nothing is intercepted: no service has intercept ports on an internal interface.');
    expect(text).not.toContain('iifname');
  });
});

describe('interceptRules: iptables', () => {
  test('a MAPGATE nat chain jumped to from PREROUTING, REDIRECT per port; ip6tables for the interfaces with IPv6; removal in a comment', () => {
    const text = interceptRules(config(`${TAGGED}
  - { name: mail, port: 1143, intercept: [993, 143], destination: "mail.example:143" }
`), { format: 'iptables', interfaces: HOST });
    const commands = text.split('\n').filter((l) => !l.startsWith('#') && l !== '');
    expect(commands).toEqual([
      'set -e',
      'iptables -t nat -N MAPGATE 2>/dev/null || iptables -t nat -F MAPGATE',
      'iptables -t nat -C PREROUTING -j MAPGATE 2>/dev/null || iptables -t nat -A PREROUTING -j MAPGATE',
      'iptables -t nat -A MAPGATE -i eth1 -p tcp --dport 143 -j REDIRECT --to-ports 143',
      'iptables -t nat -A MAPGATE -i eth1 -p tcp --dport 993 -j REDIRECT --to-ports 993',
      'iptables -t nat -A MAPGATE -i eth2 -p tcp --dport 143 -j REDIRECT --to-ports 143',
      'iptables -t nat -A MAPGATE -i eth2 -p tcp --dport 993 -j REDIRECT --to-ports 993',
      'ip6tables -t nat -N MAPGATE 2>/dev/null || ip6tables -t nat -F MAPGATE',
      'ip6tables -t nat -C PREROUTING -j MAPGATE 2>/dev/null || ip6tables -t nat -A PREROUTING -j MAPGATE',
      'ip6tables -t nat -A MAPGATE -i eth1 -p tcp --dport 143 -j REDIRECT --to-ports 143',
      'ip6tables -t nat -A MAPGATE -i eth1 -p tcp --dport 993 -j REDIRECT --to-ports 993',
    ]);
    expect(text).toContain('#   iptables -t nat -D PREROUTING -j MAPGATE; iptables -t nat -F MAPGATE; iptables -t nat -X MAPGATE\n');
    expect(text).toContain('#   ip6tables -t nat -D PREROUTING -j MAPGATE; ip6tables -t nat -F MAPGATE; ip6tables -t nat -X MAPGATE\n');
  });

  test('IPv4 only: no ip6tables command', () => {
    const table: InterfaceTable = { lo: HOST.lo, eth2: HOST.eth2 };
    const text = interceptRules(config(`
interfaces: { eth2: internal }
admin: { listen: "off" }
services:
  - { name: ssh, port: 2222, intercept: [22], destination: "ssh.example:22" }
`, table), { format: 'iptables', interfaces: table });
    expect(text).toContain('iptables -t nat -A MAPGATE -i eth2 -p tcp --dport 22 -j REDIRECT --to-ports 22\n');
    expect(text.split('\n').filter((l) => l.startsWith('ip6tables'))).toEqual([]);
  });

  test('nothing to intercept: the chain an earlier run filled is emptied, nothing added', () => {
    const text = interceptRules(config(`${TAGGED}
  - { name: plain, port: 1200, destination: "x.example:1" }
`), { format: 'iptables', interfaces: HOST });
    expect(text.split('\n').filter((l) => !l.startsWith('#') && l !== '')).toEqual([
      'set -e',
      'iptables -t nat -F MAPGATE 2>/dev/null || true',
      'ip6tables -t nat -F MAPGATE 2>/dev/null || true',
    ]);
    expect(text).toContain('# Nothing is intercepted');
  });
});
