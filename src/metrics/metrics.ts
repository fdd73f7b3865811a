import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
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
  readonly active: { inc(): void; dec(): void };
  readonly listeners: { inc(): void; dec(): void };
  readonly connectSeconds: { observe(v: number): void };
  readonly durationSeconds: { observe(v: number): void };
  readonly bytesFromClient: { inc(v: number): void };
  readonly bytesToClient: { inc(v: number): void };
  outcome(reason: string): void;
  rejected(reason: string): void;
  connectFailure(code: string): void;
}

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

/** Upstream connect failures are labelled by error code; past this many distinct codes, `other`. */
const MAX_FAILURE_CODES = 64;

/**
 * mapgate's Prometheus metrics, in a registry of their own. Labels are bounded by the config
 * (service names) or by fixed sets (direction, reason, outcome, error code): never a client address.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly codes = new Set<string>();
  private readonly live: () => Iterable<LiveBytes>;

  readonly active = new Gauge({ name: 'mapgate_connections_active', help: 'Open client connections.', labelNames: ['service'], registers: [this.registry] });
  readonly total = new Counter({ name: 'mapgate_connections_total', help: 'Closed client connections, by how they ended.', labelNames: ['service', 'outcome'], registers: [this.registry] });
  readonly bytes: Counter<'service' | 'direction'>;
  readonly connectSeconds = new Histogram({
    name: 'mapgate_upstream_connect_seconds',
    help: 'Time to open the upstream connection, TLS handshake included.',
    labelNames: ['service'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly durationSeconds = new Histogram({
    name: 'mapgate_connection_duration_seconds',
    help: 'Lifetime of client connections.',
    labelNames: ['service'],
    buckets: [0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400, 86400],
    registers: [this.registry],
  });
  readonly rejected = new Counter({ name: 'mapgate_rejected_total', help: 'Client connections refused before any upstream was dialled.', labelNames: ['service', 'reason'], registers: [this.registry] });
  readonly connectFailures = new Counter({ name: 'mapgate_upstream_connect_failures_total', help: 'Failed upstream connection attempts, by error code.', labelNames: ['service', 'code'], registers: [this.registry] });
  // Every worker of a cluster holds the same listeners: aggregate with max, not sum.
  readonly listeners = new Gauge({ name: 'mapgate_listeners', help: 'Listening sockets.', labelNames: ['service'], registers: [this.registry], aggregator: 'max' });
  readonly maxConnections = new Gauge({ name: 'mapgate_connections_max', help: 'Configured connection limit of each service.', labelNames: ['service'], registers: [this.registry] });
  readonly acceptErrors = new Counter({ name: 'mapgate_accept_errors_total', help: 'Errors accepting connections (EMFILE, ...).', labelNames: ['code'], registers: [this.registry] });
  readonly eventsDropped: Gauge;
  readonly reloads: Counter<'result'>;
  readonly lastReloadOk: Gauge;
  readonly lastReloadTime: Gauge;
  readonly buildInfo = new Gauge({ name: 'mapgate_build_info', help: 'Always 1; labels carry the version.', labelNames: ['version', 'node'], registers: [this.registry], aggregator: 'first' });

  constructor(version: string, live: () => Iterable<LiveBytes>, droppedEvents: () => number, options: { defaultMetrics?: boolean } = {}) {
    this.live = live;
    // In a cluster the primary owns reloads and reports them; the workers' copies are omitted.
    ({ reloads: this.reloads, lastReloadOk: this.lastReloadOk, lastReloadTime: this.lastReloadTime } = reloadMetrics(this.registry, 'omit'));
    const self = this;
    this.bytes = new Counter({
      name: 'mapgate_bytes_total',
      help: 'Bytes relayed, from_client or to_client; open connections are counted as they go.',
      labelNames: ['service', 'direction'],
      registers: [this.registry],
      collect() {
        // Bytes of open connections are added at scrape time, not per chunk.
        for (const c of self.live()) self.countLive(c);
      },
    });
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

  /** Binds (and zero-initialises, so dashboards see series at once) the children of one service. */
  service(name: string, maxConnections: number): ServiceMetrics {
    const total = this.total;
    const rejected = this.rejected;
    const failures = this.connectFailures;
    const codes = this.codes;
    this.maxConnections.labels(name).set(maxConnections);
    // Children bound once: the per-connection path does no label hashing.
    const outcomes = new Map(DISCONNECT_REASONS.map((r) => [r as string, total.labels(name, r)]));
    const rejects = new Map(['rejected', 'limit', 'no-route'].map((r) => [r, rejected.labels(name, r)]));
    for (const c of outcomes.values()) c.inc(0);
    for (const c of rejects.values()) c.inc(0);
    this.bytes.labels(name, 'from_client').inc(0);
    this.bytes.labels(name, 'to_client').inc(0);
    return {
      active: this.active.labels(name),
      listeners: this.listeners.labels(name),
      connectSeconds: this.connectSeconds.labels(name),
      durationSeconds: this.durationSeconds.labels(name),
      bytesFromClient: this.bytes.labels(name, 'from_client'),
      bytesToClient: this.bytes.labels(name, 'to_client'),
      outcome(reason) { (outcomes.get(reason) ?? total.labels(name, reason)).inc(); },
      rejected(reason) { (rejects.get(reason) ?? rejected.labels(name, reason)).inc(); },
      connectFailure(code) {
        if (!codes.has(code) && codes.size >= MAX_FAILURE_CODES) code = 'other';
        codes.add(code);
        failures.labels(name, code).inc();
      },
    };
  }
}
