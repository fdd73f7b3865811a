import type { Auth } from '../route/identify';

/** Why a connection ended. */
export type DisconnectReason =
  | 'client-closed'
  | 'upstream-closed'
  | 'connect-failed'
  | 'connect-timeout'
  | 'idle-timeout'
  | 'tls-failed'
  | 'rejected'
  | 'limit'
  | 'no-route'
  | 'handshake-timeout'
  | 'proxy-protocol'
  | 'socks'
  | 'auth-failed'
  | 'schedule'
  | 'shutdown';

export const DISCONNECT_REASONS: readonly DisconnectReason[] = [
  'client-closed', 'upstream-closed', 'connect-failed', 'connect-timeout', 'idle-timeout',
  'tls-failed', 'rejected', 'limit', 'no-route', 'handshake-timeout', 'proxy-protocol', 'socks', 'auth-failed', 'schedule', 'shutdown',
];

/**
 * Raised when a client connects, once its route is known, before the upstream is dialled; for
 * a connection refused by a front stage (TLS, PROXY header), just before its ClientDisconnect.
 */
export interface ClientConnectEvent {
  readonly event: 'ClientConnect';
  /** Unique within this gateway process. */
  readonly id: string;
  readonly service: string;
  /** The gateway address:port the client connected to. */
  readonly listener: string;
  /** The client's address:port, as the gateway believes it (a trusted PROXY header's source). */
  readonly client: string;
  /** The user the client was identified as, or null. */
  readonly user: string | null;
  /** How: `certificate` (a verified client certificate), `password` (a SOCKS login), `mac` (its MAC address), `source` (assumed from the address), or null. */
  readonly auth: Auth;
  /** On a TLS binding: the server name the client asked for (SNI), or null. */
  readonly sni: string | null;
  /** On a TLS binding: the ALPN protocol negotiated, or null. */
  readonly alpn: string | null;
  /** SOCKS: the `host:port` the client asked for; null on other services. */
  readonly requested: string | null;
  /**
   * On an intercept port: the `host:port` the client connected to before the firewall redirected
   * it, when the kernel's connection tracking tells; null otherwise.
   */
  readonly originalDestination: string | null;
  /** host:port of the destination chosen (the first candidate), or null when rejected. */
  readonly destination: string | null;
  /** Whether the upstream leg is TLS. */
  readonly tls: boolean;
  /** ISO-8601 time the client connected. */
  readonly time: string;
}

/** Raised exactly once for every ClientConnect, when both legs are closed. */
export interface ClientDisconnectEvent extends Omit<ClientConnectEvent, 'event'> {
  readonly event: 'ClientDisconnect';
  readonly bytesFromClient: number;
  readonly bytesToClient: number;
  readonly durationMs: number;
  readonly reason: DisconnectReason;
  /**
   * Error code behind the reason (`ECONNREFUSED`, `CERT_HAS_EXPIRED`, ...), or null; for reason
   * `limit`, the limit: `service`, `rate`, `per-source` or `per-user`.
   */
  readonly error: string | null;
  /** Index of the failover destination that served (0 = first), or null if none did. */
  readonly destinationIndex: number | null;
}

export interface GatewayEvents {
  ClientConnect: [ClientConnectEvent];
  ClientDisconnect: [ClientDisconnectEvent];
  /** Operational messages: bind results, reloads, accept errors. */
  log: [LogRecord];
}

export interface LogRecord {
  readonly level: 'info' | 'warn' | 'error';
  readonly msg: string;
  readonly [key: string]: unknown;
}
