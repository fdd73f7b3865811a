import { LazyLru } from '../lru';
import { ipv6Text, parseClientAddress } from '../config/cidr';

/** How failed logins are limited (see LoginFailures). */
export interface LoginFailureLimits {
  /** Failures from one source within `windowMs` that block it. */
  readonly failures: number;
  readonly windowMs: number;
  /** How long a blocked source's logins are refused without being checked. */
  readonly blockMs: number;
  /** Sources tracked at most; the least recently failing is forgotten first. */
  readonly sources: number;
}

/**
 * 5 failed logins from one source within a minute block it for a minute: a person who mistyped
 * has four more tries; a guesser gets at most 5 guesses a minute per source (plus the few
 * already waiting for their scrypt when the fifth fails: PasswordChecker runs two at a time and
 * asks again before each). 10,000 sources of about 100 bytes each: about 1 MB at most.
 */
export const LOGIN_FAILURE_LIMITS: LoginFailureLimits = Object.freeze({ failures: 5, windowMs: 60_000, blockMs: 60_000, sources: 10_000 });

interface Entry {
  count: number;
  /** When the window counting `count` began (the first failure in it). */
  since: number;
  /** Refused until then (ms); 0: not blocked. */
  blockedUntil: number;
}

/**
 * Failed logins counted per source address, in an LRU of fixed size. An IPv6 source counts by
 * its /64, which one host usually has whole (RFC 7421): a guesser cannot take a fresh address
 * for every try. A success does not clear the count, so a client that knows one login cannot
 * use it to reset the count while it guesses another. The block is not extended by attempts made
 * while blocked: a client retrying in a loop with a stale password gets in again once it is fixed.
 * Process-wide, so one source's failures count on every SOCKS service, and across reloads.
 */
export class LoginFailures {
  private readonly bySource: LazyLru<string, Entry>;

  constructor(private readonly limits: LoginFailureLimits = LOGIN_FAILURE_LIMITS, private readonly now: () => number = Date.now) {
    this.bySource = new LazyLru(limits.sources);
  }

  /** Whether logins from `source` (the client address as the gateway believes it) are refused now. */
  blocked(source: string): boolean {
    const key = sourceKey(source);
    const e = this.bySource.peek(key);
    if (e === undefined || e.blockedUntil === 0) return false;
    if (e.blockedUntil > this.now()) return true;
    // The block is over: start afresh.
    this.bySource.delete(key);
    return false;
  }

  /** Counts one failed login from `source`; true when that blocked it. */
  failed(source: string): boolean {
    const key = sourceKey(source);
    const now = this.now();
    let e = this.bySource.get(key);
    if (e === undefined || now - e.since >= this.limits.windowMs) {
      e = { count: 0, since: now, blockedUntil: 0 };
      this.bySource.set(key, e);
    }
    e.count++;
    if (e.count < this.limits.failures || e.blockedUntil > now) return false;
    e.blockedUntil = now + this.limits.blockMs;
    // A block outlasts the window it was counted in: keep it whole.
    e.since = now;
    return true;
  }

  /** Forgets every source. */
  clear(): void {
    this.bySource.clear();
  }

  /** Sources tracked (at most `limits.sources`). */
  get size(): number {
    return this.bySource.size;
  }
}

/** An IPv4 source as it is; an IPv6 one as its /64. */
export function sourceKey(source: string): string {
  const a = parseClientAddress(source);
  if (a === null || a.family === 4) return a?.text ?? source;
  return `${ipv6Text([a.words[0], a.words[1], 0, 0])}/64`;
}
