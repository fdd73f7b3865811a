import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import type { GatewayConfig, ServiceConfig } from '../config/types';
import { interfaceTag, WILDCARDS, type InterfaceTable } from '../config/bind';

export type { InterfaceTable } from '../config/bind';

/** What `interceptRules` writes: an `nft -f` file, or a `sh` script of iptables/ip6tables commands. */
export type RulesFormat = 'nftables' | 'iptables';

export interface InterceptRulesOptions {
  readonly format: RulesFormat;
  /** The host's interfaces (`os.networkInterfaces()` when absent): which are loopback, which addresses they hold. */
  readonly interfaces?: InterfaceTable;
}

/** One internal interface and the intercept ports redirected when they arrive on it. */
export interface InterceptDevice {
  /** The kernel's device name (an address label `eth0:1` is device `eth0`). */
  readonly device: string;
  /** Ascending, no duplicates. */
  readonly ports: readonly number[];
  /** The services owning those ports, sorted. */
  readonly services: readonly string[];
  /** Address families seen on it; both when the host does not list it (no address yet). */
  readonly ipv4: boolean;
  readonly ipv6: boolean;
}

export interface InterceptPlan {
  /** Sorted by device name. */
  readonly devices: readonly InterceptDevice[];
  /** Why something asked for is not redirected, for comments in the output (sorted, safe characters only). */
  readonly notes: readonly string[];
}

/** The chain (iptables) or table (nftables) name the rules live in, and nothing else. */
export const NFT_TABLE = 'mapgate';
export const IPTABLES_CHAIN = 'MAPGATE';

/** A Linux device name that may be written into a rule unquoted: at most 15 of [A-Za-z0-9_.-], not `.` or `..`. */
const DEVICE_NAME = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,15}$/;

/** Text for a comment: anything but [A-Za-z0-9_.-] becomes `?`, so no name can end a comment or start a command. */
function safe(text: string): string {
  return text.replace(/[^A-Za-z0-9_.-]/g, '?').slice(0, 64);
}

function isLoopback(name: string, infos: readonly NetworkInterfaceInfo[]): boolean {
  return name === 'lo' || (infos.length > 0 && infos.every((i) => i.internal));
}

/** Whether `svc`'s listeners include the addresses of interface `name` (so a redirect arriving there lands on one). */
function covers(svc: ServiceConfig, name: string, infos: readonly NetworkInterfaceInfo[]): boolean {
  const bind = svc.bind;
  if (bind.kind !== 'list') return true; // internal: every internal interface; all: the wildcard
  if (bind.interfaces.includes(name)) return true;
  return bind.addresses.some((a) => WILDCARDS.has(a) || infos.some((i) => i.address === a.replace(/%.*$/, '')));
}

/**
 * Which intercept ports are redirected on which interfaces: every interface tagged internal (the
 * config's `interfaces`, else loopback internal and the rest external, as `bind: internal` reads
 * them) whose addresses the service listens on. Pure; never throws. Loopback is left out: what
 * arrives on it is the host's own traffic, whose NAT is decided in output, never in prerouting.
 */
export function interceptPlan(config: GatewayConfig, table: InterfaceTable): InterceptPlan {
  const notes = new Set<string>();
  const names = [...new Set([...Object.keys(config.interfaces), ...Object.keys(table)])].sort();
  const byDevice = new Map<string, { ports: Set<number>; services: Set<string>; ipv4: boolean; ipv6: boolean }>();
  const services = config.services.filter((s) => s.intercept.length > 0);
  const redirected = new Set<string>();
  for (const name of names) {
    const infos = table[name] ?? [];
    if (interfaceTag(name, infos, config.interfaces) !== 'internal') continue;
    if (isLoopback(name, infos)) {
      if (services.length > 0) notes.add(`${safe(name)}: loopback, no rule: its traffic is the host's own and never passes prerouting`);
      continue;
    }
    // An address label (`eth0:1`, as getifaddrs names an IPv4 alias) is not a device `iifname` matches.
    const device = name.includes(':') ? name.slice(0, name.indexOf(':')) : name;
    if (!DEVICE_NAME.test(device)) {
      notes.add(`skipped interface "${safe(name)}": not a Linux interface name (only A-Z a-z 0-9 _ . - are written into rules)`);
      continue;
    }
    for (const svc of services) {
      if (!covers(svc, name, infos)) continue;
      const ports = svc.intercept.filter((p) => p > 0);
      if (ports.length === 0) continue;
      let d = byDevice.get(device);
      if (!d) {
        d = { ports: new Set(), services: new Set(), ipv4: false, ipv6: false };
        byDevice.set(device, d);
      }
      for (const p of ports) d.ports.add(p);
      d.services.add(svc.name);
      d.ipv4 ||= infos.length === 0 || infos.some((i) => i.family === 'IPv4');
      d.ipv6 ||= infos.length === 0 || infos.some((i) => i.family === 'IPv6');
      redirected.add(svc.name);
    }
  }
  for (const svc of services) {
    if (svc.intercept.includes(0)) notes.add(`service ${safe(svc.name)}: intercept port 0 is picked by the system at start: it cannot be redirected`);
    if (!redirected.has(svc.name) && svc.intercept.some((p) => p > 0)) {
      notes.add(`service ${safe(svc.name)}: intercept ${svc.intercept.filter((p) => p > 0).join(', ')} not redirected: it listens on no internal interface`);
    }
  }
  const devices = [...byDevice.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([device, d]): InterceptDevice => ({
    device,
    ports: [...d.ports].sort((a, b) => a - b),
    services: [...d.services].sort(),
    ipv4: d.ipv4,
    ipv6: d.ipv6,
  }));
  return { devices, notes: [...notes].sort() };
}

const WHAT = [
  'Connections that arrive on an internal interface for an intercept port, whatever address they',
  'are for, are redirected to this host on the same port: to the service\'s intercept listener on the',
  'arriving interface\'s address (its first one; for IPv6 one of the same scope), which `bind:',
  'internal` and `bind: all` listen on. The mapping then decides where they go.',
  'Prerouting only: the gateway\'s own connections (to its upstreams, on any port) are generated',
  'locally and pass through output, never prerouting, so they are left alone; so is whatever',
  'arrives on external interfaces.',
];

function summaryLines(plan: InterceptPlan): string[] {
  const lines: string[] = [];
  if (plan.devices.length === 0) lines.push('Nothing is intercepted: no service has intercept ports on an internal interface.');
  for (const d of plan.devices) lines.push(`${d.device}: ${d.ports.join(', ')} (${d.services.map(safe).join(', ')})`);
  for (const n of plan.notes) lines.push(`note: ${n}`);
  return lines;
}

function comment(lines: readonly string[], indent = ''): string[] {
  return lines.map((l) => (l === '' ? `${indent}#` : `${indent}# ${l}`));
}

function nftables(plan: InterceptPlan): string {
  const out = [
    '#!/usr/sbin/nft -f',
    ...comment([
      'mapgate intercept rules (nftables), written by `mapgate intercept-rules`.',
      'Load:   nft -f THIS-FILE        (or: mapgate intercept-rules -c mappings.yaml | nft -f -)',
      `Remove: nft delete table inet ${NFT_TABLE}`,
      `Everything lives in the table inet ${NFT_TABLE}; loading again replaces it (nft -f is atomic).`,
      'Needs nftables and a kernel with nat in inet tables (Linux 5.2 or later).',
      '',
      ...WHAT,
      '',
      ...summaryLines(plan),
    ]),
    '',
    '# Created if absent, then deleted with whatever it held: loading twice leaves one copy.',
    `table inet ${NFT_TABLE}`,
    `delete table inet ${NFT_TABLE}`,
  ];
  if (plan.devices.length > 0) {
    out.push('', `table inet ${NFT_TABLE} {`, '\tchain prerouting {', '\t\ttype nat hook prerouting priority dstnat; policy accept;');
    for (const d of plan.devices) {
      out.push(`\t\t# ${d.services.map(safe).join(', ')}`);
      // `redirect` without `to` keeps each connection's port: the intercept listener's, for every port of the set.
      out.push(d.ports.length === 1
        ? `\t\tiifname "${d.device}" tcp dport ${d.ports[0]} redirect to :${d.ports[0]}`
        : `\t\tiifname "${d.device}" tcp dport { ${d.ports.join(', ')} } redirect`);
    }
    out.push('\t}', '}');
  }
  return out.join('\n') + '\n';
}

function iptables(plan: InterceptPlan): string {
  const tools = [
    ['iptables', plan.devices.filter((d) => d.ipv4)],
    ['ip6tables', plan.devices.filter((d) => d.ipv6)],
  ] as const;
  const used = tools.filter(([, devices]) => devices.length > 0);
  const removal = (used.length > 0 ? used : tools.slice(0, 1)).map(([tool]) =>
    `  ${tool} -t nat -D PREROUTING -j ${IPTABLES_CHAIN}; ${tool} -t nat -F ${IPTABLES_CHAIN}; ${tool} -t nat -X ${IPTABLES_CHAIN}`);
  const out = [
    '#!/bin/sh',
    ...comment([
      'mapgate intercept rules (iptables), written by `mapgate intercept-rules --iptables`.',
      'Load:   sh THIS-FILE            (or: mapgate intercept-rules -c mappings.yaml --iptables | sh)',
      'Remove:',
      ...removal,
      `Everything lives in the nat chain ${IPTABLES_CHAIN}, jumped to from PREROUTING; running this again`,
      'empties and refills it.',
      '',
      ...WHAT,
      '',
      ...summaryLines(plan),
    ]),
    'set -e',
  ];
  if (used.length === 0) {
    // Nothing to redirect: empty a copy an earlier run left, if any.
    for (const [tool] of tools) out.push(`${tool} -t nat -F ${IPTABLES_CHAIN} 2>/dev/null || true`);
  }
  for (const [tool, devices] of used) {
    out.push(
      '',
      `${tool} -t nat -N ${IPTABLES_CHAIN} 2>/dev/null || ${tool} -t nat -F ${IPTABLES_CHAIN}`,
      `${tool} -t nat -C PREROUTING -j ${IPTABLES_CHAIN} 2>/dev/null || ${tool} -t nat -A PREROUTING -j ${IPTABLES_CHAIN}`,
    );
    for (const d of devices) {
      out.push(`# ${d.services.map(safe).join(', ')}`);
      for (const p of d.ports) out.push(`${tool} -t nat -A ${IPTABLES_CHAIN} -i ${d.device} -p tcp --dport ${p} -j REDIRECT --to-ports ${p}`);
    }
  }
  return out.join('\n') + '\n';
}

/**
 * The firewall rules that redirect each service's intercept ports, arriving on the interfaces
 * tagged internal, to the gateway's intercept listener on the same port; see {@link interceptPlan}
 * for which interfaces. Deterministic (sorted) for a given config and interface table; only
 * [A-Za-z0-9_.-] of an interface name ever reaches the text. Never throws.
 */
export function interceptRules(config: GatewayConfig, options: InterceptRulesOptions): string {
  const plan = interceptPlan(config, options.interfaces ?? networkInterfaces());
  return options.format === 'iptables' ? iptables(plan) : nftables(plan);
}
