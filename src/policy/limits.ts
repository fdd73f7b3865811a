import { LazyLru } from '../lru';
import type { Limits, RateLimit } from '../config/types';

/** Which limit refused a connection. */
export type LimitName = 'rate' | 'per-source' | 'per-user';

/**
 * A connection the limiter let in. Call `release()` when it closes; a second call does nothing,
 * so a cleanup path that runs twice cannot take someone else's slot.
 */
export interface Admission {
  release(): void;
}

/**
 * Admitted while the config in force had no limit at all: nothing was counted, so there is
 * nothing to give back. One shared object, so the unlimited path allocates nothing.
 */
const UNCOUNTED: Admission = Object.freeze({ release(): void {} });

/**
 * A token bucket in integer units: one token is `perMs` units, capacity is `count * perMs`, and
 * each elapsed ms adds `count` units. With whole-ms clocks the arithmetic stays exact, so "2/s,
 * 500 ms later" is exactly one token, not 0.9999… after a few fractional refills.
 */
interface Bucket {
  level: number;
  /** When `level` was last brought up to date (ms, the caller's clock). */
  at: number;
  /** The rate `level` is measured in; a reload may bring another. */
  rate: RateLimit;
}

function decrement(open: Map<string, number>, key: string): void {
  const n = open.get(key);
  if (n === undefined) return;
  // Zero entries are deleted, so the maps hold only keys with a connection open.
  if (n <= 1) open.delete(key);
  else open.set(key, n - 1);
}

class CountedAdmission implements Admission {
  private done = false;
  constructor(
    private readonly bySource: Map<string, number>,
    private readonly byUser: Map<string, number>,
    private readonly source: string,
    private readonly user: string | null,
  ) {}

  release(): void {
    if (this.done) return;
    this.done = true;
    decrement(this.bySource, this.source);
    if (this.user !== null) decrement(this.byUser, this.user);
  }
}

/**
 * Connection limits of one service: a rate of new connections per client address, and caps on
 * open connections per address and per user. One Limiter lives across config reloads, so each
 * call takes the `Limits` in force at that moment.
 *
 * Open-connection counts live in plain Maps, never evicted: they are bounded by the connections
 * open, which the service's own `maxConnections` caps, and losing one would let a client past its
 * cap (or, on release, push a count below zero). Only rate buckets sit in an LRU of fixed size,
 * because every address that ever connected has one; evicting an idle address's bucket just gives
 * it a full bucket later, and an address that keeps connecting keeps its bucket recent.
 *
 * Reloads: an admission remembers whether it was counted, and `release()` undoes exactly that.
 * Every admission under a config with any limit counts its address and its user (both, whichever
 * limits are set), so turning `perSource` or `perUser` on by a reload sees the connections opened
 * under a config that had any other limit. Only connections opened while the service had no limit
 * at all (the fast path, no map work) are not counted, and a limit turned on later ignores them
 * until they close. Turning limits off leaves counted connections to release their own counts.
 */
export class Limiter {
  private readonly buckets: LazyLru<string, Bucket>;
  private readonly bySource = new Map<string, number>();
  private readonly byUser = new Map<string, number>();

  /** @param maxSources rate buckets kept at most (one per client address), least recently used evicted. */
  constructor(maxSources = 16_384) {
    this.buckets = new LazyLru(maxSources);
  }

  /**
   * Decides on one new connection from `source` (the client address as the gateway believes it),
   * identified as `user` (null: nobody; never limited per user), at `now` (ms, any clock that does
   * not go back). Checks in order: `rate` (every attempt that gets this far takes a token if there
   * is one), `per-source`, `per-user`. Returns the limit that refused, or an Admission: the
   * connection then counts as open for its source and user until its `release()`. A refused
   * attempt counts nothing open.
   */
  admit(limits: Limits, source: string, user: string | null, now: number): Admission | LimitName {
    const { rate, perSource, perUser } = limits;
    if (rate === null && perSource === null && perUser === null) return UNCOUNTED;
    if (rate !== null && !this.take(rate, source, now)) return 'rate';
    const fromSource = this.bySource.get(source) ?? 0;
    if (perSource !== null && fromSource >= perSource) return 'per-source';
    const ofUser = user === null ? 0 : this.byUser.get(user) ?? 0;
    if (perUser !== null && user !== null && ofUser >= perUser) return 'per-user';
    this.bySource.set(source, fromSource + 1);
    if (user !== null) this.byUser.set(user, ofUser + 1);
    return new CountedAdmission(this.bySource, this.byUser, source, user);
  }

  /** Rate buckets held (at most maxSources), for a metric showing the memory stays bounded. */
  get trackedSources(): number {
    return this.buckets.size;
  }

  /** Client addresses with at least one counted connection open. */
  get openSources(): number {
    return this.bySource.size;
  }

  /** Users with at least one counted connection open. */
  get openUsers(): number {
    return this.byUser.size;
  }

  /** Takes one token from `source`'s bucket; false when there is none. */
  private take(rate: RateLimit, source: string, now: number): boolean {
    // get() refreshes recency: an address that keeps connecting is never the one evicted.
    let b = this.buckets.get(source);
    if (b === undefined) {
      b = { level: rate.count * rate.perMs, at: now, rate };
      this.buckets.set(source, b);
    } else {
      refill(b, now);
      if (b.rate !== rate) rescale(b, rate);
    }
    if (b.level < rate.perMs) return false;
    b.level -= rate.perMs;
    return true;
  }
}

/** Brings `b` up to `now` at its own rate; a clock that went back adds nothing. */
function refill(b: Bucket, now: number): void {
  const elapsed = now - b.at;
  if (elapsed <= 0) return;
  const { count, perMs } = b.rate;
  // An empty bucket fills in perMs; clamping first keeps elapsed * count small and exact.
  b.level = elapsed >= perMs ? count * perMs : Math.min(count * perMs, b.level + elapsed * count);
  b.at = now;
}

/**
 * A reload brought another rate: keep the tokens the address has (capped at the new burst)
 * rather than hand it a full bucket, so reloading does not reset a flood's limit.
 */
function rescale(b: Bucket, rate: RateLimit): void {
  if (rate.count !== b.rate.count || rate.perMs !== b.rate.perMs) {
    b.level = Math.min(rate.count * rate.perMs, (b.level * rate.perMs) / b.rate.perMs);
  }
  b.rate = rate;
}
