import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTeardown } from './net';

export const CLI = join(__dirname, '..', '..', 'dist', 'cli.js');

/** The Node flags mapgate runs with: those of its executable's `#!` line (see README, Performance). */
export const NODE_FLAGS: readonly string[] = nodeFlags(readFileSync(join(__dirname, '..', '..', 'src', 'cli.ts'), 'utf8'));

/** The flags after `node` on a script's `#!/usr/bin/env -S node ...` line. */
export function nodeFlags(script: string): string[] {
  const m = /^#!\/usr\/bin\/env -S node((?: --[\w-]+(?:=\S+)?)*)\n/.exec(script);
  if (!m) throw new Error(`not a "#!/usr/bin/env -S node [flags]" script: ${script.split('\n', 1)[0]}`);
  return m[1].split(' ').filter(Boolean);
}

/** Writes a config into a fresh temp dir; returns its path. */
export function writeConfig(yaml: string, name = 'mappings.yaml'): string {
  const dir = mkdtempSync(join(tmpdir(), 'mapgate-cli-'));
  const file = join(dir, name);
  writeFileSync(file, yaml);
  return file;
}

export interface Running {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exit: Promise<number | null>;
}

/** Collects a child's stdout and stderr line by line, and its exit code. */
export function collectLines(child: ChildProcess): Running {
  const out: Running = { child, stdout: [], stderr: [], exit: new Promise((r) => child.once('exit', (code) => r(code))) };
  for (const [stream, lines] of [[child.stdout!, out.stdout], [child.stderr!, out.stderr]] as const) {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
    stream.on('end', () => { if (buf) lines.push(buf); });
  }
  return out;
}

/**
 * Runs the CLI, with the Node flags it is deployed with unless told otherwise; output is
 * collected line by line; killed (by PID) at teardown if still running.
 */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, nodeFlags: readonly string[] = NODE_FLAGS): Running {
  const child = spawn(process.execPath, [...nodeFlags, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const out = collectLines(child);
  onTeardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  return out;
}

/** Runs the CLI to completion. */
export async function cliResult(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = runCli(args);
  const code = await r.exit;
  await new Promise((res) => setImmediate(res));
  return { code, stdout: r.stdout.join('\n'), stderr: r.stderr.join('\n') };
}

/** Waits for the "mapgate started" log line and returns it parsed. */
export async function started(r: Running, ms = 10_000): Promise<{ listeners: string[]; admin: { host: string; port: number } | null }> {
  const deadline = Date.now() + ms;
  for (;;) {
    const line = r.stderr.find((l) => l.includes('"mapgate started"'));
    if (line) return JSON.parse(line);
    if (r.child.exitCode !== null) throw new Error(`mapgate exited ${r.child.exitCode}: ${r.stderr.join('\n')}`);
    if (Date.now() > deadline) throw new Error(`mapgate did not start: ${r.stderr.join('\n')}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

/** The port of `service`'s listener from the started line (`service@address:port`). */
export function startedPort(info: { listeners: string[] }, service: string): number {
  const l = info.listeners.find((x) => x.startsWith(`${service}@`));
  if (!l) throw new Error(`no listener for ${service} in ${info.listeners.join(', ')}`);
  return Number(l.slice(l.lastIndexOf(':') + 1));
}
