import type { ClientDisconnectEvent, DisconnectReason } from '../events/events';

/**
 * What the console shows beyond counts: rates now, the last minute, 15 minutes of history and
 * the last closed connections. One sampler per gateway process takes a sample a second
 * (unref'd, from start to close); `/status` reads what it has, so a page opened late still gets
 * the whole history. With workers each process samples its own connections and the primary
 * adds them up ({@link mergeTraffic}).
 */

/** One chart point a second, this many. */
export const HISTORY_SECONDS = 900;
/** Rates "now" are averaged over this many seconds. */
export const RATE_SECONDS = 5;
/** Closed connections the console lists. */
export const RECENT_CLOSED = 100;
const MINUTE = 60;
/** Seconds the timer skipped that the history fills with the next sample's values. */
const MAX_REPEATED = 3;

/** Refused before any upstream was dialled (tls-failed too, when the client's handshake failed). */
const REJECTED: ReadonlySet<DisconnectReason> = new Set<DisconnectReason>(['rejected', 'limit', 'no-route', 'handshake-timeout', 'proxy-protocol', 'socks', 'auth-failed']);
/** The upstream could not be reached (tls-failed too, when its handshake failed). */
const FAILED: ReadonlySet<DisconnectReason> = new Set<DisconnectReason>(['connect-failed', 'connect-timeout']);

/** An open connection as the sampler reads it; the sampler writes its rates. */
export interface SampledConnection {
  readonly service: string;
  bytesFromClient(): number;
  bytesToClient(): number;
  /** Bytes at the previous sample. */
  sampledFromClient: number;
  sampledToClient: number;
  /** Bytes per second over the last sample interval. */
  rateFromClient: number;
  rateToClient: number;
}

/** A service's rates now and its last minute. */
export interface ServiceTraffic {
  /** New connections per second (refused ones too), bytes per second each way. */
  readonly rates: { readonly connections: number; readonly fromClient: number; readonly toClient: number };
  readonly lastMinute: { readonly connections: number; readonly rejected: number; readonly failed: number };
}

/** The gateway's open connections and throughput, a point a second, oldest first; null where no sample was taken. */
export interface TrafficHistory {
  /** The second (Unix time) of the last point. */
  readonly end: number;
  readonly open: ReadonlyArray<number | null>;
  readonly fromClient: ReadonlyArray<number | null>;
  readonly toClient: ReadonlyArray<number | null>;
}

/** A closed connection in the console's recent list. */
export interface ClosedConnection {
  readonly id: string;
  readonly service: string;
  readonly client: string;
  readonly user: string | null;
  readonly auth: string | null;
  readonly requested: string | null;
  readonly destination: string | null;
  /** ISO-8601. */
  readonly closed: string;
  readonly durationMs: number;
  readonly bytesFromClient: number;
  readonly bytesToClient: number;
  readonly reason: DisconnectReason;
  readonly error: string | null;
}

/** Fields of a service sample: cumulative counts. */
const CONNECTIONS = 0, REJECTS = 1, FAILURES = 2, FROM = 3, TO = 4, TIME = 5, FIELDS = 6;
/** Samples a service keeps: enough for the last minute. */
const SERVICE_SAMPLES = MINUTE + 1;

/** One service's cumulative counts and its last minute of samples of them. */
class ServiceCounts {
  connections = 0;
  rejected = 0;
  failed = 0;
  closedFromClient = 0;
  closedToClient = 0;
  /** Bytes of its open connections, summed at each sample. */
  liveFromClient = 0;
  liveToClient = 0;
  private readonly ring = new Float64Array(SERVICE_SAMPLES * FIELDS);
  private taken = 0;

  sample(now: number): void {
    const at = (this.taken++ % SERVICE_SAMPLES) * FIELDS;
    const r = this.ring;
    r[at + CONNECTIONS] = this.connections;
    r[at + REJECTS] = this.rejected;
    r[at + FAILURES] = this.failed;
    r[at + FROM] = this.closedFromClient + this.liveFromClient;
    r[at + TO] = this.closedToClient + this.liveToClient;
    r[at + TIME] = now;
  }

  /** Bytes moved so far each way, by the last sample. */
  latest(field: typeof FROM | typeof TO): number {
    return this.taken === 0 ? 0 : this.ring[((this.taken - 1) % SERVICE_SAMPLES) * FIELDS + field];
  }

  /** The change of each field over the last `seconds` samples (fewer when it has fewer), and the time it spans (s). */
  private change(seconds: number): { d: (field: number) => number; span: number } {
    const r = this.ring;
    const back = Math.min(seconds, this.taken - 1);
    if (back <= 0) return { d: () => 0, span: 0 };
    const last = ((this.taken - 1) % SERVICE_SAMPLES) * FIELDS;
    const first = ((this.taken - 1 - back) % SERVICE_SAMPLES) * FIELDS;
    return { d: (f) => r[last + f] - r[first + f], span: (r[last + TIME] - r[first + TIME]) / 1000 };
  }

  traffic(): ServiceTraffic {
    const now = this.change(RATE_SECONDS);
    const per = (f: number): number => (now.span > 0 ? now.d(f) / now.span : 0);
    const minute = this.change(MINUTE);
    return {
      rates: { connections: per(CONNECTIONS), fromClient: per(FROM), toClient: per(TO) },
      lastMinute: { connections: minute.d(CONNECTIONS), rejected: minute.d(REJECTS), failed: minute.d(FAILURES) },
    };
  }
}

const NO_TRAFFIC: ServiceTraffic = Object.freeze({
  rates: Object.freeze({ connections: 0, fromClient: 0, toClient: 0 }),
  lastMinute: Object.freeze({ connections: 0, rejected: 0, failed: 0 }),
});

/** The sampler of one gateway process. */
export class Traffic {
  private readonly services = new Map<string, ServiceCounts>();
  private readonly recent: Array<ClientDisconnectEvent | undefined> = new Array(RECENT_CLOSED);
  private closedCount = 0;
  // The history: a ring of points, one per second.
  private readonly open = new Float64Array(HISTORY_SECONDS).fill(NaN);
  private readonly fromRate = new Float64Array(HISTORY_SECONDS).fill(NaN);
  private readonly toRate = new Float64Array(HISTORY_SECONDS).fill(NaN);
  /** The second of the last point; 0 before the first. */
  private lastSecond = 0;
  private first = 0;
  private lastSample = 0;
  private timer: NodeJS.Timeout | null = null;

  /** @param connections the open connections, read at each sample. */
  constructor(private readonly connections: () => Iterable<SampledConnection>) {}

  /** Samples now, then every second on the second, until {@link stop}. */
  start(): void {
    if (this.timer) return;
    this.sample(Date.now());
    const align = (): void => {
      this.timer = setInterval(() => this.sample(Date.now()), 1000).unref();
    };
    this.timer = setTimeout(() => { this.sample(Date.now()); align(); }, 1000 - (Date.now() % 1000)).unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** A ClientConnect of `service`. */
  opened(service: string): void {
    this.counts(service).connections++;
  }

  /** A ClientDisconnect: counted, and first in the recent list. */
  closed(e: ClientDisconnectEvent): void {
    const s = this.counts(e.service);
    s.closedFromClient += e.bytesFromClient;
    s.closedToClient += e.bytesToClient;
    // A failed TLS handshake is the client's before a destination was chosen, the upstream's after.
    const tlsFailed = e.reason === 'tls-failed';
    if (REJECTED.has(e.reason) || (tlsFailed && e.destination === null)) s.rejected++;
    else if (FAILED.has(e.reason) || tlsFailed) s.failed++;
    this.recent[this.closedCount++ % RECENT_CLOSED] = e;
  }

  private counts(service: string): ServiceCounts {
    let s = this.services.get(service);
    if (!s) {
      s = new ServiceCounts();
      // Zeros at the last sample: what it counts from now on is a change, the first connection too.
      if (this.lastSample > 0) s.sample(this.lastSample);
      this.services.set(service, s);
    }
    return s;
  }

  /** Takes one sample at `now` (ms): the timer calls it; tests may too. */
  sample(now: number): void {
    const dt = this.lastSample > 0 ? (now - this.lastSample) / 1000 : 0;
    this.lastSample = now;
    for (const s of this.services.values()) s.liveFromClient = s.liveToClient = 0;
    let open = 0;
    for (const c of this.connections()) {
      open++;
      const from = c.bytesFromClient();
      const to = c.bytesToClient();
      if (dt > 0) {
        // Whole bytes per second: small integers stay unboxed in the connection's fields.
        c.rateFromClient = Math.round((from - c.sampledFromClient) / dt);
        c.rateToClient = Math.round((to - c.sampledToClient) / dt);
      }
      c.sampledFromClient = from;
      c.sampledToClient = to;
      const s = this.counts(c.service);
      s.liveFromClient += from;
      s.liveToClient += to;
    }
    let from = 0;
    let to = 0;
    for (const s of this.services.values()) {
      from -= s.latest(FROM);
      to -= s.latest(TO);
      s.sample(now);
      from += s.latest(FROM);
      to += s.latest(TO);
    }
    this.point(Math.floor(now / 1000), open, dt > 0 ? from / dt : 0, dt > 0 ? to / dt : 0);
  }

  /**
   * Sets the history's point for `second`. A second or two the timer skipped take the same
   * values; a longer gap (a suspended process) shows as no data, and one longer than the window
   * starts the history afresh.
   */
  private point(second: number, open: number, from: number, to: number): void {
    const gap = second - this.lastSecond;
    if (this.lastSecond === 0 || gap >= HISTORY_SECONDS) {
      this.open.fill(NaN);
      this.fromRate.fill(NaN);
      this.toRate.fill(NaN);
      this.first = second;
    }
    const repeat = gap <= MAX_REPEATED;
    for (let t = gap > 0 && gap < HISTORY_SECONDS ? this.lastSecond + 1 : second; t <= second; t++) {
      const i = t % HISTORY_SECONDS;
      const known = t === second || repeat;
      this.open[i] = known ? open : NaN;
      this.fromRate[i] = known ? from : NaN;
      this.toRate[i] = known ? to : NaN;
    }
    // A clock stepped back: the newer points are overwritten as time comes back to them.
    if (gap > 0) this.lastSecond = second;
  }

  /**
   * The services in force: each gets its counts now (so its rates span the whole window from the
   * start); services gone from the config are forgotten once their connections have closed.
   */
  follow(services: Iterable<string>): void {
    const keep = new Set(services);
    for (const name of keep) this.counts(name);
    for (const [name, s] of this.services) if (!keep.has(name) && s.liveFromClient === 0 && s.liveToClient === 0) this.services.delete(name);
  }

  /** The rates and last minute of `service`. */
  of(service: string): ServiceTraffic {
    return this.services.get(service)?.traffic() ?? NO_TRAFFIC;
  }

  history(): TrafficHistory {
    if (this.lastSecond === 0) return { end: 0, open: [], fromClient: [], toClient: [] };
    const length = Math.min(HISTORY_SECONDS, this.lastSecond - this.first + 1);
    const read = (ring: Float64Array): Array<number | null> => {
      const out = new Array<number | null>(length);
      for (let k = 0; k < length; k++) {
        const v = ring[(this.lastSecond - length + 1 + k) % HISTORY_SECONDS];
        out[k] = Number.isNaN(v) ? null : Math.round(v);
      }
      return out;
    };
    return { end: this.lastSecond, open: read(this.open), fromClient: read(this.fromRate), toClient: read(this.toRate) };
  }

  /** The last closed connections, newest first. */
  closedConnections(): ClosedConnection[] {
    const n = Math.min(this.closedCount, RECENT_CLOSED);
    const out: ClosedConnection[] = [];
    for (let k = 1; k <= n; k++) out.push(closedConnection(this.recent[(this.closedCount - k) % RECENT_CLOSED]!));
    return out;
  }
}

function closedConnection(e: ClientDisconnectEvent): ClosedConnection {
  return {
    id: e.id, service: e.service, client: e.client, user: e.user, auth: e.auth, requested: e.requested, destination: e.destination,
    closed: new Date(Date.parse(e.time) + e.durationMs).toISOString(), durationMs: e.durationMs,
    bytesFromClient: e.bytesFromClient, bytesToClient: e.bytesToClient, reason: e.reason, error: e.error,
  };
}

/** One history of several processes' (a cluster's workers): points of the same second added up. */
export function mergeHistories(histories: readonly TrafficHistory[]): TrafficHistory {
  const present = histories.filter((h) => h.end > 0 && h.open.length > 0);
  if (present.length === 0) return { end: 0, open: [], fromClient: [], toClient: [] };
  const end = Math.max(...present.map((h) => h.end));
  const windowStart = end - HISTORY_SECONDS + 1;
  // The earliest point in the window (a worker whose points all lie before it adds nothing).
  const start = Math.min(...present.filter((h) => h.end >= windowStart).map((h) => Math.max(windowStart, h.end - h.open.length + 1)));
  const length = end - start + 1;
  const sum = (key: 'open' | 'fromClient' | 'toClient'): Array<number | null> => {
    const out = new Array<number | null>(length).fill(null);
    for (const h of present) {
      const series = h[key];
      for (let k = 0; k < series.length; k++) {
        const v = series[k];
        const at = h.end - series.length + 1 + k - start;
        if (v === null || at < 0 || at >= length) continue;
        out[at] = (out[at] ?? 0) + v;
      }
    }
    return out;
  };
  return { end, open: sum('open'), fromClient: sum('fromClient'), toClient: sum('toClient') };
}

/** Several processes' rates and last minutes, added up. */
export function mergeTraffic(a: ServiceTraffic, b: ServiceTraffic): ServiceTraffic {
  return {
    rates: { connections: a.rates.connections + b.rates.connections, fromClient: a.rates.fromClient + b.rates.fromClient, toClient: a.rates.toClient + b.rates.toClient },
    lastMinute: { connections: a.lastMinute.connections + b.lastMinute.connections, rejected: a.lastMinute.rejected + b.lastMinute.rejected, failed: a.lastMinute.failed + b.lastMinute.failed },
  };
}

/** Several processes' recent lists as one: newest first, the last {@link RECENT_CLOSED}. */
export function mergeClosed(lists: ReadonlyArray<readonly ClosedConnection[]>): ClosedConnection[] {
  return lists.flat().sort((x, y) => (x.closed < y.closed ? 1 : x.closed > y.closed ? -1 : 0)).slice(0, RECENT_CLOSED);
}
