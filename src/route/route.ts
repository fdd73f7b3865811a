import type { Destination, MappingRule, ServiceConfig } from '../config/types';
import { anyContains, type ClientAddress } from '../config/cidr';
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

/**
 * Routes a connection: the first mapping whose given keys (`user`, `source`, `sni`, and
 * `schedule` open at `now`) all hold wins; otherwise the service's default destination; with
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
    if (rule.action === 'reject') return { action: 'reject', rule, reason: 'rejected' };
    return { action: 'forward', rule, destinations: rule.destinations };
  }
  if (service.destinations.length === 0) return { action: 'reject', rule: null, reason: 'no-route' };
  return { action: 'forward', rule: null, destinations: service.destinations };
}
