import type { Server, Socket } from 'node:net';
import type { ServiceState } from '../connection';
import { hostPortLabel } from '../config/parse-values';
import { BindError } from '../errors';
import type { LogRecord } from '../events/events';
import { listenTcp, serverLabel } from './listener';
import type { ListenPlan, ListenSpec } from './plan';

/** One listening socket: an address:port of a service (its own port or an intercept port). */
export interface Listener {
  readonly key: string;
  intercept: boolean;
  readonly server: Server;
  /** `address:port` actually bound (port 0 resolved). */
  readonly label: string;
  service: ServiceState;
  /**
   * Bound by a reload that is prepared but not committed (a cluster waits for every worker):
   * its clients wait here, paused, until the commit starts them or an abort closes them.
   */
  held: Socket[] | null;
}

/** What the listener set needs from its owner. */
export interface ListenerSetHost {
  /** The service a listener of the plan belongs to (present for every service of the plan). */
  service(name: string): ServiceState;
  /** A client accepted on a listener in force. */
  accept(listener: Listener, socket: Socket): void;
  acceptError(listener: Listener, err: NodeJS.ErrnoException): void;
  log(level: LogRecord['level'], msg: string, fields?: Record<string, unknown>): void;
}

/** What a commit changed: `service@address:port` of listeners opened and closed, and the closed ones. */
export interface ListenerDiff {
  readonly bound: string[];
  readonly closed: string[];
  /** Closed listeners, whose open connections the owner drains. */
  readonly gone: readonly Listener[];
}

/** Clients a prepared listener holds before its reload commits; more are closed. */
const MAX_HELD = 1024;

function onHeldError(): void {
  // A held client that resets is simply gone; its socket closes and is never started.
}

/**
 * The listening sockets of a gateway, kept equal to a listener plan: binds what a plan adds
 * (all or nothing, but for addresses that may come later), re-points kept sockets at their
 * service, closes what a plan drops, and remembers which addresses are waited for and which
 * services have no address at all, so each is logged once.
 */
export class ListenerSet {
  private readonly listening = new Map<string, Listener>();
  /** Listener keys whose address could not be bound yet, with the error: retried at every interface poll. */
  private readonly waiting = new Map<string, { readonly service: string; readonly address: string; readonly error: string }>();
  /** Services whose bindings have no address on this host now. */
  private addressless = new Set<string>();
  /** The plan's clashes last logged, so each is logged once while it lasts. */
  private clashes = new Set<string>();

  constructor(private readonly host: ListenerSetHost) {}

  get size(): number { return this.listening.size; }
  values(): IterableIterator<Listener> { return this.listening.values(); }

  /** Listeners of one service, in force. */
  of(service: ServiceState): Listener[] {
    return [...this.listening.values()].filter((l) => l.service === service);
  }

  /** Addresses of a service's interfaces it could not bind yet, with why. */
  waitingFor(service: string): Array<{ address: string; error: string }> {
    return [...this.waiting.values()].filter((w) => w.service === service).map((w) => ({ address: w.address, error: w.error }));
  }

  /** Whether the listeners in force are exactly the plan's; if so, only the bookkeeping follows it (waited-for addresses, services without one). */
  keepIfUnchanged(plan: ListenPlan): boolean {
    const keys = new Set(plan.specs.map((p) => p.key));
    if (plan.specs.length !== this.listening.size || ![...this.listening.keys()].every((k) => keys.has(k))) return false;
    for (const key of this.waiting.keys()) if (!keys.has(key)) this.waiting.delete(key);
    this.noteAddressless(plan);
    return true;
  }

  /**
   * Binds the listeners of `plan` that are not open yet, held (see {@link Listener.held}) when
   * `hold`. A failure to bind rejects with every failure named, after closing what it bound,
   * except where a retry is the answer: an address read off an interface that is not usable yet
   * (EADDRNOTAVAIL: IPv6 duplicate address detection, a link coming up), or any failure when
   * `lenient` (the interface poll, which has nothing to refuse). Those are logged once and retried
   * at the next poll.
   */
  async bind(plan: ListenPlan, options: { hold: boolean; lenient: boolean }): Promise<Listener[]> {
    const fresh = plan.specs.filter((p) => !this.listening.has(p.key));
    const results = await Promise.allSettled(fresh.map((p) => this.bindOne(p, options.hold)));
    const bound: Listener[] = [];
    const failed: BindError[] = [];
    const deferred: Array<[ListenSpec, BindError]> = [];
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') bound.push(r.value);
      else if (options.lenient || (!fresh[i].literal && (r.reason as BindError).systemCode === 'EADDRNOTAVAIL')) deferred.push([fresh[i], r.reason as BindError]);
      else failed.push(r.reason as BindError);
    });
    if (failed.length > 0) {
      await Promise.all(bound.map((l) => closeServer(l.server)));
      if (failed.length > 1) failed[0].message = failed.map((e) => e.message).join('\n');
      throw failed[0];
    }
    for (const [spec, err] of deferred) {
      if (this.waiting.has(spec.key)) continue;
      this.waiting.set(spec.key, { service: spec.service, address: hostPortLabel(spec.address, spec.port), error: err.message });
      this.host.log('warn', 'address not usable yet; retrying at every interface poll', { service: spec.service, address: spec.address, port: spec.port, error: err.message });
    }
    return bound;
  }

  /**
   * Puts `plan` in force with the `fresh` listeners {@link bind} opened: kept sockets are
   * re-pointed at their (possibly new) service, held clients start, listeners the plan no longer
   * has stop accepting (their connections are the owner's to drain).
   */
  commit(plan: ListenPlan, fresh: readonly Listener[]): ListenerDiff {
    const wanted = new Map(plan.specs.map((p) => [p.key, p]));
    const gone: Listener[] = [];
    for (const [key, l] of this.listening) {
      const p = wanted.get(key);
      if (!p) {
        gone.push(l);
        continue;
      }
      const svc = this.host.service(p.service);
      if (l.service !== svc) {
        l.service.metrics.listeners.dec();
        svc.metrics.listeners.inc();
        l.service = svc;
      }
      l.intercept = p.intercept;
    }
    for (const l of fresh) {
      this.listening.set(l.key, l);
      l.service.metrics.listeners.inc();
      if (this.waiting.delete(l.key)) this.host.log('info', 'address usable now: listening', { service: l.service.config.name, listener: l.label });
      const held = l.held;
      l.held = null;
      for (const socket of held ?? []) {
        socket.off('error', onHeldError);
        this.host.accept(l, socket);
      }
    }
    for (const l of gone) {
      this.listening.delete(l.key);
      l.service.metrics.listeners.dec();
      l.server.close();
    }
    for (const key of this.waiting.keys()) if (!wanted.has(key)) this.waiting.delete(key);
    this.noteAddressless(plan);
    const label = (l: Listener): string => `${l.service.config.name}@${l.label}`;
    return { bound: fresh.map(label), closed: gone.map(label), gone };
  }

  /** Closes listeners {@link bind} opened for a reload that is not going to be committed. */
  discard(fresh: readonly Listener[]): void {
    for (const l of fresh) {
      for (const socket of l.held ?? []) socket.destroy();
      l.held = null;
      l.server.close();
    }
  }

  /** Stops every listener accepting; resolves when their accepted sockets are all closed too. */
  closeAll(): Promise<unknown> {
    const all = [...this.listening.values()];
    this.listening.clear();
    for (const l of all) {
      l.service.metrics.listeners.dec();
      for (const socket of l.held ?? []) socket.destroy();
    }
    return Promise.all(all.map((l) => closeServer(l.server)));
  }

  /** A client of a listener that is held (prepared, not committed): kept, paused, or closed when too many wait. */
  hold(listener: Listener, socket: Socket): boolean {
    if (!listener.held) return false;
    if (listener.held.length >= MAX_HELD) {
      socket.destroy();
      return true;
    }
    socket.on('error', onHeldError);
    listener.held.push(socket);
    return true;
  }

  /** Logs services whose bindings lost every address, and those that got one back. */
  private noteAddressless(plan: ListenPlan): void {
    const now = new Set(plan.addressless);
    for (const name of now) {
      if (!this.addressless.has(name)) this.host.log('warn', 'service has no address to listen on: no listeners until its interfaces get one', { service: name });
    }
    for (const name of this.addressless) {
      if (!now.has(name)) this.host.log('info', 'service has an address to listen on again', { service: name });
    }
    this.addressless = now;
    const clashes = new Set(plan.clashes);
    for (const c of clashes) {
      if (!this.clashes.has(c)) this.host.log('warn', 'another service of the config already listens on that address and port: it keeps it', { listener: c });
    }
    this.clashes = clashes;
  }

  private async bindOne(p: ListenSpec, hold: boolean): Promise<Listener> {
    const service = this.host.service(p.service);
    let server: Server;
    try {
      server = await listenTcp(p.address, p.port, (socket) => {
        if (!this.hold(listener, socket)) this.host.accept(listener, socket);
      });
    } catch (err) {
      throw new BindError(p.service, p.address, p.port, err as NodeJS.ErrnoException);
    }
    const listener: Listener = { key: p.key, intercept: p.intercept, server, label: serverLabel(server), service, held: hold ? [] : null };
    server.on('error', (err: NodeJS.ErrnoException) => this.host.acceptError(listener, err));
    return listener;
  }
}

/** Closes a server; resolves once it and every socket it accepted are closed. */
export function closeServer(server: { readonly listening: boolean; close(cb: () => void): unknown }): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}
