import { EventEmitter } from 'node:events';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo, Server, Socket } from 'node:net';
import { createAdminServer, listenAdmin } from './admin/admin';
import type { GatewayConfig, ServiceConfig, User } from './config/types';
import { hostPortLabel } from './config/parse-values';
import { Connection, type ConnectionHost, type ServiceState } from './connection';
import { loadConfigFile } from './config/load';
import { watchFile } from './config/watch';
import { BindError, MapgateError, problemLines, refusedReloadMessage } from './errors';
import type { ClientConnectEvent, ClientDisconnectEvent, GatewayEvents, LogRecord } from './events/events';
import { JsonLinesSink } from './events/sink';
import { resolveBind, type InterfaceTable } from './listen/interfaces';
import { networkInterfaces } from 'node:os';
import { listenTcp, serverLabel } from './listen/listener';
import { Metrics, type ServiceMetrics } from './metrics/metrics';
import { FdMonitor } from './fd-monitor';
import { TlsSessionCache } from './upstream/dial';
import { VERSION } from './version';

export interface GatewayOptions {
  /** Register Node's default process metrics (CPU, memory, fds, event loop). Default true. */
  defaultMetrics?: boolean;
  /** Reload when the config file (or its directory: editors' renames, ConfigMap symlink swaps) changes. */
  watch?: boolean;
  /** Re-read interface addresses this often (ms); 0 or absent: only on reload. */
  interfacePollMs?: number;
  /** The host's interfaces; default `os.networkInterfaces()` (tests pass a changing table). */
  networkInterfaces?: () => InterfaceTable;
  /** Check for file-descriptor exhaustion this often (ms); 0 or absent: never. */
  fdCheckMs?: number;
  /** Other processes write events to the same stdout/stderr (cluster workers): keep lines whole. */
  sharedEventLog?: boolean;
}

/** The outcome of a reload, also logged as one line. */
export interface ReloadResult {
  readonly ok: boolean;
  readonly message: string;
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly changed: readonly string[];
  /** `service@address:port` of listeners opened and closed. */
  readonly bound: readonly string[];
  readonly closed: readonly string[];
}

/** One socket the config asks for. Its key is what makes it "the same listener" across reloads. */
interface ListenSpec {
  readonly key: string;
  readonly service: string;
  readonly address: string;
  readonly port: number;
  readonly intercept: boolean;
}
type ListenPlan = readonly ListenSpec[];

/**
 * The listeners a config asks for on this host now. A fixed port is keyed by address:port, so a
 * reload that keeps it keeps the socket; port 0 (tests) is keyed by its service too.
 */
function planListeners(config: GatewayConfig, table: InterfaceTable): ListenPlan {
  const plan: ListenSpec[] = [];
  for (const svc of config.services) {
    const addresses = resolveBind(svc.bind, config.interfaces, table);
    if (addresses.length === 0) {
      throw new MapgateError('MAPGATE_ERR_BIND', `service "${svc.name}": no ${svc.bind.kind === 'internal' ? 'internal interface address' : 'address'} to listen on`);
    }
    const ports: Array<[number, boolean, number]> = [[svc.port, false, 0], ...svc.intercept.map((p, i): [number, boolean, number] => [p, true, i])];
    for (const address of addresses) {
      for (const [port, intercept, i] of ports) {
        const key = port === 0 ? `${address}|0|${svc.name}|${intercept ? i : 'port'}` : `${address}|${port}`;
        plan.push({ key, service: svc.name, address, port, intercept });
      }
    }
  }
  return plan;
}

/** Services compare equal when their normalized configs do (PEM text included). */
function sameService(a: ServiceConfig, b: ServiceConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** One listening socket: an address:port of a service (its own port or an intercept port). */
interface Listener {
  readonly key: string;
  intercept: boolean;
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
  /** Services a reload removed whose series stay in /metrics until their last connection ends. */
  private readonly retired = new Map<string, ServiceMetrics>();
  private readonly listening = new Map<string, Listener>();
  private admin: HttpServer | null = null;
  private sink: JsonLinesSink | null = null;
  private closing: Promise<void> | null = null;
  private reloading: Promise<unknown> = Promise.resolve();
  private readonly drains = new Set<NodeJS.Timeout>();
  private interfaceTimer: NodeJS.Timeout | null = null;
  private watcher: { close(): void } | null = null;
  private fdMonitor: FdMonitor | null = null;
  private readonly options: GatewayOptions;

  constructor(config: GatewayConfig, options: GatewayOptions = {}) {
    super();
    this.cfg = config;
    this.options = options;
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
        this.sink = new JsonLinesSink(this.cfg.events, this.options.sharedEventLog);
        await this.sink.ready();
      }
      for (const svc of this.cfg.services) this.services.set(svc.name, this.serviceState(svc));
      await this.applyListeners(planListeners(this.cfg, this.interfaces()));
      if (this.cfg.admin) this.admin = await this.startAdmin(this.cfg.admin.host, this.cfg.admin.port);
    } catch (err) {
      await this.teardown();
      this.state = 'closed';
      throw err;
    }
    this.metrics.lastReloadOk.set(1);
    this.metrics.lastReloadTime.set(Date.now() / 1000);
    this.state = 'running';
    this.startWatching();
  }

  /** `service@address:port` of every listener, as logs show them. */
  listenerLabels(): string[] {
    return this.endpoints().map((l) => `${l.service}@${hostPortLabel(l.address, l.port)}`);
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
        active: s.metrics.active.value,
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
    if (this.retired.size > 0) this.forgetRetired(e.service);
  }

  /** Drops a removed service's series from /metrics once nothing of it is open any more. */
  private forgetRetired(name: string): void {
    const metrics = this.retired.get(name);
    if (!metrics || metrics.active.value > 0) return;
    this.retired.delete(name);
    this.metrics.removeService(name);
  }

  private log(level: LogRecord['level'], msg: string, fields: Record<string, unknown> = {}): void {
    this.emit('log', { level, msg, ...fields });
  }

  private serviceState(config: ServiceConfig): ServiceState {
    return { config, metrics: this.metrics.service(config.name, config.maxConnections) };
  }

  /**
   * Makes the listening sockets match `plan`: binds what is new (all or nothing: on any
   * failure the new ones are closed again and this rejects, the old set untouched), re-points
   * kept sockets at their (possibly new) service, closes what is gone and drains its connections.
   */
  private async applyListeners(plan: ListenPlan, graceMs = this.cfg.shutdownGraceMs): Promise<{ bound: string[]; closed: string[] }> {
    const wanted = new Map(plan.map((p) => [p.key, p]));
    const fresh = plan.filter((p) => !this.listening.has(p.key));
    const results = await Promise.allSettled(fresh.map((p) => this.bindOne(p)));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as Error);
    const bound = results.filter((r): r is PromiseFulfilledResult<Listener> => r.status === 'fulfilled').map((r) => r.value);
    if (failed.length > 0) {
      await Promise.all(bound.map((l) => closeServer(l.server)));
      if (failed.length > 1) failed[0].message = failed.map((e) => e.message).join('\n');
      throw failed[0];
    }
    const gone: Listener[] = [];
    for (const [key, l] of this.listening) {
      const p = wanted.get(key);
      if (!p) {
        gone.push(l);
        continue;
      }
      const svc = this.services.get(p.service)!;
      if (l.service !== svc) {
        l.service.metrics.listeners.dec();
        svc.metrics.listeners.inc();
        l.service = svc;
      }
      l.intercept = p.intercept;
    }
    for (const l of bound) {
      this.listening.set(l.key, l);
      l.service.metrics.listeners.inc();
    }
    for (const l of gone) {
      this.listening.delete(l.key);
      l.service.metrics.listeners.dec();
      l.server.close();
    }
    if (gone.length > 0) this.drainLater(new Set(gone.map((l) => l.label)), graceMs);
    return { bound: bound.map((l) => `${l.service.config.name}@${l.label}`), closed: gone.map((l) => `${l.service.config.name}@${l.label}`) };
  }

  private async bindOne(p: ListenSpec): Promise<Listener> {
    const service = this.services.get(p.service)!;
    let server: Server;
    try {
      server = await listenTcp(p.address, p.port, (socket) => this.onConnection(listener, socket));
    } catch (err) {
      throw new BindError(p.service, p.address, p.port, err as NodeJS.ErrnoException);
    }
    const listener: Listener = { key: p.key, intercept: p.intercept, server, label: serverLabel(server), service };
    server.on('error', (err: NodeJS.ErrnoException) => this.onAcceptError(listener, err));
    return listener;
  }

  /** Connections accepted on closed listeners get `graceMs` to finish, then end with reason shutdown. */
  private drainLater(labels: ReadonlySet<string>, graceMs: number): void {
    const abort = (): void => {
      this.drains.delete(timer);
      for (const c of [...this.open]) if (labels.has(c.listener)) c.abort('shutdown');
    };
    const timer = setTimeout(abort, graceMs);
    this.drains.add(timer);
  }

  /**
   * Re-reads the config file and applies it as a diff (see {@link reload}); `adjust` may rewrite
   * the loaded config first (a cluster worker drops `admin`, which the primary owns). Never throws:
   * an invalid file or a failed bind leaves the running config in force and says why.
   */
  reloadFromFile(adjust: (c: GatewayConfig) => GatewayConfig = (c) => c): Promise<ReloadResult> {
    const run = async (): Promise<ReloadResult> => {
      let next: GatewayConfig;
      try {
        next = adjust(loadConfigFile(this.cfg.file));
      } catch (err) {
        return this.reloadFailed(err as Error);
      }
      return this.reload(next);
    };
    const result = this.reloading.then(run, run);
    this.reloading = result;
    return result;
  }

  /**
   * Applies a new config without dropping anything: kept listeners keep their sockets, new ones
   * bind (a bind failure refuses the whole reload), removed ones stop accepting and drain.
   * Routing, TLS, limits and timeouts apply to new connections; open ones keep their upstream.
   */
  async reload(next: GatewayConfig): Promise<ReloadResult> {
    if (this.state !== 'running') return this.reloadFailed(new MapgateError('MAPGATE_ERR_STATE', `gateway is ${this.state}`));
    const before = new Map(this.cfg.services.map((s) => [s.name, s]));
    const added: string[] = [];
    const changed: string[] = [];
    const previous = new Map(this.services);
    for (const svc of next.services) {
      const old = before.get(svc.name);
      if (!old) added.push(svc.name);
      else if (!sameService(old, svc)) changed.push(svc.name);
      if (!this.services.has(svc.name)) this.services.set(svc.name, this.serviceState(svc));
    }
    const removed = [...before.keys()].filter((n) => !next.services.some((s) => s.name === n));
    let diff: { bound: string[]; closed: string[] };
    try {
      diff = await this.applyListeners(planListeners(next, this.interfaces()), next.shutdownGraceMs);
    } catch (err) {
      for (const name of added) this.services.delete(name);
      return this.reloadFailed(err as Error);
    }
    // Committed: the new config is in force.
    for (const svc of next.services) {
      const state = this.services.get(svc.name)!;
      state.config = svc;
      state.metrics.setMax(svc.maxConnections);
    }
    // Back in the config before its old connections ended: its series simply go on counting.
    for (const name of added) this.retired.delete(name);
    for (const name of removed) {
      const state = previous.get(name);
      if (!state) continue;
      this.services.delete(name);
      this.retired.set(name, state.metrics);
      this.forgetRetired(name);
    }
    const restartOnly = ['admin', 'events', 'workers'].filter((k) => JSON.stringify((this.cfg as never)[k]) !== JSON.stringify((next as never)[k]));
    this.cfg = next;
    this.metrics.reloads.labels('success').inc();
    this.metrics.lastReloadOk.set(1);
    this.metrics.lastReloadTime.set(Date.now() / 1000);
    const summary = { added, removed, changed, bound: diff.bound, closed: diff.closed };
    this.log('info', 'config reloaded', summary);
    if (restartOnly.length > 0) this.log('warn', 'these settings change only on restart', { settings: restartOnly });
    const message = `reloaded: services +${added.length} -${removed.length} ~${changed.length}, listeners +${diff.bound.length} -${diff.closed.length}`;
    return { ok: true, message, ...summary };
  }

  private reloadFailed(err: Error): ReloadResult {
    this.metrics.reloads.labels('failure').inc();
    this.metrics.lastReloadOk.set(0);
    const problems = problemLines(err);
    this.log('error', 'config reload refused; the running config stays in force', { problems });
    return { ok: false, message: refusedReloadMessage(problems), added: [], removed: [], changed: [], bound: [], closed: [] };
  }

  /** Re-resolves interface addresses; listeners follow addresses that appeared or vanished. */
  private async refreshInterfaces(): Promise<void> {
    if (this.state !== 'running') return;
    const plan = planListeners(this.cfg, this.interfaces());
    const keys = new Set(plan.map((p) => p.key));
    if (plan.length === this.listening.size && [...this.listening.keys()].every((k) => keys.has(k))) return;
    try {
      const diff = await this.applyListeners(plan);
      this.log('info', 'interface addresses changed', diff);
    } catch (err) {
      this.log('error', 'interface addresses changed, but a new listener could not bind', { error: (err as Error).message });
    }
  }

  private interfaces(): InterfaceTable {
    return this.options.networkInterfaces ? this.options.networkInterfaces() : networkInterfaces();
  }

  private startWatching(): void {
    if (this.options.fdCheckMs) {
      this.fdMonitor = new FdMonitor(this.options.fdCheckMs, (state, open, limit) => {
        if (state === 'exhausted') this.log('error', 'file descriptors nearly exhausted: new connections are being dropped (EMFILE)', { open, limit });
        else this.log('info', 'file descriptors available again', { open, limit });
      });
      this.fdMonitor.start();
    }
    if (this.options.interfacePollMs && this.options.interfacePollMs > 0) {
      this.interfaceTimer = setInterval(() => {
        this.reloading = this.reloading.then(() => this.refreshInterfaces());
      }, this.options.interfacePollMs);
      this.interfaceTimer.unref();
    }
    if (this.options.watch && this.cfg.file !== '<inline>') {
      this.watcher = watchFile(this.cfg.file, () => {
        void this.reloadFromFile();
      });
    }
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
    this.fdMonitor?.check();
    this.log('error', 'accept failed', { service: listener.service.config.name, listener: listener.label, code: err.code ?? null });
  }

  private async startAdmin(host: string, port: number): Promise<HttpServer> {
    const server = createAdminServer({
      metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() }),
      healthy: () => this.state !== 'closed',
      ready: () => this.state === 'running',
      status: () => this.status(),
      reload: () => this.reloadFromFile(),
    });
    await listenAdmin(server, host, port);
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
    for (const t of this.drains) clearTimeout(t);
    this.drains.clear();
    if (this.interfaceTimer) clearInterval(this.interfaceTimer);
    this.interfaceTimer = null;
    this.watcher?.close();
    this.watcher = null;
    this.fdMonitor?.stop();
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
