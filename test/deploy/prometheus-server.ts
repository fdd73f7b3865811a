import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { which } from './tools';

/**
 * A port nothing listens on right now, for Prometheus, which cannot listen on port 0 and say
 * which port it got. (The deploy suite has its own jest config and no test/helpers teardown.)
 */
export async function unusedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * A real Prometheus (Debian's package; test/deploy/setup.sh installs it) with `config` as its
 * prometheus.yml, its data in `dir`, on a loopback port; ready when {@link start} resolves.
 */
export class PrometheusServer {
  private output = '';

  private constructor(readonly url: string, private readonly child: ChildProcess) {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.output = (this.output + d).slice(-8000)));
    child.once('error', (err) => (this.output += String(err)));
  }

  static async start(dir: string, config: string): Promise<PrometheusServer> {
    writeFileSync(join(dir, 'prometheus.yml'), config);
    const port = await unusedPort();
    const child = spawn(which('prometheus') ?? 'prometheus', [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    const server = new PrometheusServer(`http://127.0.0.1:${port}`, child);
    await server.until('prometheus ready', 30_000, async () => (await fetch(`${server.url}/-/ready`)).status === 200);
    return server;
  }

  /** Resolves once `check` holds (polled every 250 ms); rejects with Prometheus's log if it exits or `ms` pass. */
  async until(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (await check().catch(() => false)) return;
      if (this.child.exitCode !== null) throw new Error(`prometheus exited ${this.child.exitCode}: ${this.output}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; prometheus log: ${this.output.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** SIGTERM, then SIGKILL after 5 s; resolves once it has exited. */
  async stop(): Promise<void> {
    const p = this.child;
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}
