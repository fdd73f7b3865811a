import type { Auth } from '../route/identify';
import type { Connection, ServiceState } from '../connection';
import type { Listener } from '../listen/listener-set';
import { isOpen, nextChange } from '../policy/schedule';
import type { ClosedConnection, ServiceTraffic, Traffic, TrafficHistory } from './traffic';

/** A mapping with a schedule: whether it matches now, and when that next changes. */
export interface ScheduleStatus {
  /** Its index in the service's `mappings`. */
  readonly mapping: number;
  readonly schedule: string;
  readonly timezone: string;
  readonly open: boolean;
  /** ISO-8601; null when it never changes (always open or never). */
  readonly nextChange: string | null;
  readonly endAtClose: boolean;
}

/** One service in `/status`. */
export interface ServiceStatus {
  readonly name: string;
  readonly tags: readonly string[];
  readonly comment: string | null;
  readonly active: number;
  readonly maxConnections: number;
  readonly listeners: ReadonlyArray<{ readonly address: string; readonly intercept: boolean }>;
  /** Addresses of its interfaces it could not bind yet, retried at every interface poll. */
  readonly waiting: ReadonlyArray<{ readonly address: string; readonly error: string }>;
  /** What one client may take (null: no such limit); `rate` as written, e.g. `20/s`. */
  readonly limits: { readonly perSource: number | null; readonly perUser: number | null; readonly rate: string | null };
  readonly schedules: readonly ScheduleStatus[];
  /** New connections and bytes each way per second now (averaged over 5 s); connections, rejected and failed in the last minute. */
  readonly rates: ServiceTraffic['rates'];
  readonly lastMinute: ServiceTraffic['lastMinute'];
}

/** One open connection in `/status`, as the gateway believes it (the client a PROXY header named, the user a certificate did). */
export interface ConnectionStatus {
  readonly id: string;
  readonly service: string;
  readonly client: string;
  readonly user: string | null;
  readonly auth: Auth;
  readonly sni: string | null;
  /** SOCKS: where the client asked to go. */
  readonly requested: string | null;
  readonly destination: string | null;
  readonly state: string;
  readonly since: string;
  readonly seconds: number;
  readonly bytesFromClient: number;
  readonly bytesToClient: number;
  /** Bytes per second over the last second. */
  readonly rateFromClient: number;
  readonly rateToClient: number;
}

export interface GatewayStatus {
  readonly version: string;
  readonly state: string;
  readonly services: readonly ServiceStatus[];
  readonly connections: readonly ConnectionStatus[];
  /** The last closed connections, newest first. */
  readonly closed: readonly ClosedConnection[];
  /** Open connections and bytes per second each way, a point a second over the last 15 minutes. */
  readonly history: TrafficHistory;
}

/** What a status snapshot is made of. */
export interface StatusSources {
  readonly version: string;
  readonly state: string;
  readonly services: Iterable<ServiceState>;
  listenersOf(service: ServiceState): readonly Listener[];
  waitingFor(service: string): Array<{ address: string; error: string }>;
  readonly open: Iterable<Connection>;
  /** The clock schedules are read by (the gateway's, injected in tests). */
  readonly clock: number;
  readonly traffic: Traffic;
}

/** The `/status` snapshot of one gateway process at `now` (ms). */
export function statusSnapshot(src: StatusSources, now = Date.now()): GatewayStatus {
  return {
    version: src.version,
    state: src.state,
    services: [...src.services].map((s) => ({
      name: s.config.name,
      tags: s.config.tags,
      comment: s.config.comment,
      active: s.metrics.active.value,
      maxConnections: s.config.maxConnections,
      listeners: src.listenersOf(s).map((l) => ({ address: l.label, intercept: l.intercept })),
      waiting: src.waitingFor(s.config.name),
      limits: { perSource: s.config.limits.perSource, perUser: s.config.limits.perUser, rate: s.config.limits.rate?.text ?? null },
      schedules: s.config.mappings.filter((m) => m.schedule !== null).map((m) => {
        const next = nextChange(m.schedule!, src.clock);
        return {
          mapping: m.index, schedule: m.schedule!.name, timezone: m.schedule!.timezone, open: isOpen(m.schedule!, src.clock),
          nextChange: next === null ? null : new Date(next).toISOString(), endAtClose: m.endAtClose,
        };
      }),
      ...src.traffic.of(s.config.name),
    })),
    connections: [...src.open].map((c) => ({
      id: c.id, service: c.service, client: c.client, user: c.user, auth: c.auth, sni: c.sni, requested: c.requested, destination: c.destination, state: c.state,
      since: new Date(c.since).toISOString(), seconds: (now - c.since) / 1000,
      bytesFromClient: c.bytesFromClient(), bytesToClient: c.bytesToClient(),
      rateFromClient: c.rateFromClient, rateToClient: c.rateToClient,
    })),
    closed: src.traffic.closedConnections(),
    history: src.traffic.history(),
  };
}
