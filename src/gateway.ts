import { EventEmitter } from 'node:events';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { adminRestartKey, createAdminServer, listenAdmin } from './admin/admin';
import type { GatewayConfig, User } from './config/types';
import { hostPortLabel } from './config/parse-values';
import { Connection, type ConnectionHost } from './connection';
import { loadConfigFile, type ParseOptions } from './config/load';
import { ConfigWatch } from './config/watch';
import { diffServices } from './config/diff';
import { ServiceRegistry } from './registry';
import { statusSnapshot, type GatewayStatus } from './admin/status';
import { Traffic } from './admin/traffic';
import { BindError, MapgateError, problemLines, refusedReloadMessage } from './errors';
import type { ClientConnectEvent, ClientDisconnectEvent, GatewayEvents, LogRecord } from './events/events';
import { JsonLinesSink } from './events/sink';
import type { InterfaceTable } from './config/bind';
import { closeServer, ListenerSet, type Listener } from './listen/listener-set';
import { planListeners, type ListenPlan } from './listen/plan';
import { networkInterfaces } from 'node:os';
import { Metrics } from './metrics/metrics';
import { FdMonitor } from './fd-monitor';
import { TlsSessionCache } from './upstream/dial';
import { NeighbourTable } from './route/neighbours';
import { anyMacUsers } from './route/identify';
import { ScheduleCloser } from './policy/end-at-close';
import { ConntrackTable } from './intercept/conntrack';
import { AutoPorts } from './listen/auto-ports';
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
  /** The clock schedules and rate limits read (ms since the epoch); default `Date.now`. Tests move it. */
  clock?: () => number;
  /** Rate buckets each service keeps at most (one per client address); default 16384. */
  limiterSources?: number;
  /** The kernel's IPv4 neighbour table, for users by MAC; default `/proc/net/arp`. */
  neighbourTable?: string;
  /** How long a connection waits for a read of that table before it is routed without a MAC (ms); default 100. */
  neighbourTimeoutMs?: number;
  /** How a reload re-reads the config file; default `loadConfigFile` (`mapgate run -L` adds its tunnels). */
  loadConfig?: (file: string, options?: ParseOptions) => GatewayConfig;
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

/** A reload whose listeners are bound but not yet in force: {@link Gateway.prepareReload}. */
export type PreparedReload =
  | { readonly ok: false; readonly result: ReloadResult }
  | { readonly ok: true; commit(): ReloadResult; abort(): void };

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
  /** Every connection counted open. */
  readonly open: Set<Connection>;
  private readonly services: ServiceRegistry;
  private cfg: GatewayConfig;
  private state: State = 'new';
  private readonly listenerSet: ListenerSet = new ListenerSet({
    service: (name) => this.services.get(name)!,
    accept: (listener, socket) => this.onConnection(listener, socket),
    acceptError: (listener, err) => this.onAcceptError(listener, err),
    log: (level, msg, fields) => this.log(level, msg, fields),
  });
  private admin: HttpServer | null = null;
  private sink: JsonLinesSink | null = null;
  private closing: Promise<void> | null = null;
  private reloading: Promise<unknown> = Promise.resolve();
  private readonly drains = new Set<NodeJS.Timeout>();
  /** Ends the wait of a draining close at once (a second SIGTERM: {@link destroy}). */
  private hurry: (() => void) | null = null;
  private interfaceTimer: NodeJS.Timeout | null = null;
  private watcher: ConfigWatch | null = null;
  private fdMonitor: FdMonitor | null = null;
  private readonly options: GatewayOptions;
  /** Set while some user is recognised by MAC address. */
  neighbours: NeighbourTable | null = null;
  /** Set while some service has intercept ports. */
  conntrack: ConntrackTable | null = null;
  readonly now: () => number;
  private readonly closer: ScheduleCloser;
  private readonly autoPorts = new AutoPorts();
  /** Rates, the last minute, 15 minutes of history and the last closed connections, for the console. */
  private readonly traffic: Traffic;

  constructor(config: GatewayConfig, options: GatewayOptions = {}) {
    super();
    this.cfg = config;
    this.options = options;
    this.metrics = new Metrics(VERSION, () => this.open, () => this.sink?.dropped ?? 0, options);
    this.services = new ServiceRegistry(this.metrics, () => this.cfg.users, options.limiterSources);
    this.open = this.services.open;
    this.now = options.clock ?? Date.now;
    this.closer = new ScheduleCloser(this.now, this.open);
    this.traffic = new Traffic(() => this.open);
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
      this.cfg = await this.autoPorts.assign(this.cfg, this.interfaces());
      this.logPicked();
      this.services.addNew(this.cfg.services);
      this.followPolicy(this.cfg);
      const plan = planListeners(this.cfg, this.interfaces());
      this.commitListeners(plan, await this.listenerSet.bind(plan, { hold: false, lenient: false }), this.cfg.shutdownGraceMs);
      if (this.cfg.admin) this.admin = await this.startAdmin(this.cfg.admin.host, this.cfg.admin.port);
    } catch (err) {
      await this.teardown();
      this.state = 'closed';
      throw err;
    }
    this.metrics.lastReloadOk.set(1);
    this.metrics.lastReloadTime.set(Date.now() / 1000);
    this.state = 'running';
    this.traffic.follow(this.cfg.services.map((s) => s.name));
    this.traffic.start();
    this.startWatching();
  }

  /** `service@address:port` of every listener, as logs show them. */
  listenerLabels(): string[] {
    return this.endpoints().map((l) => `${l.service}@${hostPortLabel(l.address, l.port)}`);
  }

  /** Every listening socket, with the port actually bound. */
  endpoints(): ListenerInfo[] {
    return [...this.listenerSet.values()].map((l) => {
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

  /**
   * Closes everything at once: {@link close} with no grace. While a close is draining, cuts its
   * grace short and ends every connection now (reason `shutdown`): a second SIGTERM.
   */
  destroy(): Promise<void> {
    if (!this.closing) return this.close(0);
    this.hurry?.();
    return this.closing;
  }

  /**
   * Closes the connections whose mapping's schedule has closed (reason `schedule`) and sets the
   * timer for the next change. The timer calls it; a test that moved the injected clock may too.
   */
  enforceSchedules(): number {
    return this.closer.check();
  }

  /**
   * What the config in force asks of the policy: the neighbour table for MAC users, conntrack for
   * intercept ports, the schedules connections end by.
   */
  private followPolicy(config: GatewayConfig): void {
    if (!anyMacUsers(config.users)) this.neighbours = null;
    else this.neighbours ??= new NeighbourTable({ file: this.options.neighbourTable, timeoutMs: this.options.neighbourTimeoutMs });
    if (!config.services.some((s) => s.intercept.length > 0)) this.conntrack = null;
    else this.conntrack ??= new ConntrackTable();
    const ending = config.services.flatMap((s) => s.mappings).filter((m) => m.endAtClose && m.schedule !== null).map((m) => m.schedule!);
    this.closer.follow(config.schedules, ending);
  }

  /** Open connections and per-service totals, for `/status`. */
  status(): GatewayStatus {
    const listeners = this.listenerSet;
    return statusSnapshot({
      version: VERSION,
      state: this.state,
      services: this.services.values(),
      listenersOf: (svc) => listeners.of(svc),
      waitingFor: (name) => listeners.waitingFor(name),
      open: this.open,
      clock: this.now(),
      traffic: this.traffic,
    });
  }

  // ConnectionHost
  countBytes(c: Connection): void { this.metrics.countLive(c); }
  connected(e: ClientConnectEvent): void {
    this.traffic.opened(e.service);
    this.sink?.write(e);
    this.emit('ClientConnect', e);
  }
  disconnected(e: ClientDisconnectEvent): void {
    this.traffic.closed(e);
    this.sink?.write(e);
    this.emit('ClientDisconnect', e);
    this.services.ended(e.service);
  }

  /** `port: auto` ports just picked: said once, when they are. */
  private logPicked(): void {
    for (const p of this.autoPorts.picked) this.log('info', 'port: auto picked a port', p);
  }

  private log(level: LogRecord['level'], msg: string, fields: Record<string, unknown> = {}): void {
    this.emit('log', { level, msg, ...fields });
  }

  /** Puts `plan` in force in the listener set; connections of the listeners it closes drain for `graceMs`. */
  private commitListeners(plan: ListenPlan, fresh: readonly Listener[], graceMs: number): { bound: string[]; closed: string[] } {
    const { bound, closed, gone } = this.listenerSet.commit(plan, fresh);
    if (gone.length > 0) this.drainLater(new Set(gone), graceMs);
    return { bound, closed };
  }

  /** Connections accepted on closed listeners get `graceMs` to finish, then end with reason shutdown. */
  private drainLater(listeners: ReadonlySet<Listener>, graceMs: number): void {
    const abort = (): void => {
      this.drains.delete(timer);
      for (const c of [...this.open]) if (listeners.has(c.origin as Listener)) c.abort('shutdown');
    };
    const timer = setTimeout(abort, graceMs);
    this.drains.add(timer);
  }

  /** Runs `task` once every reload, interface poll and prepared reload before it is done. */
  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.reloading.then(task);
    this.reloading = run.then(noop, noop);
    return run;
  }

  /**
   * Re-reads the config file and applies it as a diff (see {@link reload}); `adjust` may rewrite
   * the loaded config first. Never throws: an invalid file or a failed bind leaves the running
   * config in force and says why.
   */
  reloadFromFile(adjust: (c: GatewayConfig) => GatewayConfig = (c) => c): Promise<ReloadResult> {
    return this.exclusive(async () => {
      let next: GatewayConfig;
      try {
        // Checked against the ports `port: auto` services hold: a written port may not take one.
        next = adjust((this.options.loadConfig ?? loadConfigFile)(this.cfg.file, { autoPorts: this.autoPorts.held() }));
      } catch (err) {
        return this.reloadFailed(err as Error);
      }
      const p = await this.prepare(next);
      return p.ok ? p.commit() : p.result;
    });
  }

  /**
   * Applies a new config without dropping anything: kept listeners keep their sockets, new ones
   * bind (a bind failure refuses the whole reload, and nothing of it remains), removed ones stop
   * accepting and drain. Routing, TLS, limits and timeouts apply to new connections; open ones
   * keep their upstream.
   */
  reload(next: GatewayConfig): Promise<ReloadResult> {
    return this.exclusive(async () => {
      const p = await this.prepare(next);
      return p.ok ? p.commit() : p.result;
    });
  }

  /**
   * The first half of {@link reload}, for a cluster that applies a reload in every worker or in
   * none: binds what `next` needs and holds its new listeners' clients, without putting anything
   * in force. No other reload or interface poll runs until `commit()` or `abort()` is called.
   */
  prepareReload(next: GatewayConfig): Promise<PreparedReload> {
    return new Promise((resolve) => {
      void this.exclusive(() => new Promise<void>((release) => {
        this.prepare(next).then((p) => {
          if (!p.ok) {
            release();
            return resolve(p);
          }
          let settled = false;
          const once = <T>(f: () => T) => (): T => {
            if (settled) throw new MapgateError('MAPGATE_ERR_STATE', 'this reload was already committed or aborted');
            settled = true;
            try {
              return f();
            } finally {
              release();
            }
          };
          resolve({ ok: true, commit: once(p.commit), abort: once(p.abort) });
        }, (err: Error) => {
          release();
          resolve({ ok: false, result: this.reloadFailed(err) });
        });
      }));
    });
  }

  /** Binds what `next` needs; the caller holds the reload lock and must commit or abort. */
  private async prepare(given: GatewayConfig): Promise<PreparedReload> {
    if (this.state !== 'running') return { ok: false, result: this.reloadFailed(new MapgateError('MAPGATE_ERR_STATE', `gateway is ${this.state}`)) };
    // `port: auto` services keep the port they have; new ones get theirs now.
    const next = await this.autoPorts.assign(given, this.interfaces());
    this.logPicked();
    const added = this.services.addNew(next.services);
    const plan = planListeners(next, this.interfaces());
    let fresh: Listener[];
    try {
      fresh = await this.listenerSet.bind(plan, { hold: true, lenient: false });
    } catch (err) {
      this.services.forget(added);
      return { ok: false, result: this.reloadFailed(err as Error) };
    }
    return {
      ok: true,
      commit: () => this.commitReload(next, plan, fresh, added),
      abort: () => {
        this.listenerSet.discard(fresh);
        this.services.forget(added);
        this.reloadFailed(new MapgateError('MAPGATE_ERR_RELOAD_ABORTED', 'reload aborted: another worker refused it'));
      },
    };
  }

  private commitReload(next: GatewayConfig, plan: ListenPlan, fresh: readonly Listener[], added: readonly string[]): ReloadResult {
    const { changed, removed } = diffServices(this.cfg, next);
    this.services.commit(next.services, added, removed);
    this.traffic.follow(next.services.map((s) => s.name));
    const restartOnly = ['admin', 'events', 'workers', 'interfacePollMs'].filter((k) => (k === 'admin' ? adminRestartKey(this.cfg.admin) !== adminRestartKey(next.admin) : JSON.stringify((this.cfg as never)[k]) !== JSON.stringify((next as never)[k])));
    this.cfg = next;
    this.watcher?.follow(next);
    this.followPolicy(next);
    const diff = this.commitListeners(plan, fresh, next.shutdownGraceMs);
    this.metrics.reloads.labels('success').inc();
    this.metrics.lastReloadOk.set(1);
    this.metrics.lastReloadTime.set(Date.now() / 1000);
    const summary = { added: [...added], removed: [...removed], changed: [...changed], bound: diff.bound, closed: diff.closed };
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

  /**
   * Re-resolves interface addresses; listeners follow addresses that appeared or vanished.
   * Never throws: nothing the network does may stop the gateway.
   */
  private async refreshInterfaces(): Promise<void> {
    if (this.state !== 'running') return;
    try {
      const plan = planListeners(this.cfg, this.interfaces());
      if (this.listenerSet.keepIfUnchanged(plan)) return;
      const fresh = await this.listenerSet.bind(plan, { hold: false, lenient: true });
      const diff = this.commitListeners(plan, fresh, this.cfg.shutdownGraceMs);
      if (diff.bound.length > 0 || diff.closed.length > 0) this.log('info', 'interface addresses changed', diff);
    } catch (err) {
      this.log('error', 'interface poll failed', { error: (err as Error).message });
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
        void this.exclusive(() => this.refreshInterfaces());
      }, this.options.interfacePollMs);
      this.interfaceTimer.unref();
    }
    if (this.options.watch) {
      this.watcher = new ConfigWatch(() => void this.reloadFromFile());
      this.watcher.follow(this.cfg);
    }
  }

  private onConnection(listener: Listener, socket: Socket): void {
    if (this.state !== 'running' && this.state !== 'starting') {
      socket.destroy();
      return;
    }
    new Connection(socket, listener, listener.service, this).start();
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
      // The config in force, so a reload's token and certificate apply at once.
      settings: () => this.cfg.admin,
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
    const listenersClosed = this.listenerSet.closeAll();
    if (this.open.size > 0 && graceMs > 0) await this.waitForDrain(graceMs, true);
    for (const c of [...this.open]) c.abort('shutdown');
    // Aborted relays report on their sockets' close events, a turn of the loop later.
    if (this.open.size > 0) await this.waitForDrain(ABORT_WAIT_MS);
    await listenersClosed;
    await this.teardown();
    this.state = 'closed';
  }

  /** Resolves when no connection is open, after `graceMs`, or (`hurriable`) on {@link destroy}. */
  private waitForDrain(graceMs: number, hurriable = false): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, graceMs);
      const self = this;
      function check(): void {
        if (self.open.size === 0) done();
      }
      function done(): void {
        clearTimeout(timer);
        self.off('ClientDisconnect', check);
        if (self.hurry === done) self.hurry = null;
        resolve();
      }
      this.on('ClientDisconnect', check);
      if (hurriable) this.hurry = done;
    });
  }

  private async teardown(): Promise<void> {
    for (const t of this.drains) clearTimeout(t);
    this.drains.clear();
    if (this.interfaceTimer) clearInterval(this.interfaceTimer);
    this.interfaceTimer = null;
    this.watcher?.close();
    this.watcher = null;
    this.fdMonitor?.stop();
    this.closer.stop();
    this.traffic.stop();
    await this.listenerSet.closeAll();
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

function noop(): void {}

/** Creates a gateway for a validated config. Call `start()` to listen. */
export function createGateway(config: GatewayConfig, options?: GatewayOptions): Gateway {
  return new Gateway(config, options);
}
