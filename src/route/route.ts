import type { Destination, MappingRule, ServiceConfig, User } from '../config/types';
import { anyContains, type ClientAddress } from './cidr';

/** The outcome of routing one connection. */
export type Route =
  | { readonly action: 'forward'; readonly user: string | null; readonly rule: MappingRule | null; readonly destinations: readonly Destination[] }
  | { readonly action: 'reject'; readonly user: string | null; readonly rule: MappingRule | null; readonly reason: 'rejected' | 'no-route' };

/** The first user whose sources contain the client address, or null. */
export function findUser(users: readonly User[], client: ClientAddress | null): string | null {
  if (client === null) return null;
  for (let i = 0; i < users.length; i++) if (anyContains(users[i].sources, client)) return users[i].name;
  return null;
}

/**
 * Routes a connection: the first mapping whose given keys (`user`, `source`) all hold wins;
 * otherwise the service's default destination; with neither, a `no-route` reject.
 * Pure: same inputs, same answer.
 */
export function route(service: ServiceConfig, users: readonly User[], client: ClientAddress | null): Route {
  const user = findUser(users, client);
  const rules = service.mappings;
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i];
    if (rule.user !== null && rule.user !== user) continue;
    if (rule.sources !== null && (client === null || !anyContains(rule.sources, client))) continue;
    if (rule.action === 'reject') return { action: 'reject', user, rule, reason: 'rejected' };
    return { action: 'forward', user, rule, destinations: rule.destinations };
  }
  if (service.destinations.length === 0) return { action: 'reject', user, rule: null, reason: 'no-route' };
  return { action: 'forward', user, rule: null, destinations: service.destinations };
}
