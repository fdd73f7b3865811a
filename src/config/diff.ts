import type { GatewayConfig, ServiceConfig } from './types';

/** Services compare equal when their normalized configs do (PEM text included). */
export function sameService(a: ServiceConfig, b: ServiceConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** What a new config does to the services of the running one, by name. */
export interface ServiceDiff {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly changed: readonly string[];
}

export function diffServices(before: GatewayConfig, next: GatewayConfig): ServiceDiff {
  const old = new Map(before.services.map((s) => [s.name, s]));
  const names = new Set(next.services.map((s) => s.name));
  return {
    added: next.services.filter((s) => !old.has(s.name)).map((s) => s.name),
    removed: [...old.keys()].filter((n) => !names.has(n)),
    changed: next.services.filter((s) => old.has(s.name) && !sameService(old.get(s.name)!, s)).map((s) => s.name),
  };
}
