import * as net from 'node:net';
import * as tls from 'node:tls';
import { createHash } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { parseConfig } from '../../src/config/load';
import { createGateway, type Gateway, type GatewayOptions } from '../../src/gateway';
import type { ClientConnectEvent, ClientDisconnectEvent } from '../../src/events/events';

type Teardown = () => unknown;
const teardowns: Teardown[] = [];

/** Registers a cleanup that `afterEach` runs (last registered, first run). */
export function onTeardown(fn: Teardown): void {
  teardowns.push(fn);
}

afterEach(async () => {
  while (teardowns.length > 0) await teardowns.pop()!();
});

/** Listens on port 0 and resolves the port; the server is closed at teardown. */
export function listen(server: net.Server, host = '127.0.0.1'): Promise<number> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  onTeardown(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: 0 }, () => resolve((server.address() as AddressInfo).port));
  });
}

/** An echo server; every accepted socket echoes and half-closes when the peer does. */
export async function startEchoServer(host = '127.0.0.1'): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  const port = await listen(server, host);
  return { server, port };
}

/** An upstream that answers every connection with `TAG:` and then echoes: shows which upstream served. */
export async function startTaggedServer(tag: string): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.write(`${tag}:`);
    s.pipe(s);
  });
  return listen(server);
}

/**
 * A loopback port nothing listens on (bound, then closed): a refused destination, or a fixed port
 * for configs that must name the same port across reloads or processes. The one place a test
 * picks a port ahead of time, where the port must be known before the gateway binds it.
 */
export async function unusedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Starts a gateway from YAML text (no default process metrics, and any `gateway` options); stopped at teardown. */
export async function startGateway(yaml: string, options: { baseDir?: string; gateway?: GatewayOptions } = {}): Promise<Gateway> {
  const config = parseConfig(yaml, 'test.yaml', { baseDir: options.baseDir });
  const gw = createGateway(config, { defaultMetrics: false, ...options.gateway });
  await gw.start();
  onTeardown(() => gw.destroy());
  return gw;
}

/** The bound port of a service's (first, or intercept) listener. */
export function portOf(gw: Gateway, service: string, intercept = false): number {
  const l = gw.endpoints().find((e) => e.service === service && e.intercept === intercept);
  if (!l) throw new Error(`no listener for ${service}`);
  return l.port;
}

/** Connects to host:port; resolves once connected. Destroyed at teardown. */
export function connect(port: number, host = '127.0.0.1', options: net.NetConnectOpts = {} as net.NetConnectOpts): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, allowHalfOpen: true, ...options } as net.NetConnectOpts);
    onTeardown(() => s.destroy());
    s.once('connect', () => { s.off('error', reject); resolve(s); });
    s.once('error', reject);
  });
}

/** Reads a socket to its end; resolves every byte. */
export function readAll(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

/** Resolves when the socket has closed (by FIN or reset); a FIN is answered with ours. */
export function closed(s: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed) return resolve();
    s.on('error', () => {});
    s.once('end', () => s.end());
    s.once('close', () => resolve());
    s.resume();
  });
}

/** Everything a socket receives until it closes, and the error code if it ended by one (e.g. a reset). */
export function readUntilClose(s: net.Socket): Promise<{ data: Buffer; error: string | null }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | null = null;
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? 'error'));
    s.once('end', () => s.end());
    s.once('close', () => resolve({ data: Buffer.concat(chunks), error }));
  });
}

/** Sends `data` and half-closes, then collects the answer until the gateway closes the socket. */
export async function sendAndCollect(port: number, data: string | Buffer, host = '127.0.0.1', options: Partial<net.TcpNetConnectOpts> = {}): Promise<{ data: Buffer; error: string | null }> {
  const s = await connect(port, host, options as net.NetConnectOpts);
  const result = readUntilClose(s);
  s.end(data);
  return result;
}

/** Sends one request and reads the whole answer: write, half-close, read to end. */
export async function roundTrip(port: number, data: string | Buffer, host = '127.0.0.1'): Promise<Buffer> {
  const s = await connect(port, host);
  const answer = readAll(s);
  s.end(data);
  return answer;
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Collects the gateway's events in order. */
export function recordEvents(gw: Gateway): Array<ClientConnectEvent | ClientDisconnectEvent> {
  const events: Array<ClientConnectEvent | ClientDisconnectEvent> = [];
  gw.on('ClientConnect', (e) => events.push(e));
  gw.on('ClientDisconnect', (e) => events.push(e));
  return events;
}

/** Resolves with the next ClientDisconnect event (optionally of a given connection). */
export function nextDisconnect(gw: Gateway, id?: string): Promise<ClientDisconnectEvent> {
  return new Promise((resolve) => {
    const on = (e: ClientDisconnectEvent): void => {
      if (id !== undefined && e.id !== id) return;
      gw.off('ClientDisconnect', on);
      resolve(e);
    };
    gw.on('ClientDisconnect', on);
  });
}

/**
 * Writes `total` bytes made by `chunk(left)` (which returns at most `left`), honouring
 * backpressure, then half-closes; resolves the sha256 of what was written.
 */
export function writeHashed(s: net.Socket, total: number, chunk: (left: number) => Buffer): Promise<string> {
  const hash = createHash('sha256');
  return new Promise((resolve, reject) => {
    let left = total;
    const pump = (): void => {
      while (left > 0) {
        const c = chunk(left);
        left -= c.length;
        hash.update(c);
        if (!s.write(c)) {
          s.once('drain', pump);
          return;
        }
      }
      s.end();
      resolve(hash.digest('hex'));
    };
    s.once('error', reject);
    pump();
  });
}

/** Resolves when the asynchronous `check` holds (a rejection counts as not yet), polling every 50 ms; rejects after `ms`. */
export async function eventually(check: () => Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Resolves when `predicate` holds, polling every 10 ms; rejects after `ms`. */
export async function waitFor(predicate: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Fetches a path from the gateway's admin endpoint. */
export async function adminGet(gw: Gateway, path: string): Promise<{ status: number; body: string }> {
  const a = gw.adminAddress()!;
  const res = await fetch(`http://${a.host}:${a.port}${path}`);
  return { status: res.status, body: await res.text() };
}

/** The value of one sample of the Prometheus exposition, e.g. `mapgate_bytes_total{service="a",direction="to_client"}`. */
export async function metricValue(gw: Gateway, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await gw.metrics.registry.metrics();
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const kv of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) got[kv[1]] = kv[2];
    if (Object.entries(labels).every(([k, v]) => got[k] === v) && Object.keys(got).length === Object.keys(labels).length) return Number(m[4]);
  }
  return NaN;
}

/**
 * A loopback address:port that never completes a TCP handshake: a child process listens with
 * a backlog of 1, never accepts (its event loop is blocked in Atomics.wait, not spinning), and
 * its accept queue is filled, so the kernel drops further SYNs.
 */
export async function startBlackHole(): Promise<{ port: number; child: ChildProcess }> {
  const code = `
    const net = require('net');
    const s = net.createServer().listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => {
      process.stdout.write(String(s.address().port) + '\\n', () => {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
      });
    });`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  onTeardown(() => { child.kill('SIGKILL'); });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('error', reject);
  });
  // Fill the accept queue; these handshakes complete, later ones never do.
  for (let i = 0; i < 4; i++) {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => {});
    onTeardown(() => s.destroy());
  }
  await new Promise((r) => setTimeout(r, 100));
  return { port, child };
}

export { tls };
