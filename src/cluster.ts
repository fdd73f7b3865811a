import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { AggregatorRegistry, Gauge, Counter, Registry } from 'prom-client';
import { createAdminServer, listenAdmin } from './admin/admin';
import { loadConfigFile } from './config/load';
import type { GatewayConfig } from './config/types';
import { watchFile } from './config/watch';
import { problemLines, refusedReloadMessage } from './errors';
import { createGateway, type ReloadResult } from './gateway';
import { reloadMetrics } from './metrics/metrics';
import { VERSION } from './version';

/**
 * Multi-core mode (`workers: N`): a primary process forks N workers that share the listeners
 * (node:cluster). The primary owns the admin endpoint (metrics aggregated over the workers),
 * config reloads (validated once, then applied by every worker), signals and worker
 * replacement; each worker is a complete gateway without an admin endpoint of its own.
 */

type Log = (record: { level: string; msg: string; [k: string]: unknown }) => void;

const MSG = {
  ready: 'mapgate:ready',
  failed: 'mapgate:start-failed',
  shutdown: 'mapgate:shutdown',
  reload: 'mapgate:reload',
  reloaded: 'mapgate:reloaded',
  status: 'mapgate:status',
  statusReply: 'mapgate:status-reply',
  metrics: 'mapgate:metrics',
  metricsReply: 'mapgate:metrics-reply',
} as const;

interface Message { type: string; id?: number; [k: string]: unknown }

/** `workers: auto` is one per core. */
export function workerCount(workers: number | 'auto'): number {
  return workers === 'auto' ? availableParallelism() : workers;
}

/** True in a process forked as a cluster worker. */
export const isWorker = cluster.isWorker;

/** How long the primary waits for a worker's answer to a reload or status request. */
const WORKER_REPLY_MS = 30_000;
/** Replacement forks of crashing workers are spaced by this much after repeated crashes. */
const RESTART_BACKOFF_MS = 1000;

/** Runs a worker: a gateway without admin endpoint, driven by the primary's messages. */
export async function runWorker(config: GatewayConfig, log: Log): Promise<number> {
  const id = cluster.worker!.id;
  const withoutAdmin = (c: GatewayConfig): GatewayConfig => ({ ...c, admin: null });
  const gateway = createGateway(withoutAdmin(config), { interfacePollMs: 5000, fdCheckMs: 1000, sharedEventLog: true });
  gateway.on('log', (r) => log({ ...r, worker: id }));
  try {
    await gateway.start();
  } catch (err) {
    process.send!({ type: MSG.failed, message: (err as Error).message });
    return 1;
  }
  process.send!({ type: MSG.ready, listeners: gateway.listenerLabels() });
  // The primary orchestrates shutdown; a terminal's Ctrl-C reaches the whole process group.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {});
  process.on('SIGHUP', () => {});
  return new Promise((resolve) => {
    const stop = (graceMs?: number): void => void gateway.close(graceMs).then(() => resolve(0));
    process.on('message', (m: Message) => {
      if (m.type === MSG.shutdown) stop(typeof m.graceMs === 'number' ? m.graceMs : undefined);
      else if (m.type === MSG.reload) void gateway.reloadFromFile(withoutAdmin).then((r) => process.send!({ type: MSG.reloaded, id: m.id, result: r }));
      else if (m.type === MSG.status) process.send!({ type: MSG.statusReply, id: m.id, status: gateway.status() });
      else if (m.type === MSG.metrics) {
        void gateway.metrics.registry.getMetricsAsJSON().then((metrics) => process.send!({ type: MSG.metricsReply, id: m.id, metrics }));
      }
    });
    // The primary is gone (killed): drain and exit rather than linger unmanaged.
    process.on('disconnect', () => stop());
  });
}

/** Asks every live worker and collects their answers (by request id), or rejects on timeout. */
class WorkerRequests {
  private next = 0;
  private readonly pending = new Map<number, { replies: unknown[]; waiting: number; done(r: unknown[]): void }>();

  constructor(private readonly replyType: string, private readonly field: string, private readonly ready: ReadonlySet<Worker>) {
    cluster.on('message', (_w: Worker, m: Message) => {
      if (m.type !== this.replyType || typeof m.id !== 'number') return;
      const p = this.pending.get(m.id);
      if (!p) return;
      p.replies.push(m[this.field]);
      if (--p.waiting === 0) {
        this.pending.delete(m.id);
        p.done(p.replies);
      }
    });
  }

  ask(type: string, extra: object = {}): Promise<unknown[]> {
    // Only workers that reported ready: a starting one has no message handler yet and would never answer.
    const workers = [...this.ready].filter((w) => w.isConnected());
    if (workers.length === 0) return Promise.resolve([]);
    const id = ++this.next;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`workers did not answer ${type} within ${WORKER_REPLY_MS} ms`));
      }, WORKER_REPLY_MS);
      this.pending.set(id, { replies: [], waiting: workers.length, done: (r) => { clearTimeout(timer); resolve(r); } });
      for (const w of workers) w.send({ type, id, ...extra });
    });
  }
}

interface WorkerStatus {
  state: string;
  services: Array<{ name: string; active: number; maxConnections: number; listeners: unknown[] }>;
  connections: unknown[];
}

/** One status for the whole gateway: services summed over workers, connections concatenated. */
function mergeStatus(statuses: WorkerStatus[], workers: number, state: string): object {
  const services = new Map<string, WorkerStatus['services'][number]>();
  for (const s of statuses) {
    for (const svc of s.services) {
      const seen = services.get(svc.name);
      if (seen) {
        seen.active += svc.active;
        seen.maxConnections += svc.maxConnections;
      } else services.set(svc.name, { ...svc });
    }
  }
  return { version: VERSION, state, workers, services: [...services.values()], connections: statuses.flatMap((s) => s.connections) };
}

/**
 * Runs the primary: forks the workers, serves the admin endpoint, watches the config, replaces
 * dead workers, and on SIGTERM/SIGINT drains every worker before exiting 0.
 */
export async function runPrimary(file: string, config: GatewayConfig, log: Log): Promise<number> {
  const count = workerCount(config.workers);
  // Workers share each listening socket and the kernel spreads connections: no per-connection
  // hand-off through the primary (round-robin would pass every socket over IPC).
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ exec: process.argv[1], args: process.argv.slice(2) });

  const registry = new Registry();
  const reload = reloadMetrics(registry);
  const workersGauge = new Gauge({ name: 'mapgate_workers', help: 'Live worker processes.', registers: [registry] });
  const restarts = new Counter({ name: 'mapgate_worker_restarts_total', help: 'Workers replaced after an unexpected exit.', registers: [registry] });
  const ready = new Set<Worker>();
  const statusRequests = new WorkerRequests(MSG.statusReply, 'status', ready);
  const reloadRequests = new WorkerRequests(MSG.reloaded, 'result', ready);
  const metricRequests = new WorkerRequests(MSG.metricsReply, 'metrics', ready);
  let state: 'starting' | 'running' | 'draining' = 'starting';
  let cfg = config;
  let recentCrashes: number[] = [];

  const fork = (): Promise<string[]> => {
    const w = cluster.fork();
    return new Promise((resolve, reject) => {
      const onMessage = (m: Message): void => {
        if (m.type === MSG.ready) { w.off('message', onMessage); ready.add(w); resolve(m.listeners as string[]); }
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
  workersGauge.set(count);
  reload.lastReloadOk.set(1);
  reload.lastReloadTime.set(Date.now() / 1000);

  cluster.on('exit', (w, code, signal) => {
    ready.delete(w);
    workersGauge.set(Object.keys(cluster.workers ?? {}).length);
    if (state !== 'running') return;
    log({ level: 'error', msg: 'worker died; replacing it', worker: w.id, code, signal });
    restarts.inc();
    const now = Date.now();
    recentCrashes = recentCrashes.filter((t) => now - t < 10_000).concat(now);
    const delay = recentCrashes.length > 3 ? RESTART_BACKOFF_MS : 0;
    setTimeout(() => {
      if (state !== 'running') return;
      fork().then(
        () => workersGauge.set(Object.keys(cluster.workers ?? {}).length),
        (err: Error) => log({ level: 'error', msg: 'replacement worker failed to start', error: err.message }),
      );
    }, delay);
  });

  let reloading: Promise<unknown> = Promise.resolve();
  const reloadAll = (): Promise<{ ok: boolean; message: string }> => {
    const run = async (): Promise<{ ok: boolean; message: string }> => {
      let next: GatewayConfig;
      try {
        next = loadConfigFile(file);
      } catch (err) {
        const problems = problemLines(err as Error);
        reload.reloads.labels('failure').inc();
        reload.lastReloadOk.set(0);
        log({ level: 'error', msg: 'config reload refused; the running config stays in force', problems });
        return { ok: false, message: refusedReloadMessage(problems) };
      }
      const results = (await reloadRequests.ask(MSG.reload)) as ReloadResult[];
      const failed = results.find((r) => !r.ok);
      if (failed || results.length === 0) {
        reload.reloads.labels('failure').inc();
        reload.lastReloadOk.set(0);
        return { ok: false, message: failed?.message ?? 'no worker to reload' };
      }
      cfg = next;
      reload.reloads.labels('success').inc();
      reload.lastReloadOk.set(1);
      reload.lastReloadTime.set(Date.now() / 1000);
      return { ok: true, message: results[0].message };
    };
    const result = reloading.then(run, run);
    reloading = result;
    return result;
  };

  const admin = cfg.admin
    ? createAdminServer({
      metrics: async () => ({
        contentType: registry.contentType,
        // Summed over workers unless a metric says otherwise (its `aggregator`), then the primary's own.
        body: (await AggregatorRegistry.aggregate((await metricRequests.ask(MSG.metrics)) as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics()) + '\n' + (await registry.metrics()),
      }),
      healthy: () => true,
      ready: () => state === 'running',
      status: async () => mergeStatus((await statusRequests.ask(MSG.status)) as WorkerStatus[], Object.keys(cluster.workers ?? {}).length, state),
      reload: reloadAll,
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
  const a = admin?.address();
  state = 'running';
  log({ level: 'info', msg: 'mapgate started', services: cfg.services.length, workers: count, listeners, admin: a && typeof a === 'object' ? { host: a.address, port: a.port } : null });
  const watcher = watchFile(file, () => void reloadAll());

  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      const graceMs = stopping ? 0 : cfg.shutdownGraceMs;
      if (stopping) log({ level: 'warn', msg: 'second signal: closing every connection now', signal });
      else log({ level: 'info', msg: 'shutting down', signal, graceMs, workers: Object.keys(cluster.workers ?? {}).length });
      stopping = true;
      state = 'draining';
      watcher.close();
      for (const w of Object.values(cluster.workers ?? {})) w?.send({ type: MSG.shutdown, graceMs });
    };
    cluster.on('exit', () => {
      if (state !== 'draining' || Object.keys(cluster.workers ?? {}).length > 0) return;
      admin?.closeAllConnections();
      admin?.close();
      log({ level: 'info', msg: 'stopped' });
      resolve(0);
    });
    process.on('SIGHUP', () => void reloadAll());
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
}
