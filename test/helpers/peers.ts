import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTeardown } from './net';
import { collectLines, type Running } from './process';

/**
 * Real third-party peers for the tests: HAProxy and nginx from Debian's packages (`.ci/run`
 * installs them). Each runs in the foreground from a config in a temp dir of its own and is
 * killed by its PID at teardown. A missing binary fails the test that needs it: never a skip.
 */

export const HAPROXY = '/usr/sbin/haproxy';
export const NGINX = '/usr/sbin/nginx';
export const CURL = '/usr/bin/curl';

function need(binary: string, pkg: string): void {
  if (!existsSync(binary)) throw new Error(`${binary} is missing: install Debian's ${pkg} package (.ci/run does)`);
}

/**
 * `describe`, or — outside CI, when a peer is not installed — `describe.skip` with a warning
 * naming what to install. Under CI (.ci/run installs every peer) a missing one fails the tests.
 */
export function describeWithPeers(peers: ReadonlyArray<readonly [binary: string, pkg: string]>): jest.Describe {
  const missing = peers.filter(([binary]) => !existsSync(binary));
  if (missing.length === 0 || process.env.CI) return describe;
  // eslint-disable-next-line no-console
  console.warn(`SKIPPED: ${missing.map(([b]) => b).join(', ')} missing (apt-get install -y ${missing.map(([, p]) => p).join(' ')})`);
  return describe.skip;
}

/** Resolves once something accepts on 127.0.0.1:port; rejects with the peer's output after `ms`. */
async function accepting(port: number, peer: Running, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (peer.child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`peer not accepting on ${port} (exit ${peer.child.exitCode}):\n${[...peer.stdout, ...peer.stderr].join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function run(binary: string, args: string[]): Running {
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  onTeardown(() => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  }));
  return collectLines(child);
}

/** HAProxy with `config` (its `global` and `defaults` sections are added), accepting on `port`. */
export async function startHaproxy(config: string, port: number): Promise<Running> {
  need(HAPROXY, 'haproxy');
  const dir = mkdtempSync(join(tmpdir(), 'mapgate-haproxy-'));
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(file, `global
  maxconn 256
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
${config}
`);
  const peer = run(HAPROXY, ['-f', file, '-db']);
  await accepting(port, peer);
  return peer;
}

/** nginx with `http` and/or `stream` blocks, accepting on `port`; everything it writes stays in its temp dir. */
export async function startNginx(blocks: string, port: number): Promise<Running> {
  need(NGINX, 'nginx');
  const dir = mkdtempSync(join(tmpdir(), 'mapgate-nginx-'));
  const file = join(dir, 'nginx.conf');
  const stream = ['/usr/lib/nginx/modules/ngx_stream_module.so'].find((m) => existsSync(m));
  writeFileSync(file, `${stream && blocks.includes('stream {') ? `load_module ${stream};\n` : ''}daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
${blocks.replace(/\bhttp \{/, `http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;`)}
`);
  const peer = run(NGINX, ['-p', dir, '-c', file, '-e', `${dir}/error.log`]);
  await accepting(port, peer);
  return peer;
}
