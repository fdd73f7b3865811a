import type { Socket } from 'node:net';
import type { ServiceConfig, User } from './config/types';
import { hostPortLabel } from './config/parse-values';
import type { ClientConnectEvent, ClientDisconnectEvent, DisconnectReason } from './events/events';
import type { LiveBytes, ServiceMetrics } from './metrics/metrics';
import { Relay, type RelayOwner, type RelayResult } from './relay/relay';
import { parseClientAddress } from './route/cidr';
import { route } from './route/route';
import { Dial, type DialFailure, type DialSuccess, type TlsSessionCache } from './upstream/dial';

/** A service as connections see it: its config at accept time, its counters and metrics. */
export interface ServiceState {
  /** Replaced on reload; a connection reads it once, when it is accepted. */
  config: ServiceConfig;
  /** Also holds the open-connection count (`metrics.active.value`), kept across reloads. */
  readonly metrics: ServiceMetrics;
}

/** What a connection needs from the gateway that owns it. */
export interface ConnectionHost {
  readonly users: readonly User[];
  readonly sessions: TlsSessionCache;
  readonly open: Set<Connection>;
  countBytes(c: Connection): void;
  connected(e: ClientConnectEvent): void;
  disconnected(e: ClientDisconnectEvent): void;
}

function isTlsErrorCode(code: string | null): boolean {
  return code !== null && (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_'));
}

/** The client socket points at its connection, so the early handlers are shared functions. */
const CONNECTION = Symbol('mapgate.connection');
type ConnSocket = Socket & { [CONNECTION]?: Connection };

function onClientEarlyError(): void {
  // Errors after the relay starts are the relay's; before, the close handler below ends us.
}

function onClientEarlyClose(this: ConnSocket): void {
  this[CONNECTION]?.clientClosedEarly();
}

let nextId = 0;
const ID_PREFIX = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

/**
 * One client connection: limit check, routing, upstream dial, relay, and exactly one
 * ClientDisconnect for its ClientConnect. Every path out goes through `finish()`.
 */
export class Connection implements LiveBytes, RelayOwner {
  readonly id = `${ID_PREFIX}-${(++nextId).toString(36)}`;
  readonly service: string;
  readonly metrics: ServiceMetrics;
  readonly since = Date.now();
  countedFromClient = 0;
  countedToClient = 0;
  private connectEvent: ClientConnectEvent | null = null;
  private dial: Dial | null = null;
  private relay: Relay | null = null;
  private served: DialSuccess | null = null;
  private finished = false;

  constructor(
    readonly socket: Socket,
    /** The gateway `address:port` the client connected to. */
    readonly listener: string,
    private readonly svc: ServiceState,
    private readonly host: ConnectionHost,
  ) {
    this.service = svc.config.name;
    this.metrics = svc.metrics;
    socket.on('error', onClientEarlyError);
    (socket as ConnSocket)[CONNECTION] = this;
  }

  bytesFromClient(): number { return this.socket.bytesRead; }
  bytesToClient(): number { return this.socket.bytesWritten; }

  /** The client's `address:port`. */
  get client(): string { return this.connectEvent?.client ?? ''; }
  get user(): string | null { return this.connectEvent?.user ?? null; }
  get destination(): string | null { return this.served?.destination.label ?? this.connectEvent?.destination ?? null; }
  get state(): 'connecting' | 'relaying' | 'closed' { return this.finished ? 'closed' : this.relay ? 'relaying' : 'connecting'; }

  start(): void {
    const { socket, svc } = this;
    const address = socket.remoteAddress;
    if (address === undefined) {
      // Reset before we looked: nothing to route, nothing to report.
      socket.destroy();
      return;
    }
    const client = hostPortLabel(address, socket.remotePort ?? 0);
    const r = route(svc.config, this.host.users, parseClientAddress(address));
    const first = r.action === 'forward' ? r.destinations[0] : null;
    this.connectEvent = {
      event: 'ClientConnect', id: this.id, service: this.service, listener: this.listener, client,
      user: r.user, destination: first?.label ?? null, tls: first?.tls != null, time: new Date(this.since).toISOString(),
    };
    if (svc.metrics.active.value >= svc.config.maxConnections) return this.refuse('limit');
    if (r.action === 'reject') return this.refuse(r.reason);

    svc.metrics.active.value++;
    this.host.open.add(this);
    this.host.connected(this.connectEvent);
    socket.once('close', onClientEarlyClose);
    this.dial = new Dial(r.destinations, svc.config.connectTimeoutMs, this.host.sessions, this);
  }

  /** Ends the connection now (shutdown, drain deadline). */
  abort(reason: DisconnectReason): void {
    if (this.finished) return;
    if (this.relay) return this.relay.abort(reason);
    this.dial?.cancel();
    this.socket.destroy();
    this.finish(reason, null);
  }

  onFailure(failure: DialFailure): void {
    this.svc.metrics.connectFailure(failure.code);
  }

  onDone(ok: DialSuccess | null, failure: DialFailure | null): void {
    this.dial = null;
    const { socket } = this;
    if (!ok) {
      socket.destroy();
      return this.finish(failure?.kind ?? 'connect-failed', failure?.code ?? null);
    }
    this.served = ok;
    this.svc.metrics.connectSeconds.observe(ok.connectSeconds);
    socket.off('error', onClientEarlyError);
    socket.off('close', onClientEarlyClose);
    if (socket.destroyed) {
      ok.socket.destroy();
      return this.finish('client-closed', null);
    }
    this.relay = new Relay(socket, ok.socket, this.svc.config.idleTimeoutMs, this);
  }

  private refuse(reason: 'limit' | 'rejected' | 'no-route'): void {
    const e = this.connectEvent!;
    this.finished = true;
    this.socket.destroy();
    this.svc.metrics.rejected(reason);
    this.svc.metrics.outcome(reason);
    this.host.connected(e);
    this.host.disconnected({
      ...e, event: 'ClientDisconnect', bytesFromClient: 0, bytesToClient: 0, durationMs: Date.now() - this.since,
      reason, error: null, destinationIndex: null,
    });
  }

  /** Called by the relay once both sockets are closed. */
  relayDone(result: RelayResult): void {
    let reason = result.end as DisconnectReason;
    // TLS 1.3 finishes the client's side of the handshake before the server has checked our
    // certificate: a refusal (e.g. certificate required) arrives as the upstream's first "data".
    if (reason === 'upstream-closed' && this.served?.destination.tls && this.socket.bytesWritten === 0 && isTlsErrorCode(result.error)) {
      reason = 'tls-failed';
      this.svc.metrics.connectFailure(result.error!);
    }
    this.finish(reason, result.error);
  }

  /** The client went away while the upstream was being dialled. */
  clientClosedEarly(): void {
    if (this.relay || this.finished) return;
    this.dial?.cancel();
    this.finish('client-closed', null);
  }

  private finish(reason: DisconnectReason, error: string | null): void {
    if (this.finished) return;
    this.finished = true;
    const { svc, host } = this;
    svc.metrics.active.value--;
    host.open.delete(this);
    host.countBytes(this);
    svc.metrics.outcome(reason);
    const durationMs = Date.now() - this.since;
    svc.metrics.durationSeconds.observe(durationMs / 1000);
    const e = this.connectEvent!;
    // Spelled out, not spread: this runs once per connection and a spread costs several times more.
    host.disconnected({
      event: 'ClientDisconnect', id: e.id, service: e.service, listener: e.listener, client: e.client, user: e.user,
      destination: this.destination, tls: this.served ? this.served.destination.tls !== null : e.tls, time: e.time,
      bytesFromClient: this.socket.bytesRead, bytesToClient: this.socket.bytesWritten, durationMs, reason, error,
      destinationIndex: this.served?.index ?? null,
    });
  }
}
