import type { Socket } from 'node:net';
import type { MappingRule, Schedule, ServiceConfig, User } from './config/types';
import { hostPortLabel } from './config/parse-values';
import type { ClientConnectEvent, ClientDisconnectEvent, DisconnectReason } from './events/events';
import { encodeProxyHeader } from './front/proxy-header';
import type { FrontContext, FrontRefusal, FrontStage } from './front/stage';
import type { LiveBytes, ServiceMetrics } from './metrics/metrics';
import { Relay, type RelayOwner, type RelayResult } from './relay/relay';
import { parseClientAddress, type ClientAddress } from './config/cidr';
import type { Admission, Limiter } from './policy/limits';
import type { SampledConnection } from './admin/traffic';
import type { NeighbourTable } from './route/neighbours';
import type { ConntrackTable } from './intercept/conntrack';
import { endWith, type ProtocolHandler, type ProtocolOwner, type Relaying } from './protocols/protocol';
import { identify, type Auth } from './route/identify';
import { route } from './route/route';
import { Dial, type DialFailure, type DialSuccess, type TlsSessionCache } from './upstream/dial';

/** A service as connections see it: its config at accept time, its front stages, its metrics. */
export interface ServiceState {
  /** Replaced on reload; a connection reads it once, when it is accepted. */
  config: ServiceConfig;
  /** Built from `config` and replaced with it: new handshakes use the new certificates. */
  front: readonly FrontStage[];
  /** Also holds the open-connection count (`metrics.active.value`), kept across reloads. */
  readonly metrics: ServiceMetrics;
  /** Per-source and per-user counts and rate buckets, kept across reloads. */
  readonly limiter: Limiter;
  /** What the service's protocol adds (SOCKS replies, FTP's control channel); null for plain TCP. Replaced with `config`. */
  protocol: ProtocolHandler | null;
}

/** What a connection needs from the gateway that owns it. */
export interface ConnectionHost {
  readonly users: readonly User[];
  /** Where clients' MAC addresses are looked up; null when no user is recognised by MAC. */
  readonly neighbours: NeighbourTable | null;
  /** Where intercepted connections' original destinations are looked up; null when no service intercepts. */
  readonly conntrack: ConntrackTable | null;
  /** The clock schedules and rate limits read (ms); injected by tests. */
  now(): number;
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
  const c = this[CONNECTION];
  if (!c) return;
  // During a front stage the socket may close because the stage refused the client (Node's TLS
  // server destroys a client whose certificate does not verify, then says why in the same turn
  // of the loop): give the stage that turn to report its reason first.
  if (c.state === 'handshake') setImmediate(closedEarly, c);
  else c.clientClosedEarly();
}

function closedEarly(c: Connection): void {
  c.clientClosedEarly();
}

function onHandshakeTimeout(c: Connection): void {
  c.handshakeTimedOut();
}

let nextId = 0;
const ID_PREFIX = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

/**
 * One client connection, one way through: front stages (PROXY header, TLS handshake) under one
 * handshake deadline → identify → route → dial → relay, and exactly one ClientDisconnect for its
 * ClientConnect. A service without front stages goes straight from accept to routing, as fast
 * as before they existed. Every path out goes through `finish()` or `refuse()`.
 */
export class Connection implements LiveBytes, RelayOwner, ProtocolOwner, SampledConnection {
  readonly id = `${ID_PREFIX}-${(++nextId).toString(36)}`;
  readonly service: string;
  readonly metrics: ServiceMetrics;
  readonly since = Date.now();
  /** The gateway `address:port` the client connected to. */
  readonly listener: string;
  countedFromClient = 0;
  countedToClient = 0;
  // The console's sampler: bytes at its last sample and the rates since the one before.
  sampledFromClient = 0;
  sampledToClient = 0;
  rateFromClient = 0;
  rateToClient = 0;
  /** The client's socket: the accepted one, or the TLS socket a front stage put over it. */
  socket: Socket;
  /** Filled by front stages; null on the fast path (no stages). */
  private ctx: FrontContext | null = null;
  private connectEvent: ClientConnectEvent | null = null;
  private announced = false;
  private admitted = false;
  private deadline: NodeJS.Timeout | null = null;
  /** The front stage running now, while the handshake deadline runs. */
  private stage: FrontStage | null = null;
  private dial: Dial | null = null;
  /** The mapping that routed it (null: the default destination). */
  private rule: MappingRule | null = null;
  /** Its place in the per-source and per-user counts, given back when it ends. */
  private admission: Admission | null = null;
  private relay: Relaying | null = null;
  /** On an intercept listener: the destination before the redirect; undefined while it is looked up. */
  private original: string | null | undefined = null;
  /** Routing waits for that lookup (at most the table's timeout). */
  private afterOriginal: (() => void) | null = null;
  /** Bytes side channels moved (FTP data), counted with the connection's own. */
  private sideFromClient = 0;
  private sideToClient = 0;
  /** The protocol of the service's config at accept time. */
  private readonly protocol: ProtocolHandler | null;
  private served: DialSuccess | null = null;
  private finished = false;

  constructor(
    socket: Socket,
    /** The listening socket that accepted it (draining a removed listener finds its connections by it). */
    readonly origin: { readonly label: string; readonly intercept?: boolean },
    private readonly svc: ServiceState,
    private readonly host: ConnectionHost,
  ) {
    this.socket = socket;
    this.listener = origin.label;
    this.service = svc.config.name;
    this.metrics = svc.metrics;
    this.protocol = svc.protocol;
    socket.on('error', onClientEarlyError);
    (socket as ConnSocket)[CONNECTION] = this;
  }

  bytesFromClient(): number { return this.socket.bytesRead + this.sideFromClient; }
  bytesToClient(): number { return this.socket.bytesWritten + this.sideToClient; }

  countSideBytes(fromClient: number, toClient: number): void {
    this.sideFromClient += fromClient;
    this.sideToClient += toClient;
  }

  /** The client's `address:port`, as the gateway believes it. */
  get client(): string { return this.connectEvent?.client ?? (this.ctx ? hostPortLabel(this.ctx.client.address, this.ctx.client.port) : ''); }
  get user(): string | null { return this.connectEvent?.user ?? null; }
  get auth(): Auth { return this.connectEvent?.auth ?? null; }
  get sni(): string | null { return this.ctx?.tls?.sni ?? null; }
  /** SOCKS: the destination the client asked for. */
  get requested(): string | null { return this.ctx?.target?.label ?? null; }
  get destination(): string | null { return this.served?.destination.label ?? this.connectEvent?.destination ?? null; }
  /** The schedule it closes with (its mapping's, when that says `endAtClose`), or null. */
  get endsWith(): Schedule | null { return this.rule?.endAtClose ? this.rule.schedule : null; }
  get state(): 'handshake' | 'connecting' | 'relaying' | 'closed' {
    return this.finished ? 'closed' : this.relay ? 'relaying' : this.connectEvent ? 'connecting' : 'handshake';
  }

  start(): void {
    const { socket, svc } = this;
    const address = socket.remoteAddress;
    if (address === undefined) {
      // Reset before we looked: nothing to route, nothing to report.
      socket.destroy();
      return;
    }
    const port = socket.remotePort ?? 0;
    // Looked up from the sockets themselves (not a PROXY header): the kernel tracked these.
    if (this.origin.intercept && this.host.conntrack !== null) {
      this.original = undefined;
      this.host.conntrack.lookup({ address, port }, { address: socket.localAddress ?? '', port: socket.localPort ?? 0 }, (found) => {
        this.original = found;
        const next = this.afterOriginal;
        this.afterOriginal = null;
        next?.();
      });
    }
    const stages = svc.front;
    if (stages.length === 0) return this.routeAndDial(address, port);
    this.ctx = { client: { address, port }, local: null, tls: null, target: null, login: null };
    // A handshake holds a slot like any connection: a flood of slow handshakes meets the limit.
    if (svc.metrics.active.value >= svc.config.maxConnections) return this.refuse('limit', 'service');
    this.admit();
    this.deadline = setTimeout(onHandshakeTimeout, svc.config.handshakeTimeoutMs, this);
    this.runStage(stages, 0);
  }

  private runStage(stages: readonly FrontStage[], i: number): void {
    if (this.finished) return;
    if (i === stages.length) {
      clearTimeout(this.deadline!);
      this.deadline = null;
      return this.routeAndDial(this.ctx!.client.address, this.ctx!.client.port);
    }
    this.stage = stages[i];
    stages[i].run(this.socket, this.ctx!, (refusal, socket) => this.stageDone(stages, i, refusal, socket));
  }

  private stageDone(stages: readonly FrontStage[], i: number, refusal: FrontRefusal | null, socket: Socket): void {
    if (socket !== this.socket) {
      // A stage put a socket over the client's (TLS): ours from now on, handlers and all.
      (socket as ConnSocket)[CONNECTION] = this;
      socket.on('error', onClientEarlyError);
      if (!this.finished) {
        this.socket.off('close', onClientEarlyClose);
        socket.on('close', onClientEarlyClose);
      }
      this.socket = socket;
    }
    if (this.finished) {
      socket.destroy();
      return;
    }
    if (refusal) {
      if (refusal.reason === 'tls-failed') this.svc.metrics.tlsHandshakeFailure(refusal.code);
      this.svc.metrics.rejected(refusal.reason);
      if (refusal.reply) endWith(this.socket, refusal.reply);
      else this.socket.destroy();
      return this.finish(refusal.reason, refusal.code);
    }
    this.runStage(stages, i + 1);
  }

  /** The front stages took longer than `handshakeTimeout`. */
  handshakeTimedOut(): void {
    this.deadline = null;
    if (this.finished) return;
    this.svc.metrics.rejected('handshake-timeout');
    // A TLS handshake that never finished is a failed one too.
    if (this.stage?.kind === 'tls') this.svc.metrics.tlsHandshakeFailure('MAPGATE_ERR_HANDSHAKE_TIMEOUT');
    this.socket.destroy();
    this.finish('handshake-timeout', null);
  }

  private routeAndDial(address: string, port: number): void {
    if (this.original === undefined) {
      this.afterOriginal = () => this.routeAndDial(address, port);
      return;
    }
    const client = parseClientAddress(address);
    const neighbours = this.host.neighbours;
    // A certificate outranks a MAC address, so only a client without one is looked up.
    if (neighbours !== null && client !== null && client.family === 4 && !this.ctx?.tls?.certificate) {
      const mac = neighbours.lookupSync(client.text);
      if (mac !== undefined) return this.decide(address, port, client, mac);
      neighbours.lookup(client.text, (found) => this.decide(address, port, client, found));
      return;
    }
    this.decide(address, port, client, null);
  }

  /** Identifies, routes and applies the limits; then dials, or refuses with the reason. */
  private decide(address: string, port: number, client: ClientAddress | null, mac: string | null): void {
    if (this.finished) return;
    const { svc, host, ctx } = this;
    const config = svc.config;
    const tlsInfo = ctx?.tls ?? null;
    const identity = identify(host.users, client, tlsInfo?.certificate ?? null, mac, ctx?.login ?? null);
    const now = host.now();
    const target = ctx?.target ?? null;
    const r = route(config, { client, user: identity.user, sni: tlsInfo?.sni ?? null, now, target });
    const first = r.action === 'forward' ? r.destinations[0] : null;
    this.connectEvent = {
      event: 'ClientConnect', id: this.id, service: this.service, listener: this.listener, client: hostPortLabel(address, port),
      user: identity.user, auth: identity.auth, sni: tlsInfo?.sni ?? null, alpn: tlsInfo?.alpn ?? null,
      requested: target?.label ?? null, originalDestination: this.original ?? null, destination: first?.label ?? null, tls: first?.tls != null, time: new Date(this.since).toISOString(),
    };
    if (!this.admitted && svc.metrics.active.value >= config.maxConnections) return this.refuse('limit', 'service');
    if (r.action === 'reject') return this.refuse(r.reason, null);
    const admission = svc.limiter.admit(config.limits, client?.text ?? address, identity.user, now);
    if (typeof admission === 'string') return this.refuse('limit', admission);
    this.admission = admission;
    this.rule = r.rule;
    if (!this.admitted) this.admit();
    this.announce();
    this.dial = new Dial(r.destinations, config.connectTimeoutMs, host.sessions, this);
  }

  /** Counted open from now: the limit, `/status` and shutdown see it. */
  private admit(): void {
    this.admitted = true;
    this.svc.metrics.active.value++;
    this.host.open.add(this);
    // on, not once: 'close' comes once anyway, and once() allocates a wrapper per connection.
    this.socket.on('close', onClientEarlyClose);
  }

  /** Emits ClientConnect once; a connection ended by a front stage reports what it knew by then. */
  private announce(): void {
    if (this.announced) return;
    this.announced = true;
    this.connectEvent ??= this.frontEvent();
    this.host.connected(this.connectEvent);
  }

  private frontEvent(): ClientConnectEvent {
    const ctx = this.ctx!;
    return {
      event: 'ClientConnect', id: this.id, service: this.service, listener: this.listener, client: hostPortLabel(ctx.client.address, ctx.client.port),
      user: null, auth: null, sni: ctx.tls?.sni ?? null, alpn: ctx.tls?.alpn ?? null, requested: ctx.target?.label ?? null,
      originalDestination: this.original ?? null, destination: null, tls: false, time: new Date(this.since).toISOString(),
    };
  }

  /** The PROXY header for an upstream that asks for one: the client as the gateway believes it. */
  proxyHeader(version: 1 | 2): Buffer {
    const s = this.socket;
    const client = this.ctx?.client ?? { address: s.remoteAddress ?? '', port: s.remotePort ?? 0 };
    const local = this.ctx?.local ?? { address: s.localAddress ?? '', port: s.localPort ?? 0 };
    return encodeProxyHeader(version, client, local);
  }

  /** Ends the connection now (shutdown, drain deadline, its schedule closing). */
  abort(reason: DisconnectReason): void {
    if (this.finished) return;
    if (this.relay) return this.relay.abort(reason);
    this.dial?.cancel();
    this.socket.destroy();
    this.finish(reason, null);
  }

  /** Closes the client before any relay: with the protocol's last reply when it has one (SOCKS), else at once. */
  private closeClient(reason: DisconnectReason, error: string | null): void {
    if (this.protocol?.refused && !this.socket.destroyed) this.protocol.refused(this.socket, reason, error, this.ctx);
    else this.socket.destroy();
  }

  onFailure(failure: DialFailure): void {
    this.svc.metrics.connectFailure(failure.code);
  }

  onDone(ok: DialSuccess | null, failure: DialFailure | null): void {
    this.dial = null;
    const { socket } = this;
    if (!ok) {
      const reason = failure?.kind ?? 'connect-failed';
      this.closeClient(reason, failure?.code ?? null);
      return this.finish(reason, failure?.code ?? null);
    }
    this.served = ok;
    this.svc.metrics.connectSeconds.observe(ok.connectSeconds);
    socket.off('error', onClientEarlyError);
    socket.off('close', onClientEarlyClose);
    if (socket.destroyed) {
      ok.socket.destroy();
      return this.finish('client-closed', null);
    }
    const protocol = this.protocol;
    if (protocol === null) {
      this.relay = new Relay(socket, ok.socket, this.svc.config.idleTimeoutMs, this);
      return;
    }
    protocol.connected?.(socket, ok.socket, this.ctx);
    this.relay = protocol.relay ? protocol.relay(socket, ok.socket, this.svc.config, this) : new Relay(socket, ok.socket, this.svc.config.idleTimeoutMs, this);
  }

  /** Refused before it was counted open (limit, reject mapping, no route): one event pair, nothing else. */
  private refuse(reason: 'limit' | 'rejected' | 'no-route', error: string | null): void {
    if (reason === 'limit') this.svc.metrics.limited(error!);
    if (this.admitted) {
      this.svc.metrics.rejected(reason);
      this.closeClient(reason, error);
      return this.finish(reason, error);
    }
    const e = this.connectEvent ?? this.frontEvent();
    this.finished = true;
    this.closeClient(reason, error);
    this.svc.metrics.rejected(reason);
    this.svc.metrics.outcome(reason);
    this.host.connected(e);
    this.host.disconnected({
      ...e, event: 'ClientDisconnect', bytesFromClient: 0, bytesToClient: 0, durationMs: Date.now() - this.since,
      reason, error, destinationIndex: null,
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

  /** The client went away during the front stages or while the upstream was being dialled. */
  clientClosedEarly(): void {
    if (this.relay || this.finished) return;
    this.dial?.cancel();
    this.finish('client-closed', null);
  }

  private finish(reason: DisconnectReason, error: string | null): void {
    if (this.finished) return;
    this.announce();
    this.finished = true;
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = null;
    const { svc, host } = this;
    svc.metrics.active.value--;
    host.open.delete(this);
    this.admission?.release();
    host.countBytes(this);
    svc.metrics.outcome(reason);
    const durationMs = Date.now() - this.since;
    svc.metrics.durationSeconds.observe(durationMs / 1000);
    const e = this.connectEvent!;
    // Spelled out, not spread: this runs once per connection and a spread costs several times more.
    host.disconnected({
      event: 'ClientDisconnect', id: e.id, service: e.service, listener: e.listener, client: e.client, user: e.user, auth: e.auth,
      sni: e.sni, alpn: e.alpn, requested: e.requested, originalDestination: e.originalDestination, destination: this.destination, tls: this.served ? this.served.destination.tls !== null : e.tls,
      time: e.time, bytesFromClient: this.bytesFromClient(), bytesToClient: this.bytesToClient(), durationMs, reason, error,
      destinationIndex: this.served?.index ?? null,
    });
  }
}
