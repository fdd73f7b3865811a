import type { NetworkInterfaceInfo } from 'node:os';
import { interfaceTag, resolveBind, type InterfaceTable } from '../../src/config/bind';

function nic(address: string, internal = false): NetworkInterfaceInfo {
  const v6 = address.includes(':');
  return { address, netmask: v6 ? 'ffff:ffff:ffff:ffff::' : '255.255.255.0', family: v6 ? 'IPv6' : 'IPv4', mac: '00:00:00:00:00:00', internal, cidr: null, ...(v6 ? { scopeid: 0 } : {}) } as NetworkInterfaceInfo;
}

const host: InterfaceTable = {
  lo: [nic('127.0.0.1', true), nic('::1', true)],
  eth0: [nic('203.0.113.10'), nic('2001:db8::10')],
  eth1: [nic('10.0.0.1'), nic('fe80::1')],
};

describe('interface tags and bindings', () => {
  test('untagged: loopback is internal, everything else external', () => {
    expect(interfaceTag('lo', host.lo!, {})).toBe('internal');
    expect(interfaceTag('eth0', host.eth0!, {})).toBe('external');
    expect(interfaceTag('eth0', host.eth0!, { eth0: 'internal' })).toBe('internal');
    expect(interfaceTag('lo', host.lo!, { lo: 'external' })).toBe('external');
  });

  test('bind: internal covers every address of internal interfaces, IPv4 and IPv6, never an external one', () => {
    expect(resolveBind({ kind: 'internal' }, {}, host)).toEqual(['127.0.0.1', '::1']);
    // eth1 tagged internal: its link-local address carries its zone so it can be bound.
    expect(resolveBind({ kind: 'internal' }, { eth1: 'internal', eth0: 'external' }, host))
      .toEqual(['10.0.0.1', '127.0.0.1', '::1', 'fe80::1%eth1']);
    const all = resolveBind({ kind: 'internal' }, { eth1: 'internal' }, host);
    expect(all.filter((a) => a.startsWith('203.') || a.startsWith('2001:'))).toEqual([]);
  });

  test('an explicit list may name an external interface, and literal addresses', () => {
    expect(resolveBind({ kind: 'list', interfaces: ['eth0'], addresses: ['127.0.0.5'] }, {}, host))
      .toEqual(['127.0.0.5', '2001:db8::10', '203.0.113.10']);
    expect(resolveBind({ kind: 'list', interfaces: ['missing'], addresses: [] }, {}, host)).toEqual([]);
  });

  test('bind: all is the dual-stack wildcard, or IPv4 only on a host without IPv6', () => {
    expect(resolveBind({ kind: 'all' }, {}, host)).toEqual(['::']);
    expect(resolveBind({ kind: 'all' }, {}, { lo: [nic('127.0.0.1', true)] })).toEqual(['0.0.0.0']);
  });

  test('a host whose internal interfaces have no address resolves to nothing (start-up then fails)', () => {
    expect(resolveBind({ kind: 'internal' }, {}, { eth0: host.eth0 })).toEqual([]);
  });
});
