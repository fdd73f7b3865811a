import { EventEmitter } from 'node:events';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo, Server, Socket } from 'node:net';
import { createAdminServer } from './admin/admin';
import type { GatewayConfig, ServiceConfig, User } from './config/types';
import { hostPortLabel } from './config/parse-values';
import { Connection, type ConnectionHost, type ServiceState } from './connection';
import { BindError, MapgateError } from './errors';
import type { ClientConnectEvent, ClientDisconnectEvent, GatewayEvents, LogRecord } from './events/events';
import { JsonLinesSink } from './events/sink';
import { resolveBind } from './listen/interfaces';
import { listenTcp } from './listen/listener';
import { Metrics } from './metrics/metrics';
import { TlsSessionCache } from './upstream/dial';
import { VERSION } from './version';

export interface GatewayOptions {
  /** Register Node's default process metrics (CPU, memory, fds, event loop). Default true. */
  defaultMetrics?: boolean;
}

/** One listening socket: an address:port of a service (its own port or an intercept port). */
interface Listener {
  readonly key: string;
  readonly address: string;
  readonly port: number;
  readonly intercept: boolean;
  readonly server: Server;
  /** `address:port` actually bound (port 0 resolved). */
  readonly label: string;
  service: ServiceState;
}

/** A listening socket as {@link Gateway.endpoints} reports it. */
export interface ListenerInfo {
  readonly service: string;
  readonly address: string;
  readonly port: number;
  readonly intercept: boolean;
}

/** How long aborted connections get to report their ClientDisconnect before teardown goes on. */
const ABORT_WAIT_MS = 2000;

type State = 'new' | 'starting' | 'running' | 'draining' | 'closed';

/**
 * The gateway: owns the listeners, the admin endpoint, metrics and the event log, and wires
 * each accepted connection to its service. Emits `ClientConnect`, `ClientDisconnect` and `log`.
 */
export class Gateway extends EventEmitter<GatewayEvents> implements ConnectionHost {
  readonly metrics: Metrics;
  readonly sessions = new TlsSessionCache();
  readonly open = new Set<Connection>();
  private cfg: GatewayConfig;
  private state: State = 'new';
  private readonly services = new Map<string, ServiceState>();
  private readonly listening = new Map<string, Listener>();
  private admin: HttpServer | null = null;
  private sink: JsonLinesSink | null = null;
  private closing: Promise<void> | null = null;

  constructor(config: GatewayConfig, options: GatewayOptions = {}) {
    super();
    this.cfg = config;
    this.metrics = new Metrics(VERSION, () => this.open, () => this.sink?.dropped ?? 0, options);
  }

  get config(): GatewayConfig { return this.cfg; }
  get users(): readonly User[] { return this.cfg.users; }

  /**
   * Opens the event log, binds every listener and the admin endpoint. All or nothing: if
   * any bind fails, everything opened is closed again and the promise rejects with a
   * {@link BindError} naming the service, address and port.
   */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new MapgateError('MAPGATE_ERR_STATE', `cannot start a gateway that is ${this.state}`);
    this.state = 'starting';
    try {
      if (this.cfg.events !== 'off') {
        this.sink = new JsonLinesSink(this.cfg.events);
        await this.sink.ready();
      }
      for (const svc of this.cfg.services) this.services.set(svc.name, this.serviceState(svc));
      await this.bindAll(this.cfg.services);
      if (this.cfg.admin) this.admin = await this.startAdmin(this.cfg.admin.host, this.cfg.admin.port);
    } catch (err) {
      await this.teardown();
      this.state = 'closed';
      throw err;
    }
    this.metrics.lastReloadOk.set(1);
    this.metrics.lastReloadTime.set(Date.now() / 1000);
    this.state = 'running';
    this.log('info', 'mapgate started', { services: this.cfg.services.length, listeners: this.endpoints().map((l) => `${l.service}@${hostPortLabel(l.address, l.port)}`), admin: this.adminAddress() });
  }

  /** Every listening socket, with the port actually bound. */
  endpoints(): ListenerInfo[] {
    return [...this.listening.values()].map((l) => {
      const a = l.server.address() as AddressInfo;
      return { service: l.service.config.name, address: a.address, port: a.port, intercept: l.intercept };
    });
  }

  /** The admin endpoint's bound address, or null when it is off. */
  adminAddress(): { host: string; port: number } | null {
    const a = this.admin?.address() as AddressInfo | null | undefined;
    return a ? { host: a.address, port: a.port } : null;
  }

  /** True while accepting connections (not draining or closed). */
  get ready(): boolean { return this.state === 'running'; }

  /**
   * Stops accepting, lets open connections finish for `graceMs` (default: the config's
   * `shutdownGrace`), then ends the rest with reason `shutdown`. Idempotent.
   */
  close(graceMs: number = this.cfg.shutdownGraceMs): Promise<void> {
    this.closing ??= this.drainAndClose(graceMs);
    return this.closing;
  }

  /** Closes everything at once: {@link close} with no grace. */
  destroy(): Promise<void> {
    return this.close(0);
  }

  /** Open connections and per-service totals, for `/status`. */
  status(): object {
    const now = Date.now();
    return {
      version: VERSION,
      state: this.state,
      services: [...this.services.values()].map((s) => ({
        name: s.config.name,
        active: s.active,
        maxConnections: s.config.maxConnections,
        listeners: [...this.listening.values()].filter((l) => l.service === s).map((l) => ({ address: l.label, intercept: l.intercept })),
      })),
      connections: [...this.open].map((c) => ({
        id: c.id, service: c.service, client: c.client, user: c.user, destination: c.destination, state: c.state,
        since: new Date(c.since).toISOString(), seconds: (now - c.since) / 1000,
        bytesFromClient: c.bytesFromClient(), bytesToClient: c.bytesToClient(),
      })),
    };
  }

  // ConnectionHost
  countBytes(c: Connection): void { this.metrics.countLive(c); }
  connected(e: ClientConnectEvent): void {
    this.sink?.write(e);
    this.emit('ClientConnect', e);
  }
  disconnected(e: ClientDisconnectEvent): void {
    this.sink?.write(e);
    this.emit('ClientDisconnect', e);
  }

  private log(level: LogRecord['level'], msg: string, fields: Record<string, unknown> = {}): void {
    this.emit('log', { level, msg, ...fields });
  }

  private serviceState(config: ServiceConfig): ServiceState {
    return { config, metrics: this.metrics.service(config.name, config.maxConnections), active: 0 };
  }

  private async bindAll(services: readonly ServiceConfig[]): Promise<void> {
    const jobs: Array<Promise<Listener>> = [];
    for (const svc of services) {
      const state = this.services.get(svc.name)!;
      const addresses = resolveBind(svc.bind, this.cfg.interfaces, undefined);
      if (addresses.length === 0) {
        throw new MapgateError('MAPGATE_ERR_BIND', `service "${svc.name}": no ${svc.bind.kind === 'internal' ? 'internal interface address' : 'address'} to listen on`);
      }
      for (const address of addresses) {
        jobs.push(this.bindOne(state, address, svc.port, false));
        for (const p of svc.intercept) jobs.push(this.bindOne(state, address, p, true));
      }
    }
    const results = await Promise.allSettled(jobs);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as Error);
    if (failed.length > 0) {
      if (failed.length > 1) failed[0].message = failed.map((e) => e.message).join('\n');
      throw failed[0];
    }
  }

  private async bindOne(service: ServiceState, address: string, port: number, intercept: boolean): Promise<Listener> {
    const key = `${address}|${port}|${port === 0 ? service.config.name + (intercept ? '+' : '') : ''}`;
    let server: Server;
    try {
      server = await listenTcp(address, port, (socket) => this.onConnection(listener, socket));
    } catch (err) {
      throw new BindError(service.config.name, address, port, err as NodeJS.ErrnoException);
    }
    const a = server.address() as AddressInfo;
    const listener: Listener = { key, address, port, intercept, server, label: hostPortLabel(a.address, a.port), service };
    server.on('error', (err: NodeJS.ErrnoException) => this.onAcceptError(listener, err));
    this.listening.set(key, listener);
    service.metrics.listeners.inc();
    return listener;
  }

  private onConnection(listener: Listener, socket: Socket): void {
    if (this.state !== 'running' && this.state !== 'starting') {
      socket.destroy();
      return;
    }
    new Connection(socket, listener.label, listener.service, this).start();
  }

  private onAcceptError(listener: Listener, err: NodeJS.ErrnoException): void {
    // EMFILE/ENFILE and friends: libuv keeps the listener; log and count, never crash.
    this.metrics.acceptErrors.labels(err.code ?? 'EUNKNOWN').inc();
    this.log('error', 'accept failed', { service: listener.service.config.name, listener: listener.label, code: err.code ?? null });
  }

  private async startAdmin(host: string, port: number): Promise<HttpServer> {
    const server = createAdminServer({
      metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() }),
      healthy: () => this.state !== 'closed',
      ready: () => this.state === 'running',
      status: () => this.status(),
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        server.off('listening', onListening);
        reject(new BindError('admin', host, port, err));
      };
      const onListening = (): void => {
        server.off('error', onError);
        resolve();
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen({ host, port });
    });
    server.on('error', (err: NodeJS.ErrnoException) => this.log('error', 'admin server error', { code: err.code ?? null }));
    return server;
  }

  private async drainAndClose(graceMs: number): Promise<void> {
    if (this.state === 'new' || this.state === 'closed') {
      this.state = 'closed';
      return;
    }
    this.state = 'draining';
    this.log('info', 'draining', { open: this.open.size, graceMs });
    // Stop accepting now; the close callbacks only come once every accepted socket is gone.
    const listenersClosed = this.closeListeners();
    if (this.open.size > 0 && graceMs > 0) await this.waitForDrain(graceMs);
    for (const c of [...this.open]) c.abort('shutdown');
    // Aborted relays report on their sockets' close events, a turn of the loop later.
    if (this.open.size > 0) await this.waitForDrain(ABORT_WAIT_MS);
    await listenersClosed;
    await this.teardown();
    this.state = 'closed';
  }

  private waitForDrain(graceMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, graceMs);
      const self = this;
      function check(): void {
        if (self.open.size === 0) done();
      }
      function done(): void {
        clearTimeout(timer);
        self.off('ClientDisconnect', check);
        resolve();
      }
      this.on('ClientDisconnect', check);
    });
  }

  /** Stops every listener accepting; resolves when their accepted sockets are all closed too. */
  private closeListeners(): Promise<unknown> {
    const all = [...this.listening.values()];
    this.listening.clear();
    for (const l of all) l.service.metrics.listeners.dec();
    return Promise.all(all.map((l) => closeServer(l.server)));
  }

  private async teardown(): Promise<void> {
    await this.closeListeners();
    if (this.admin) {
      const admin = this.admin;
      this.admin = null;
      admin.closeAllConnections();
      await closeServer(admin);
    }
    if (this.sink) {
      await this.sink.close();
      this.sink = null;
    }
  }
}

function closeServer(server: Server | HttpServer): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}

/** Creates a gateway for a validated config. Call `start()` to listen. */
export function createGateway(config: GatewayConfig, options?: GatewayOptions): Gateway {
  return new Gateway(config, options);
}
