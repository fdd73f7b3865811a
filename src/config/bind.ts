import { existsSync } from 'node:fs';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import type { BindSpec } from './types';

export type InterfaceTable = NodeJS.Dict<NetworkInterfaceInfo[]>;
export type InterfaceTags = Readonly<Record<string, 'internal' | 'external'>>;

/** The wildcard addresses `bind: all` resolves to. */
export const WILDCARDS: ReadonlySet<string> = new Set(['::', '0.0.0.0']);

/** The usage tag of an interface: its configured tag, else internal for loopback, external otherwise. */
export function interfaceTag(name: string, infos: readonly NetworkInterfaceInfo[], tags: InterfaceTags): 'internal' | 'external' {
  const tag = tags[name];
  if (tag) return tag;
  return infos.length > 0 && infos.every((i) => i.internal) ? 'internal' : 'external';
}

function addressOf(name: string, info: NetworkInterfaceInfo): string {
  // Link-local IPv6 needs its zone to be bindable.
  return info.family === 'IPv6' && info.address.toLowerCase().startsWith('fe80:') ? `${info.address}%${name}` : info.address;
}

/**
 * The addresses a bind spec listens on, given the host's interfaces. Never returns an
 * address of an external-tagged interface unless the spec names that interface or address.
 */
export function resolveBind(spec: BindSpec, tags: InterfaceTags, table: InterfaceTable = networkInterfaces()): string[] {
  const out = new Set<string>();
  if (spec.kind === 'all') {
    const hasV6 = Object.values(table).some((infos) => infos?.some((i) => i.family === 'IPv6'));
    out.add(hasV6 ? '::' : '0.0.0.0');
  } else if (spec.kind === 'internal') {
    for (const [name, infos] of Object.entries(table)) {
      if (!infos || interfaceTag(name, infos, tags) !== 'internal') continue;
      for (const info of infos) out.add(addressOf(name, info));
    }
  } else {
    for (const name of spec.interfaces) for (const info of table[name] ?? []) out.add(addressOf(name, info));
    for (const address of spec.addresses) out.add(address);
  }
  return [...out].sort();
}

/** A Linux interface name: at most 15 characters, no `/`, never `.` or `..`. */
const INTERFACE_NAME = /^(?!\.{1,2}$)[A-Za-z0-9_.:@-]{1,15}$/;

/**
 * Whether `name` is an interface of this host: one with addresses (in `table`), or one that exists
 * without any (`/sys/class/net/<name>`: a link that is down, a DHCP lease not yet got), which a
 * service may bind by name and gets listeners on once it has an address.
 */
export function interfaceExists(name: string, table: InterfaceTable): boolean {
  return table[name] !== undefined || (INTERFACE_NAME.test(name) && existsSync(`/sys/class/net/${name}`));
}
