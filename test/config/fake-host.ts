import type { NetworkInterfaceInfo } from 'node:os';
import type { InterfaceTable } from '../../src/config/bind';

function iface(address: string, internal = false): NetworkInterfaceInfo {
  return address.includes(':')
    ? { address, netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal, cidr: `${address}/64`, scopeid: 0 }
    : { address, netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal, cidr: `${address}/24` };
}

/** A fake os.networkInterfaces(): loopback, an internal LAN leg (eth1) and an external one (eth0). */
export const FAKE_INTERFACES: InterfaceTable = {
  lo: [iface('127.0.0.1', true), iface('::1', true)],
  eth1: [iface('10.0.0.1'), iface('fd00::1')],
  eth0: [iface('192.0.2.10')],
};
