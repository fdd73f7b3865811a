import cluster, { type Worker } from 'node:cluster';
import { availableParallelism, networkInterfaces } from 'node:os';
import { AggregatorRegistry, Gauge, Counter, Registry } from './metrics/prom';
import { createAdminServer, listenAdmin } from './admin/admin';
import type { GatewayStatus, ServiceStatus } from './admin/status';
import { mergeClosed, mergeHistories, mergeTraffic } from './admin/traffic';
import { loadConfigFile, type ParseOptions } from './config/load';
import { AutoPorts } from './listen/auto-ports';
import type { GatewayConfig } from './config/types';
import { ConfigWatch } from './config/watch';
import { problemLines, refusedReloadMessage } from './errors';
import { createGateway, type Gateway, type PreparedReload, type ReloadResult } from './gateway';
import { reloadMetrics } from './metrics/metrics';
import { handleSignals } from './signals';
import { VERSION } from './version';

/**
 * Multi-core mode (`workers: N`): a primary process forks N workers that share the listeners
 * (node:cluster). The primary owns the admin endpoint (metrics aggregated over the workers),
 * the config (validated once and handed to every worker over IPC: workers never read the file),
 * reloads (applied by every worker or by none), signals and worker replacement; each worker is a
 * complete gateway without an admin endpoint of its own.
 *
 * The protocol, primary ⇄ worker:
 * - `hello` (worker, once it listens for messages) → `config` (the primary's current config) or
 *   `shutdown` (the primary is draining); then `ready` with its listeners, or `start-failed`.
 * - `status`, `metrics` → `reply` with the same `id`.
 * - `prepare` (a config) → `reply` `{ ok, message }`; then `commit` (→ `reply`, a ReloadResult)
 *   or `abort`, both naming the prepare's id in `prepared`.
 * - `shutdown` with `graceMs`; `graceMs: 0` ends every connection now.
 */

type Log = (record: { level: string; msg: string; [k: string]: unknown }) => void;

const MSG = {
  hello: 'mapgate:hello',
  config: 'mapgate:config',
  ready: 'mapgate:ready',
  failed: 'mapgate:start-failed',
  shutdown: 'mapgate:shutdown',
  status: 'mapgate:status',
  metrics: 'mapgate:metrics',
  prepare: 'mapgate:prepare',
  commit: 'mapgate:commit',
  abort: 'mapgate:abort',
  reply: 'mapgate:reply',
} as const;

interface Message { type: string; id?: number; [k: string]: unknown }

/** A worker's answer to `prepare`. */
interface PrepareAnswer { ok: boolean; message: string }

/** `workers: auto` is one per core. */
export function workerCount(workers: number | 'auto'): number {
  return workers === 'auto' ? availableParallelism() : workers;
}

/** True in a process forked as a cluster worker. */
export const isWorker = cluster.isWorker;

/** How long a scrape or `/status` waits for the workers (ms); it answers from those that replied. */
const SCRAPE_REPLY_MS = 2000;
/** How long the primary waits for every worker to prepare, then to commit, a reload (ms). */
const RELOAD_REPLY_MS = 5000;
/** A worker that prepared a reload and heard neither commit nor abort for this long aborts it (ms). */
const PREPARED_MAX_MS = 30_000;
/** How long after its drain a worker may take to exit (report its last events, close) before it is killed. */
const WORKER_STOP_MARGIN_MS = 5000;
/** Replacement forks of crashing workers are spaced by this much after repeated crashes. */
const RESTART_BACKOFF_MS = 1000;

function noop(): void {}

function withoutAdmin(c: GatewayConfig): GatewayConfig {
  return { ...c, admin: null };
}

/**
 * Runs a worker: a gateway without admin endpoint, driven by the primary's messages. It runs the
 * config the primary sends, never one read from the file. Resolves the exit code once the
 * gateway is closed.
 */
export function runWorker(log: Log): Promise<number> {
  const id = cluster.worker!.id;
  // The primary orchestrates shutdown; a terminal's Ctrl-C reaches the whole process group.
  process.on('SIGINT', noop);
  process.on('SIGTERM', noop);
  process.on('SIGHUP', noop);
  const send = (m: Message): void => { if (process.connected) process.send!(m, undefined, undefined, noop); };
  const reply = (requestId: number | undefined, value: unknown): void => send({ type: MSG.reply, id: requestId, value });

  return new Promise((resolve) => {
    let gateway: Gateway | null = null;
    let started: Promise<boolean> = Promise.resolve(false);
    let stopping = false;
    const prepared = new Map<number, { reload: Extract<PreparedReload, { ok: true }>; timer: NodeJS.Timeout }>();
    // Aborts that arrived while their prepare was still binding (the worker was slow or stopped).
    const abortedEarly = new Set<number>();

    const start = (config: GatewayConfig): void => {
      const gw = createGateway(withoutAdmin(config), { interfacePollMs: config.interfacePollMs, fdCheckMs: 1000, sharedEventLog: true });
      gateway = gw;
      gw.on('log', (r) => log({ ...r, worker: id }));
      started = gw.start().then(
        () => { send({ type: MSG.ready, listeners: gw.listenerLabels() }); return true; },
        (err: Error) => { send({ type: MSG.failed, message: err.message }); resolve(1); return false; },
      );
    };

    const abortPrepared = (prepareId: number): void => {
      const p = prepared.get(prepareId);
      if (!p) return;
      prepared.delete(prepareId);
      clearTimeout(p.timer);
      p.reload.abort();
    };

    const stop = (graceMs?: number): void => {
      stopping = true;
      for (const prepareId of [...prepared.keys()]) abortPrepared(prepareId);
      void started.then(() => {
        if (!gateway) return resolve(0);
        // A second stop (graceMs 0) must cut a draining close short: close(0) would join it.
        return (graceMs === 0 ? gateway.destroy() : gateway.close(graceMs)).then(() => resolve(0));
      });
    };

    const prepare = async (prepareId: number, config: GatewayConfig): Promise<void> => {
      // Handed a config just before this reload began: answer once started, on the same footing.
      await started;
      const p = await gateway!.prepareReload(withoutAdmin(config));
      if (!p.ok) {
        abortedEarly.delete(prepareId);
        return reply(prepareId, { ok: false, message: p.result.message } satisfies PrepareAnswer);
      }
      if (abortedEarly.delete(prepareId) || stopping) return p.abort();
      const timer = setTimeout(function onPreparedExpired() {
        log({ level: 'warn', msg: 'prepared reload neither committed nor aborted in time; aborting it', worker: id, afterMs: PREPARED_MAX_MS });
        abortPrepared(prepareId);
      }, PREPARED_MAX_MS);
      prepared.set(prepareId, { reload: p, timer });
      reply(prepareId, { ok: true, message: 'prepared' } satisfies PrepareAnswer);
    };

    const commit = (requestId: number | undefined, prepareId: number): void => {
      const p = prepared.get(prepareId);
      if (!p) return reply(requestId, { ok: false, message: `worker ${id}: no prepared reload ${prepareId} (expired or aborted)` });
      prepared.delete(prepareId);
      clearTimeout(p.timer);
      reply(requestId, p.reload.commit());
    };

    process.on('message', function onPrimaryMessage(m: Message) {
      switch (m.type) {
        case MSG.config:
          if (!gateway) start(m.config as GatewayConfig);
          break;
        case MSG.shutdown:
          stop(typeof m.graceMs === 'number' ? m.graceMs : undefined);
          break;
        case MSG.status:
          if (gateway) reply(m.id, gateway.status());
          break;
        case MSG.metrics:
          if (gateway) void gateway.metrics.registry.getMetricsAsJSON().then((metrics) => reply(m.id, metrics));
          break;
        case MSG.prepare:
          void prepare(m.id!, m.config as GatewayConfig);
          break;
        case MSG.commit:
          commit(m.id, m.prepared as number);
          break;
        case MSG.abort:
          if (prepared.has(m.prepared as number)) abortPrepared(m.prepared as number);
          else abortedEarly.add(m.prepared as number);
          break;
      }
    });
    // The primary is gone (killed): drain and exit rather than linger unmanaged.
    process.on('disconnect', () => stop());
    send({ type: MSG.hello });
  });
}

/** Sends to a worker unless its channel is closed; an error from a closing channel is ignored. */
function sendTo(w: Worker, m: Message): boolean {
  if (!w.isConnected()) return false;
  w.send(m, noop);
  return true;
}

/** `{ worker, pid }`, as logs and `/status` name a worker. */
function who(w: Worker): { worker: number; pid: number | undefined } {
  return { worker: w.id, pid: w.process.pid };
}

/** The answers to one request: from the workers that replied in time, and the live ones that did not. */
interface Answers<T> {
  readonly id: number;
  readonly answers: ReadonlyArray<{ readonly worker: Worker; readonly value: T }>;
  readonly missing: readonly Worker[];
}

/**
 * Requests to workers, matched to their `reply` by id. A request settles when every asked
 * worker has answered or gone (exited, disconnected), or at its deadline: never later, and it
 * never rejects.
 */
class WorkerRequests {
  private next = 0;
  private readonly pending = new Map<number, { waiting: Set<Worker>; answers: Array<{ worker: Worker; value: unknown }>; finish(): void }>();

  constructor() {
    cluster.on('message', (w: Worker, m: Message) => {
      if (m.type !== MSG.reply || typeof m.id !== 'number') return;
      const p = this.pending.get(m.id);
      if (!p || !p.waiting.delete(w)) return;
      p.answers.push({ worker: w, value: m.value });
      if (p.waiting.size === 0) p.finish();
    });
    const gone = (w: Worker): void => {
      for (const p of [...this.pending.values()]) if (p.waiting.delete(w) && p.waiting.size === 0) p.finish();
    };
    cluster.on('disconnect', gone);
    cluster.on('exit', gone);
  }

  /** Sends `message` (given a fresh `id`) to each of `workers`; resolves within `ms`. */
  ask<T>(workers: Iterable<Worker>, message: Message, ms: number): Promise<Answers<T>> {
    const id = ++this.next;
    return new Promise((resolve) => {
      const waiting = new Set<Worker>();
      const answers: Array<{ worker: Worker; value: unknown }> = [];
      const finish = (): void => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve({ id, answers: answers as Array<{ worker: Worker; value: T }>, missing: [...waiting] });
      };
      const timer = setTimeout(finish, ms);
      this.pending.set(id, { waiting, answers, finish });
      for (const w of workers) if (sendTo(w, { ...message, id })) waiting.add(w);
      if (waiting.size === 0) finish();
    });
  }
}

type WorkerStatus = Pick<GatewayStatus, 'state' | 'services' | 'connections' | 'closed' | 'history'>;

/**
 * One status for the whole gateway: services summed over the workers that answered (open and
 * limit, rates, the last minute), connections concatenated, the recent closed lists and the
 * histories merged; `missingWorkers` names live workers that did not answer in time (left out).
 */
function mergeStatus(statuses: WorkerStatus[], workers: number, state: string, missing: readonly Worker[]): object {
  const services = new Map<string, ServiceStatus>();
  for (const s of statuses) {
    for (const svc of s.services) {
      const seen = services.get(svc.name);
      services.set(svc.name, seen ? {
        ...seen, active: seen.active + svc.active, maxConnections: seen.maxConnections + svc.maxConnections, ...mergeTraffic(seen, svc),
      } : svc);
    }
  }
  return {
    version: VERSION, state, workers, missingWorkers: missing.map(who),
    services: [...services.values()], connections: statuses.flatMap((s) => s.connections),
    closed: mergeClosed(statuses.map((s) => s.closed)), history: mergeHistories(statuses.map((s) => s.history)),
  };
}

/**
 * Runs the primary: forks the workers and hands each its config, serves the admin endpoint,
 * watches the config, replaces dead workers, and on SIGTERM/SIGINT drains every worker before
 * exiting 0 (a second signal ends every connection now). A reload re-reads the file with
 * `loadConfig` (`mapgate run -L` adds its tunnels).
 */
export async function runPrimary(file: string, config: GatewayConfig, log: Log, loadConfig: (file: string, options?: ParseOptions) => GatewayConfig = loadConfigFile): Promise<number> {
  const count = workerCount(config.workers);
  // Workers share each listening socket and the kernel spreads connections: no per-connection
  // hand-off through the primary (round-robin would pass every socket over IPC).
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ exec: process.argv[1], args: process.argv.slice(2) });

  // node:cluster keeps an exited worker in cluster.workers until its IPC channel has closed too,
  // and which of the two the primary sees first is chance: a worker that exited is not live.
  const running = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead());
  const liveWorkers = (): number => running().length;
  const registry = new Registry();
  const reload = reloadMetrics(registry);
  new Gauge({ name: 'mapgate_workers', help: 'Live worker processes.', registers: [registry], collect() { this.set(liveWorkers()); } });
  const restarts = new Counter({ name: 'mapgate_worker_restarts_total', help: 'Workers replaced after an unexpected exit.', registers: [registry] });
  const requests = new WorkerRequests();
  // Workers handed a config: they answer requests and take part in reloads.
  const members = new Set<Worker>();
  // Live workers that missed a deadline: warned about once, until they answer again.
  const unanswered = new Set<Worker>();
  let state: 'starting' | 'running' | 'draining' = 'starting';
  // The primary picks `port: auto` ports, so every worker listens on the same one.
  const autoPorts = new AutoPorts();
  let cfg = await autoPorts.assign(config, networkInterfaces());
  const logPicked = (): void => { for (const p of autoPorts.picked) log({ level: 'info', msg: 'port: auto picked a port', ...p }); };
  logPicked();
  // The config file and every file it read (TLS material): a change to any reloads.
  const watcher = new ConfigWatch(() => void reloadAll());
  let recentCrashes: number[] = [];

  // Reloads and config hand-outs run one at a time: a worker starting during a reload gets the
  // config that reload leaves in force, and every reload sees every worker that runs a config.
  let lock: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(task: () => Promise<T> | T): Promise<T> => {
    const run = lock.then(task);
    lock = run.then(noop, noop);
    return run;
  };

  const noteMissing = (request: string, r: Answers<unknown>): void => {
    const late = r.missing.filter((w) => !unanswered.has(w));
    for (const w of late) unanswered.add(w);
    if (late.length > 0) log({ level: 'warn', msg: `workers did not answer ${request} within ${SCRAPE_REPLY_MS} ms; answering without them`, workers: late.map(who) });
    const back = r.answers.filter((a) => unanswered.delete(a.worker));
    if (back.length > 0) log({ level: 'info', msg: 'workers answer again', workers: back.map((a) => who(a.worker)) });
  };

  cluster.on('message', (w: Worker, m: Message) => {
    if (m.type !== MSG.hello) return;
    void exclusive(() => {
      if (state === 'draining') sendTo(w, { type: MSG.shutdown, graceMs: 0 });
      else if (sendTo(w, { type: MSG.config, config: cfg })) members.add(w);
    });
  });

  const fork = (): Promise<string[]> => {
    const w = cluster.fork();
    return new Promise((resolve, reject) => {
      const onMessage = (m: Message): void => {
        if (m.type === MSG.ready) { w.off('message', onMessage); resolve(m.listeners as string[]); }
        if (m.type === MSG.failed) { w.off('message', onMessage); reject(new Error(String(m.message))); }
      };
      w.on('message', onMessage);
      w.once('exit', (code) => reject(new Error(`worker exited with code ${code} before it was ready`)));
    });
  };

  let listeners: string[];
  try {
    const all = await Promise.all(Array.from({ length: count }, fork));
    listeners = all[0];
  } catch (err) {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
    process.stderr.write(`mapgate: ${(err as Error).message}\n`);
    return 1;
  }
  reload.lastReloadOk.set(1);
  reload.lastReloadTime.set(Date.now() / 1000);

  cluster.on('exit', (w, code, signal) => {
    members.delete(w);
    unanswered.delete(w);
    if (state !== 'running') return;
    log({ level: 'error', msg: 'worker died; replacing it', worker: w.id, pid: w.process.pid, code, signal });
    restarts.inc();
    const now = Date.now();
    recentCrashes = recentCrashes.filter((t) => now - t < 10_000).concat(now);
    const delay = recentCrashes.length > 3 ? RESTART_BACKOFF_MS : 0;
    setTimeout(() => {
      if (state !== 'running') return;
      fork().catch((err: Error) => log({ level: 'error', msg: 'replacement worker failed to start', error: err.message }));
    }, delay);
  });

  const refuse = (message: string, fields: Record<string, unknown>): { ok: false; message: string } => {
    reload.reloads.labels('failure').inc();
    reload.lastReloadOk.set(0);
    log({ level: 'error', msg: 'config reload refused; the running config stays in force', ...fields });
    return { ok: false, message };
  };

  /** Validates the file once, then two-phase: every live worker prepares it, then all commit, or all abort. */
  const reloadAll = (): Promise<{ ok: boolean; message: string }> => exclusive(async () => {
    let next: GatewayConfig;
    try {
      next = loadConfig(file, { autoPorts: autoPorts.held() });
    } catch (err) {
      const problems = problemLines(err as Error);
      return refuse(refusedReloadMessage(problems), { problems });
    }
    next = await autoPorts.assign(next, networkInterfaces());
    logPicked();
    const prep = await requests.ask<PrepareAnswer>(members, { type: MSG.prepare, config: next }, RELOAD_REPLY_MS);
    const failed = prep.answers.find((a) => !a.value.ok);
    if (failed || prep.missing.length > 0 || prep.answers.length === 0) {
      for (const w of [...prep.answers.filter((a) => a.value.ok).map((a) => a.worker), ...prep.missing]) sendTo(w, { type: MSG.abort, prepared: prep.id });
      if (failed) return refuse(failed.value.message, { refusedBy: who(failed.worker), message: failed.value.message });
      const problem = prep.missing.length > 0
        ? `workers ${prep.missing.map((w) => `${w.id} (pid ${w.process.pid})`).join(', ')} did not answer within ${RELOAD_REPLY_MS} ms; no worker changed`
        : 'no worker to reload';
      return refuse(refusedReloadMessage([problem]), { problems: [problem], workers: prep.missing.map(who) });
    }
    const done = await requests.ask<ReloadResult>(prep.answers.map((a) => a.worker), { type: MSG.commit, prepared: prep.id }, RELOAD_REPLY_MS);
    cfg = next;
    watcher.follow(next);
    const partial = [...done.answers.filter((a) => !a.value.ok).map((a) => a.worker), ...done.missing];
    if (partial.length > 0) log({ level: 'error', msg: 'workers did not confirm the commit of a prepared reload', workers: partial.map(who) });
    reload.reloads.labels('success').inc();
    reload.lastReloadOk.set(1);
    reload.lastReloadTime.set(Date.now() / 1000);
    return { ok: true, message: done.answers.find((a) => a.value.ok)?.value.message ?? 'reloaded' };
  });

  const admin = cfg.admin
    ? createAdminServer({
      metrics: async () => {
        const r = await requests.ask<object>(members, { type: MSG.metrics }, SCRAPE_REPLY_MS);
        noteMissing('a metrics scrape', r);
        // Summed over workers unless a metric says otherwise (its `aggregator`), then the primary's own.
        const workers = AggregatorRegistry.aggregate(r.answers.map((a) => a.value));
        new Gauge({ name: 'mapgate_workers_up', help: 'Workers whose metrics are in this scrape (mapgate_workers counts the live ones).', registers: [workers] }).set(r.answers.length);
        return { contentType: registry.contentType, body: (await workers.metrics()) + '\n' + (await registry.metrics()) };
      },
      healthy: () => true,
      ready: () => state === 'running',
      status: async () => {
        const r = await requests.ask<WorkerStatus>(members, { type: MSG.status }, SCRAPE_REPLY_MS);
        noteMissing('a status request', r);
        return mergeStatus(r.answers.map((a) => a.value), liveWorkers(), state, r.missing);
      },
      reload: reloadAll,
      // The primary's config in force, so a reload's token and certificate apply at once.
      settings: () => cfg.admin,
    })
    : null;
  if (admin && cfg.admin) {
    try {
      await listenAdmin(admin, cfg.admin.host, cfg.admin.port);
    } catch (err) {
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
      process.stderr.write(`mapgate: ${(err as Error).message}\n`);
      return 1;
    }
  }
  state = 'running';
  watcher.follow(cfg);
  return new Promise((resolve) => {
    // A worker that has not exited this long after its drain ends is hung (stopped, spinning):
    // it is killed, so a stop always ends.
    let killTimer: NodeJS.Timeout | null = null;
    // Every worker drains for graceMs (0: a second signal, close every connection now).
    const stop = (graceMs: number): void => {
      state = 'draining';
      watcher.close();
      for (const w of running()) sendTo(w, { type: MSG.shutdown, graceMs });
      if (killTimer) clearTimeout(killTimer);
      killTimer = setTimeout(function killHungWorkers() {
        const hung = running();
        log({ level: 'error', msg: 'workers did not stop in time; killing them', workers: hung.map((w) => ({ worker: w.id, pid: w.process.pid })) });
        for (const w of hung) w.process.kill('SIGKILL');
      }, graceMs + WORKER_STOP_MARGIN_MS);
    };
    cluster.on('exit', () => {
      if (state !== 'draining' || liveWorkers() > 0) return;
      if (killTimer) clearTimeout(killTimer);
      admin?.closeAllConnections();
      admin?.close();
      log({ level: 'info', msg: 'stopped' });
      resolve(0);
    });
    handleSignals({
      reload: () => void reloadAll(),
      drain(signal) {
        log({ level: 'info', msg: 'shutting down', signal, graceMs: cfg.shutdownGraceMs, workers: liveWorkers() });
        stop(cfg.shutdownGraceMs);
      },
      stopNow(signal) {
        log({ level: 'warn', msg: 'second signal: closing every connection now', signal });
        stop(0);
      },
    });
    // Last: once this line is out, the file is watched and every signal is handled.
    const a = admin?.address();
    log({ level: 'info', msg: 'mapgate started', services: cfg.services.length, workers: count, listeners, admin: a && typeof a === 'object' ? { host: a.address, port: a.port } : null });
  });
}
