import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTeardown } from '../helpers/net';
import { CLI, NODE_FLAGS, collectLines, started, startedPort, type Running } from '../helpers/process';
import type { ClientConnectEvent, ClientDisconnectEvent } from '../../src/events/events';

/** The stress suite's child-process scripts. */
export const UPSTREAM = join(__dirname, 'upstream.js');
export const CLIENTS = join(__dirname, 'clients.js');

/** Open files every stress process may have: the hard limit of the CI machine. */
export const NOFILE = 20_000;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Every PID of a process tree (the process, then its descendants), from /proc's `children` lists.
 * A gateway with `workers` forks; its workers are counted and killed with it.
 */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let children = '';
    try {
      children = readFileSync(`/proc/${out[i]}/task/${out[i]}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const c of children.split(' ')) if (c.trim()) out.push(Number(c));
  }
  return out;
}

/** VmRSS of one process in KiB (0 once it is gone). */
export function rssKiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Kills a process and its descendants by PID (SIGKILL), and waits for the process to exit. */
async function killTree(child: ChildProcess): Promise<void> {
  // An open stdin pipe would keep jest's event loop alive after the child is gone.
  child.stdin?.destroy();
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  for (const pid of processTree(child.pid).reverse()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 5000)))]);
  clearTimeout(timer);
}

/**
 * Runs `node SCRIPT ARGS` (or the given argv) under `ulimit -n NOFILE`, collecting stdout and
 * stderr line by line; stdin stays open for commands. Killed by PID, with its children, at teardown.
 */
export function spawnNode(args: string[], options: { prefix?: string[]; nofile?: number } = {}): Running & { send(line: string): void } {
  const nofile = options.nofile ?? NOFILE;
  // `exec` keeps the PID: the one we kill is node itself, not a shell around it.
  const script = `ulimit -n ${nofile} && exec "$@"`;
  const argv = [...(options.prefix ?? []), 'bash', '-c', script, 'bash', process.execPath, ...args];
  const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const out = collectLines(child);
  child.stdin!.on('error', () => {});
  onTeardown(() => killTree(child));
  return { ...out, send: (line: string) => void child.stdin!.write(line + '\n') };
}

/** Waits for the first stdout line at index `from` or later that starts with `prefix`; returns the rest of it. */
export async function waitLine(r: Running, prefix: string, ms: number, from = 0): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    for (let i = from; i < r.stdout.length; i++) if (r.stdout[i].startsWith(prefix)) return r.stdout[i].slice(prefix.length);
    if (r.child.exitCode !== null || r.child.signalCode !== null) throw new Error(`process exited (${r.child.exitCode ?? r.child.signalCode}) before "${prefix}": ${r.stderr.join('\n')}`);
    if (Date.now() > deadline) throw new Error(`no "${prefix}" line within ${ms} ms; stdout: ${r.stdout.slice(-5).join(' | ')}; stderr: ${r.stderr.slice(-5).join(' | ')}`);
    await sleep(25);
  }
}

/** Sends a command to a child and parses its JSON answer, the line `ANSWER {...}`. */
export async function ask<T>(r: Running & { send(line: string): void }, command: string, answer: string, ms: number): Promise<T> {
  const from = r.stdout.length;
  r.send(command);
  return JSON.parse(await waitLine(r, `${answer} `, ms, from)) as T;
}

export interface UpstreamStats { open: number; accepted: number; maxOpen: number; sent: number }

/** Starts test/stress/upstream.js (`echo`, or `stream MB`); resolves its port. */
export async function startUpstream(args: string[], prefix?: string[]): Promise<{ port: number; stats(): Promise<UpstreamStats>; proc: ReturnType<typeof spawnNode> }> {
  const proc = spawnNode([UPSTREAM, ...args], { prefix });
  const port = Number(await waitLine(proc, 'port ', 10_000));
  return { port, proc, stats: () => ask<UpstreamStats>(proc, 'stats', 'stats', 10_000) };
}

export type GatewayEvent = ClientConnectEvent | ClientDisconnectEvent;

export interface GatewayProcess {
  readonly pid: number;
  readonly run: Running;
  /** The bound port of a service's (first, or given address's) listener, from the "mapgate started" line. */
  port(service: string, address?: string): number;
  /** Every event written to the events file so far; a line that is not JSON throws. */
  events(): GatewayEvent[];
  /** VmRSS in KiB, summed over the gateway process and its workers. */
  rssKiB(): number;
  /** PIDs of the gateway process and its workers. */
  pids(): number[];
}

/**
 * Runs `node dist/cli.js run -c FILE` under `ulimit -n NOFILE` as its own process, with the
 * admin endpoint off and events written to a JSON-lines file next to the config. `body` is
 * the rest of the YAML (`services:`, `workers:` ...). Killed by PID, workers too, at teardown.
 */
export async function startGatewayProcess(body: string): Promise<GatewayProcess> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first (npm run test:stress does)`);
  const dir = mkdtempSync(join(tmpdir(), 'mapgate-stress-'));
  const eventsFile = join(dir, 'events.jsonl');
  const config = join(dir, 'mappings.yaml');
  writeFileSync(config, `admin: { listen: "off" }\nlog: { events: "${eventsFile}" }\n${body}`);
  onTeardown(() => rmSync(dir, { recursive: true, force: true }));
  const run = spawnNode([...NODE_FLAGS, CLI, 'run', '-c', config]);
  const info = await started(run, 20_000);
  const pid = run.child.pid!;
  return {
    pid,
    run,
    port: (service, address) => startedPort(address === undefined ? info : { listeners: info.listeners.filter((l) => l.startsWith(`${service}@${address}:`)) }, service),
    events: () => {
      if (!existsSync(eventsFile)) return [];
      const text = readFileSync(eventsFile, 'utf8');
      // A line still being written has no newline yet; leave it for the next read.
      const lines = text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean);
      return lines.map((l) => JSON.parse(l) as GatewayEvent);
    },
    rssKiB: () => processTree(pid).reduce((sum, p) => sum + rssKiB(p), 0),
    pids: () => processTree(pid),
  };
}
