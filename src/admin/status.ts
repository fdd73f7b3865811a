import type { Connection, ServiceState } from '../connection';
import type { Listener } from '../listen/listener-set';

/** One service in `/status`. */
export interface ServiceStatus {
  readonly name: string;
  readonly active: number;
  readonly maxConnections: number;
  readonly listeners: ReadonlyArray<{ readonly address: string; readonly intercept: boolean }>;
  /** Addresses of its interfaces it could not bind yet, retried at every interface poll. */
  readonly waiting: ReadonlyArray<{ readonly address: string; readonly error: string }>;
}

/** One open connection in `/status`, as the gateway believes it (the client a PROXY header named, the user a certificate did). */
export interface ConnectionStatus {
  readonly id: string;
  readonly service: string;
  readonly client: string;
  readonly user: string | null;
  readonly auth: 'certificate' | 'source' | null;
  readonly sni: string | null;
  readonly destination: string | null;
  readonly state: string;
  readonly since: string;
  readonly seconds: number;
  readonly bytesFromClient: number;
  readonly bytesToClient: number;
}

export interface GatewayStatus {
  readonly version: string;
  readonly state: string;
  readonly services: readonly ServiceStatus[];
  readonly connections: readonly ConnectionStatus[];
}

/** What a status snapshot is made of. */
export interface StatusSources {
  readonly version: string;
  readonly state: string;
  readonly services: Iterable<ServiceState>;
  listenersOf(service: ServiceState): readonly Listener[];
  waitingFor(service: string): Array<{ address: string; error: string }>;
  readonly open: Iterable<Connection>;
}

/** The `/status` snapshot of one gateway process at `now` (ms). */
export function statusSnapshot(src: StatusSources, now = Date.now()): GatewayStatus {
  return {
    version: src.version,
    state: src.state,
    services: [...src.services].map((s) => ({
      name: s.config.name,
      active: s.metrics.active.value,
      maxConnections: s.config.maxConnections,
      listeners: src.listenersOf(s).map((l) => ({ address: l.label, intercept: l.intercept })),
      waiting: src.waitingFor(s.config.name),
    })),
    connections: [...src.open].map((c) => ({
      id: c.id, service: c.service, client: c.client, user: c.user, auth: c.auth, sni: c.sni, destination: c.destination, state: c.state,
      since: new Date(c.since).toISOString(), seconds: (now - c.since) / 1000,
      bytesFromClient: c.bytesFromClient(), bytesToClient: c.bytesToClient(),
    })),
  };
}
