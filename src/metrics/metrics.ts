import { Counter, Gauge, Registry, collectDefaultMetrics } from './prom';
import { FastCounter, FastGauge, FastHistogram, type ValueChild } from './fast';
import { DISCONNECT_REASONS } from '../events/events';

/** A connection's byte counters as the metrics see them while it is open. */
export interface LiveBytes {
  /** The service's bound metric children, where the bytes are added. */
  readonly metrics: ServiceMetrics;
  /** Bytes received from the client so far. */
  bytesFromClient(): number;
  /** Bytes sent to the client so far. */
  bytesToClient(): number;
  /** Bytes already added to `mapgate_bytes_total`, per direction. */
  countedFromClient: number;
  countedToClient: number;
}

/** Children of every labelled metric for one service, bound once so the hot path does no label lookups. */
export interface ServiceMetrics {
  /** Open connections of the service: the gauge's value is the one count (the limit check reads it). */
  readonly active: ValueChild;
  /** Sets `mapgate_connections_max` (on start and reload). */
  setMax(max: number): void;
  readonly listeners: { inc(): void; dec(): void };
  readonly connectSeconds: { observe(v: number): void };
  readonly durationSeconds: { observe(v: number): void };
  readonly bytesFromClient: { inc(v: number): void };
  readonly bytesToClient: { inc(v: number): void };
  outcome(reason: string): void;
  rejected(reason: string): void;
  connectFailure(code: string): void;
  /** A failed TLS handshake on a binding that accepts TLS, by OpenSSL's or Node's code. */
  tlsHandshakeFailure(code: string): void;
  /** Sets the expiry of the binding's certificate (ms since the epoch), or removes it (null). */
  setCertificateExpiry(notAfterMs: number | null): void;
  /** A connection refused by one of its limits (`service`, `rate`, `per-source`, `per-user`). */
  limited(limit: string): void;
  /** Reads the client addresses the service's limiter tracks, at every scrape. */
  trackSources(count: () => number): void;
}

/** The limits a connection can be refused by: `mapgate_limit_rejections_total`'s `limit` label. */
export const LIMIT_NAMES = ['service', 'rate', 'per-source', 'per-user'];

/** The config reload metrics, in `registry`; `aggregator` says how a cluster primary combines workers' copies. */
export function reloadMetrics(registry: Registry, aggregator: 'omit' | 'max' = 'max'): { reloads: Counter<'result'>; lastReloadOk: Gauge; lastReloadTime: Gauge } {
  const reloads = new Counter({ name: 'mapgate_config_reload_total', help: 'Config reloads, by result.', labelNames: ['result'], registers: [registry], aggregator });
  for (const r of ['success', 'failure']) reloads.labels(r).inc(0);
  return {
    reloads,
    lastReloadOk: new Gauge({ name: 'mapgate_config_last_reload_successful', help: '1 if the last config reload succeeded.', registers: [registry], aggregator }),
    lastReloadTime: new Gauge({ name: 'mapgate_config_last_reload_success_timestamp_seconds', help: 'Time of the last successful config load.', registers: [registry], aggregator }),
  };
}

/** Error codes label failures; past this many distinct codes per metric, `other`. */
const MAX_FAILURE_CODES = 64;

/** Refusals before any upstream was dialled, each a series from the start. */
const REJECT_REASONS = ['rejected', 'limit', 'no-route', 'tls-failed', 'handshake-timeout', 'proxy-protocol', 'socks', 'auth-failed'];

/** `code`, or `other` once `seen` holds the most distinct codes a metric may carry. */
function boundedCode(seen: Set<string>, code: string): string {
  if (!seen.has(code) && seen.size >= MAX_FAILURE_CODES) return 'other';
  seen.add(code);
  return code;
}

/**
 * mapgate's Prometheus metrics, in a registry of their own. Labels are bounded by the config
 * (service names) or by fixed sets (direction, reason, outcome, error code): never a client address.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly codes = new Set<string>();
  private readonly tlsCodes = new Set<string>();
  private readonly live: () => Iterable<LiveBytes>;

  // Per-connection metrics: bound children, plain field updates (see fast.ts).
  readonly active = new FastGauge('mapgate_connections_active', 'Open client connections.', this.registry);
  readonly total = new FastCounter('mapgate_connections_total', 'Closed client connections, by how they ended.', this.registry);
  readonly bytes = new FastCounter('mapgate_bytes_total', 'Bytes relayed, from_client or to_client; open connections are counted at every scrape.', this.registry);
  readonly connectSeconds = new FastHistogram('mapgate_upstream_connect_seconds', 'Time to open the upstream connection, TLS handshake included.',
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], this.registry);
  readonly durationSeconds = new FastHistogram('mapgate_connection_duration_seconds', 'Lifetime of client connections.',
    [0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400, 86400], this.registry);
  readonly rejected = new FastCounter('mapgate_rejected_total', 'Client connections refused before any upstream was dialled.', this.registry);
  readonly connectFailures = new FastCounter('mapgate_upstream_connect_failures_total', 'Failed upstream connection attempts, by error code.', this.registry);
  readonly tlsHandshakeFailures = new FastCounter('mapgate_tls_handshake_failures_total', 'Failed TLS handshakes of clients on bindings that accept TLS, by error code.', this.registry);
  // Every worker holds the same certificate: max, not a sum.
  readonly certificateExpiry = new FastGauge('mapgate_tls_certificate_expiry_timestamp_seconds', 'When the certificate of a binding that accepts TLS expires (notAfter).', this.registry, 'max');
  // Every worker of a cluster holds the same listeners: aggregate with max, not sum.
  readonly listeners = new FastGauge('mapgate_listeners', 'Listening sockets.', this.registry, 'max');
  readonly maxConnections = new FastGauge('mapgate_connections_max', 'Configured connection limit of each service.', this.registry);
  readonly limitRejections = new FastCounter('mapgate_limit_rejections_total', 'Client connections refused by a limit (also in mapgate_rejected_total{reason="limit"}), by which one.', this.registry);
  readonly limitSources = new FastGauge('mapgate_limit_tracked_sources', 'Client addresses a service\'s limiter holds state for (bounded by its fixed maximum).', this.registry);
  private readonly sourceCounts = new Map<string, () => number>();
  readonly acceptErrors = new Counter({ name: 'mapgate_accept_errors_total', help: 'Errors accepting connections (EMFILE, ...).', labelNames: ['code'], registers: [this.registry] });
  readonly eventsDropped: Gauge;
  readonly reloads: Counter<'result'>;
  readonly lastReloadOk: Gauge;
  readonly lastReloadTime: Gauge;
  /** One series per service and tag (tag "" for an untagged service): join on `service` to group dashboards by tag. */
  readonly serviceInfo = new Gauge({
    name: 'mapgate_service_info', help: 'Always 1; one series per service and each of its tags (tag="" when it has none).',
    labelNames: ['service', 'tag'], registers: [this.registry], aggregator: 'max',
  });
  private readonly serviceTags = new Map<string, readonly string[]>();
  readonly buildInfo = new Gauge({ name: 'mapgate_build_info', help: 'Always 1; labels carry the version.', labelNames: ['version', 'node'], registers: [this.registry], aggregator: 'first' });

  constructor(version: string, live: () => Iterable<LiveBytes>, droppedEvents: () => number, options: { defaultMetrics?: boolean } = {}) {
    this.live = live;
    // In a cluster the primary owns reloads and reports them; the workers' copies are omitted.
    ({ reloads: this.reloads, lastReloadOk: this.lastReloadOk, lastReloadTime: this.lastReloadTime } = reloadMetrics(this.registry, 'omit'));
    // Bytes of open connections are added at scrape time, not per chunk.
    this.bytes.collect = () => {
      for (const c of this.live()) this.countLive(c);
    };
    this.limitSources.collect = () => {
      for (const [service, count] of this.sourceCounts) this.limitSources.child({ service }).value = count();
    };
    this.eventsDropped = new Gauge({
      name: 'mapgate_events_dropped_total',
      help: 'Event log lines dropped because the destination could not keep up.',
      registers: [this.registry],
      collect() { this.set(droppedEvents()); },
    });
    this.buildInfo.labels(version, process.version).set(1);
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: '' });
  }

  /** Adds the bytes an open or closing connection moved since it was last counted. */
  countLive(c: LiveBytes): void {
    const from = c.bytesFromClient();
    const to = c.bytesToClient();
    if (from > c.countedFromClient) c.metrics.bytesFromClient.inc(from - c.countedFromClient);
    if (to > c.countedToClient) c.metrics.bytesToClient.inc(to - c.countedToClient);
    c.countedFromClient = from;
    c.countedToClient = to;
  }

  /** Puts a service's tags in `mapgate_service_info`, replacing the ones it had; null removes its series. */
  setServiceTags(service: string, tags: readonly string[] | null): void {
    for (const tag of this.serviceTags.get(service) ?? []) this.serviceInfo.remove({ service, tag });
    this.serviceTags.delete(service);
    if (tags === null) return;
    const shown = tags.length > 0 ? tags : [''];
    for (const tag of shown) this.serviceInfo.labels({ service, tag }).set(1);
    this.serviceTags.set(service, shown);
  }

  /** Forgets every series of a service (gone from the config, its connections ended). */
  removeService(name: string): void {
    this.setServiceTags(name, null);
    for (const m of [this.active, this.total, this.bytes, this.connectSeconds, this.durationSeconds, this.rejected,
      this.connectFailures, this.tlsHandshakeFailures, this.certificateExpiry, this.listeners, this.maxConnections, this.limitRejections,
      this.limitSources]) m.remove('service', name);
    this.sourceCounts.delete(name);
  }

  /** Binds (and zero-initialises, so dashboards see series at once) the children of one service. */
  service(name: string, maxConnections: number): ServiceMetrics {
    const service = name;
    const codes = this.codes;
    const failures = this.connectFailures;
    const outcomes = new Map(DISCONNECT_REASONS.map((r) => [r as string, this.total.child({ service, outcome: r })]));
    const rejects = new Map(REJECT_REASONS.map((r) => [r, this.rejected.child({ service, reason: r })]));
    const tlsCodes = this.tlsCodes;
    const tlsFailures = this.tlsHandshakeFailures;
    const expiry = this.certificateExpiry;
    const active = this.active.child({ service });
    const listeners = this.listeners.child({ service });
    const max = this.maxConnections.child({ service });
    const from = this.bytes.child({ service, direction: 'from_client' });
    const to = this.bytes.child({ service, direction: 'to_client' });
    const total = this.total;
    const rejected = this.rejected;
    const limits = new Map(LIMIT_NAMES.map((l) => [l, this.limitRejections.child({ service, limit: l })]));
    const sourceCounts = this.sourceCounts;
    max.value = maxConnections;
    return {
      active,
      listeners: { inc() { listeners.value++; }, dec() { listeners.value--; } },
      setMax(v) { max.value = v; },
      connectSeconds: this.connectSeconds.child({ service }),
      durationSeconds: this.durationSeconds.child({ service }),
      bytesFromClient: { inc(v) { from.value += v; } },
      bytesToClient: { inc(v) { to.value += v; } },
      outcome(reason) { (outcomes.get(reason) ?? total.child({ service, outcome: reason })).value++; },
      rejected(reason) { (rejects.get(reason) ?? rejected.child({ service, reason })).value++; },
      connectFailure(code) {
        failures.child({ service, code: boundedCode(codes, code) }).value++;
      },
      tlsHandshakeFailure(code) {
        tlsFailures.child({ service, code: boundedCode(tlsCodes, code) }).value++;
      },
      setCertificateExpiry(notAfterMs) {
        if (notAfterMs === null) expiry.remove('service', service);
        else expiry.child({ service }).value = notAfterMs / 1000;
      },
      limited(limit) { limits.get(limit)!.value++; },
      trackSources(count) { sourceCounts.set(service, count); },
    };
  }
}
