import type { Destination, MappingRule, ServiceConfig, TargetPattern } from '../config/types';
import { anyContains, cidrContains, type ClientAddress } from '../config/cidr';
import type { SocksTarget } from '../front/stage';
import { hostPortLabel } from '../config/parse-values';
import { isOpen } from '../policy/schedule';

/** What routing looks at: who the client is, where it comes from, what it asked for. */
export interface RouteRequest {
  /** The client address as the gateway believes it (the socket's, or a trusted PROXY header's). */
  readonly client: ClientAddress | null;
  /** The user the client was identified as (see `identify`), or null. */
  readonly user: string | null;
  /** The TLS server name the client asked for on a TLS binding, lower case, or null. */
  readonly sni: string | null;
  /** The time (ms since the epoch) mappings with a schedule are matched at. */
  readonly now: number;
  /** SOCKS: where the client asked to go; mappings' `to` match it. Absent or null elsewhere. */
  readonly target?: SocksTarget | null;
}

/** The outcome of routing one connection. */
export type Route =
  | { readonly action: 'forward'; readonly rule: MappingRule | null; readonly destinations: readonly Destination[] }
  | { readonly action: 'reject'; readonly rule: MappingRule | null; readonly reason: 'rejected' | 'no-route' };

/** Whether `name` (lower case) is `pattern`, or one label under a `*.` pattern. */
export function sniMatches(pattern: string, name: string): boolean {
  if (pattern.startsWith('*.')) {
    const dot = name.indexOf('.');
    return dot > 0 && name.slice(dot) === pattern.slice(1);
  }
  return pattern === name;
}

function anySni(patterns: readonly string[], name: string | null): boolean {
  if (name === null) return false;
  for (let i = 0; i < patterns.length; i++) if (sniMatches(patterns[i], name)) return true;
  return false;
}

/** Whether a mapping's `to` pattern allows the requested destination. */
export function targetMatches(p: TargetPattern, t: SocksTarget): boolean {
  if (p.port !== null && p.port !== t.port) return false;
  if (p.cidr !== null) return t.address !== null && cidrContains(p.cidr, t.address);
  const host = p.host!;
  if (host === '*') return true;
  // Names match names: an address the client sent is not matched by a host pattern.
  if (t.address !== null && t.address.text === t.host) return false;
  if (host.startsWith('*.')) return t.host.length > host.length - 1 && t.host.endsWith(host.slice(1));
  return host === t.host;
}

function anyTarget(patterns: readonly TargetPattern[], t: SocksTarget | null): boolean {
  if (t === null) return false;
  for (let i = 0; i < patterns.length; i++) if (targetMatches(patterns[i], t)) return true;
  return false;
}

/** Where a SOCKS client asked to go, as a destination: the address the gateway resolved, or the name. */
function requestedDestination(t: SocksTarget): Destination {
  const host = t.address?.text ?? t.host;
  return { host, port: t.port, tls: null, proxyProtocol: null, label: host === t.host ? t.label : hostPortLabel(host, t.port) };
}

/**
 * Routes a connection: the first mapping whose given keys (`user`, `source`, `sni`,
 * `schedule` open at `now`, and for SOCKS `to`) all hold wins; otherwise the service's default destination; with
 * neither, a `no-route` reject. Pure: same inputs, same answer.
 */
export function route(service: ServiceConfig, request: RouteRequest): Route {
  const { client, user, sni, now } = request;
  const rules = service.mappings;
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i];
    if (rule.user !== null && rule.user !== user) continue;
    if (rule.sources !== null && (client === null || !anyContains(rule.sources, client))) continue;
    if (rule.sni !== null && !anySni(rule.sni, sni)) continue;
    if (rule.schedule !== null && !isOpen(rule.schedule, now)) continue;
    if (rule.to !== null && !anyTarget(rule.to, request.target ?? null)) continue;
    if (rule.action === 'reject') return { action: 'reject', rule, reason: 'rejected' };
    // A SOCKS mapping without a destination of its own sends the client where it asked.
    if (rule.destinations.length === 0) return { action: 'forward', rule, destinations: [requestedDestination(request.target!)] };
    return { action: 'forward', rule, destinations: rule.destinations };
  }
  if (service.destinations.length === 0) return { action: 'reject', rule: null, reason: 'no-route' };
  return { action: 'forward', rule: null, destinations: service.destinations };
}
