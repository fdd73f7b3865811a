import { readFileSync } from 'node:fs';
import { onTeardown } from './net';

/** The child PIDs of a process (a cluster primary's workers). */
export function children(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * Stops a process (SIGSTOP): a hung worker. Returns `resume()` (SIGCONT). At teardown it is
 * continued and killed whatever happened, so no stopped process outlives the test.
 */
export function stopProcess(pid: number): () => void {
  signal(pid, 'SIGSTOP');
  onTeardown(() => {
    signal(pid, 'SIGCONT');
    signal(pid, 'SIGKILL');
  });
  return () => signal(pid, 'SIGCONT');
}

/**
 * Runs `fn` while every process of `pids` but one is stopped, once for each: with a shared
 * listening socket only the running worker accepts, so `fn` talks to that worker alone.
 */
export async function withEachAlone(pids: readonly number[], fn: (pid: number) => Promise<void>): Promise<void> {
  for (const pid of pids) {
    const others = pids.filter((p) => p !== pid).map((p) => stopProcess(p));
    try {
      await fn(pid);
    } finally {
      for (const resume of others) resume();
    }
  }
}

/** Whether some socket on this host listens on TCP `port` (read from /proc/net, without connecting). */
export function isListening(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is ADDR:PORT in hex; state 0A is LISTEN.
      if (f.length > 3 && f[1].endsWith(`:${hex}`) && f[3] === '0A') return true;
    }
  }
  return false;
}

/** The value of an exposition line `name value` (name with its labels, as written), or NaN. */
export function sample(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.slice(0, l.lastIndexOf(' ')) === name);
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
}

/** GETs an admin path; resolves the status, body and how long the answer took (ms). */
export async function timedGet(admin: { host: string; port: number }, path: string): Promise<{ status: number; body: string; ms: number }> {
  const t0 = Date.now();
  const res = await fetch(`http://${admin.host}:${admin.port}${path}`);
  const body = await res.text();
  return { status: res.status, body, ms: Date.now() - t0 };
}

/** `promise`, or a rejection naming `what` after `ms`. */
export function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
