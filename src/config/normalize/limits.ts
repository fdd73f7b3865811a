import type { Limits, RateLimit } from '../types';
import { isObj } from './values';

const PER_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000 };

export const NO_LIMITS: Limits = Object.freeze({ perSource: null, perUser: null, rate: null });

/** `20/s` → 20 per 1000 ms; the schema checked the form. */
function rate(text: string): RateLimit {
  const slash = text.indexOf('/');
  return Object.freeze({ count: Number(text.slice(0, slash)), perMs: PER_MS[text.slice(slash + 1)], text });
}

/**
 * A `limits` section over the limits it inherits (`defaults.limits`, or none): each key it gives
 * replaces the inherited one, `off` removes it.
 */
export function limitsConfig(value: unknown, inherited: Limits = NO_LIMITS): Limits {
  if (!isObj(value)) return inherited;
  const count = (v: unknown, base: number | null): number | null => (v === 'off' ? null : typeof v === 'number' ? v : base);
  return Object.freeze({
    perSource: count(value.perSource, inherited.perSource),
    perUser: count(value.perUser, inherited.perUser),
    rate: value.rate === 'off' ? null : typeof value.rate === 'string' ? rate(value.rate) : inherited.rate,
  });
}
