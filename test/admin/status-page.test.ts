import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { createAdminServer, type AdminHandlers } from '../../src/admin/admin';
import { MAX_EVENT_STREAMS } from '../../src/admin/status-page';
import type { Gateway } from '../../src/gateway';
import { adminGet, connect, listen, onTeardown, portOf, roundTrip, startEchoServer, startGateway, waitFor } from '../helpers/net';
import { openEvents, statusOf, type SseEvent } from './sse';

async function gatewayWithEcho(): Promise<{ gw: Gateway; admin: { host: string; port: number } }> {
  const echo = await startEchoServer();
  const gw = await startGateway(`
admin: { listen: "127.0.0.1:0" }
log: { events: "off" }
services:
  - name: echo
    port: 0
    bind: [127.0.0.1]
    maxConnections: 7
    destination: 127.0.0.1:${echo.port}
`);
  return { gw, admin: gw.adminAddress()! };
}

/**
 * Sends raw bytes to the admin port and collects what comes back until the server closes
 * the connection (FIN or reset) or `ms` passes. Write errors (the server hung up mid-send)
 * count as a close, not a failure.
 */
function rawExchange(port: number, send: (s: net.Socket) => void, ms = 5000): Promise<{ reply: string; closed: boolean; reset: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    onTeardown(() => s.destroy());
    const chunks: Buffer[] = [];
    let reset = false;
    const timer = setTimeout(() => finish(false), ms);
    const finish = (closed: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ reply: Buffer.concat(chunks).toString('latin1'), closed, reset });
    };
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => { reset = true; });
    s.on('close', () => finish(true));
    s.on('connect', () => send(s));
  });
}

/** Writes `total` bytes in 64 KiB chunks honouring backpressure; resolves how many the socket accepted before it closed. */
function pump(s: net.Socket, total: number): Promise<number> {
  return new Promise((resolve) => {
    let sent = 0;
    const step = (): void => {
      while (sent < total && !s.destroyed) {
        const n = Math.min(65536, total - sent);
        sent += n;
        if (!s.write(Buffer.alloc(n, 0x61))) { s.once('drain', step); return; }
      }
      resolve(sent);
    };
    s.once('close', () => resolve(sent));
    step();
  });
}

/** The gateway still relays and its admin port still answers. */
async function expectStillServing(gw: Gateway): Promise<void> {
  const payload = randomBytes(4096);
  expect((await roundTrip(portOf(gw, 'echo'), payload)).equals(payload)).toBe(true);
  expect((await adminGet(gw, '/healthz')).status).toBe(200);
  const a = gw.adminAddress()!;
  const stream = await openEvents(a.host, a.port);
  expect(statusOf(await stream.next((e) => e.event === 'status')).state).toBe('running');
  stream.destroy();
}

function sha256Source(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

describe('GET /: the live status page', () => {
  test('serves self-contained HTML under a CSP that admits exactly its inline script and style', async () => {
    const { admin } = await gatewayWithEcho();
    const res = await fetch(`http://${admin.host}:${admin.port}/`);
    const body = await res.text();
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(Number(res.headers.get('content-length'))).toBe(Buffer.byteLength(body));
    const csp = (res.headers.get('content-security-policy') ?? '').split(';').map((d) => d.trim());
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp.join(';')).not.toContain('unsafe-inline');
    expect(csp.join(';')).not.toContain('unsafe-eval');
    // The hashes in the policy must be those of the inline blocks the page really has, or the
    // browser would refuse to run it.
    const scripts = [...body.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]);
    const styles = [...body.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]);
    expect(scripts).toHaveLength(1);
    expect(styles).toHaveLength(1);
    expect(csp).toContain(`script-src ${sha256Source(scripts[0])}`);
    expect(csp).toContain(`style-src ${sha256Source(styles[0])}`);
    // Nothing loaded from elsewhere; data is only ever rendered as text.
    expect(body).not.toMatch(/<script[^>]+src=|<link[^>]+href=|https?:\/\//);
    expect(scripts[0]).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/);
    expect(scripts[0]).toContain("new EventSource('events')");
  });

  test('HEAD / answers the headers without a body; POST / is 405; an unknown path is 404', async () => {
    const { admin } = await gatewayWithEcho();
    const head = await fetch(`http://${admin.host}:${admin.port}/`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(await head.text()).toBe('');
    expect((await fetch(`http://${admin.host}:${admin.port}/`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`http://${admin.host}:${admin.port}/events`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`http://${admin.host}:${admin.port}/index.html`)).status).toBe(404);
  });
});

describe('GET /events: server-sent status', () => {
  test('pushes the status on connect, then every second: a relayed connection appears with its bytes and disappears when closed', async () => {
    const { gw, admin } = await gatewayWithEcho();
    const stream = await openEvents(admin.host, admin.port);
    expect(stream.response.statusCode).toBe(200);
    expect(stream.response.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(stream.response.headers['cache-control']).toBe('no-store');

    const first = statusOf(await stream.next((e) => e.event === 'status', 1000));
    expect(first.state).toBe('running');
    expect(first.connections).toEqual([]);
    expect(first.services).toEqual([{ name: 'echo', tags: [], comment: null, active: 0, maxConnections: 7, listeners: [{ address: `127.0.0.1:${portOf(gw, 'echo')}`, intercept: false }], waiting: [],
      limits: { perSource: null, perUser: null, rate: null }, schedules: [],
      rates: { connections: 0, fromClient: 0, toClient: 0 }, lastMinute: { connections: 0, rejected: 0, failed: 0 } }]);
    expect(first.closed).toEqual([]);

    const c = await connect(portOf(gw, 'echo'));
    c.write('hello');
    await new Promise((r) => c.once('data', r));
    const withConn = (e: SseEvent): boolean => e.event === 'status' && statusOf(e).connections.some((x) => x.client === `127.0.0.1:${c.localPort}` && x.bytesToClient === 5);
    const seen = statusOf(await stream.next(withConn, 2500));
    const row = seen.connections.find((x) => x.client === `127.0.0.1:${c.localPort}`)!;
    expect(row).toMatchObject({ service: 'echo', user: null, state: 'relaying', bytesFromClient: 5, bytesToClient: 5 });
    expect(seen.services[0].active).toBe(1);

    const mark = stream.events.length;
    c.destroy();
    const gone = statusOf(await stream.next((e) => e.event === 'status' && statusOf(e).connections.length === 0, 2500, mark));
    expect(gone.services[0].active).toBe(0);
    // It is first in the list of closed connections, with why it ended and its bytes.
    expect(gone.closed).toHaveLength(1);
    expect(gone.closed[0]).toMatchObject({ id: row.id, service: 'echo', client: row.client, reason: 'client-closed', error: null, bytesFromClient: 5, bytesToClient: 5 });
  });

  test('events keep coming about once a second, with a heartbeat comment', async () => {
    const { admin } = await gatewayWithEcho();
    const stream = await openEvents(admin.host, admin.port);
    const t0 = Date.now();
    await stream.next((e) => e.event === 'status', 1000);
    await stream.next((e) => e.event === 'comment' && e.data === 'heartbeat', 2500);
    await waitFor(() => stream.events.filter((e) => e.event === 'status').length >= 3, 3500, 'three status events');
    // 1 on connect + one per second: three take about 2 s, and far less than 1 s would mean a busy loop.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
  });

  test(`at most ${MAX_EVENT_STREAMS} streams are open at once; the next is refused with 503 and a closed one frees its slot`, async () => {
    const { admin } = await gatewayWithEcho();
    const streams = [];
    for (let i = 0; i < MAX_EVENT_STREAMS; i++) streams.push(await openEvents(admin.host, admin.port));
    expect(streams.every((s) => s.response.statusCode === 200)).toBe(true);
    const refused = await openEvents(admin.host, admin.port);
    expect(refused.response.statusCode).toBe(503);
    expect(refused.response.headers['retry-after']).toBe('5');
    streams[0].destroy();
    let again: Awaited<ReturnType<typeof openEvents>> | null = null;
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      again = await openEvents(admin.host, admin.port);
      if (again.response.statusCode === 200) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(again!.response.statusCode).toBe(200);
  });

  test('a closed stream stops the polling; the last one gone leaves no timer behind', async () => {
    let calls = 0;
    const handlers: AdminHandlers = {
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
      healthy: () => true,
      ready: () => true,
      status: () => ({ calls: ++calls }),
    };
    const server = createAdminServer(handlers);
    const port = await listen(server);
    const a = await openEvents('127.0.0.1', port);
    const b = await openEvents('127.0.0.1', port);
    await waitFor(() => a.events.filter((e) => e.event === 'status').length >= 2, 2500, 'a second event');
    // One serialization per tick, shared by every stream: about 2 in 2 s, not 4.
    const before = calls;
    await new Promise((r) => setTimeout(r, 2050));
    expect(calls - before).toBeGreaterThanOrEqual(1);
    expect(calls - before).toBeLessThanOrEqual(3);
    a.destroy();
    b.destroy();
    await new Promise((r) => setTimeout(r, 200));
    const idle = calls;
    await new Promise((r) => setTimeout(r, 1500));
    expect(calls).toBe(idle);
  });

  test('an async status() is awaited: the stream carries the resolved status, not {}', async () => {
    const server = createAdminServer({
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
      healthy: () => true,
      ready: () => true,
      status: async () => {
        await new Promise((r) => setTimeout(r, 50));
        return { state: 'running', services: [], connections: [{ id: 'c1' }] };
      },
    });
    const port = await listen(server);
    const stream = await openEvents('127.0.0.1', port);
    const first = await stream.next((e) => e.event === 'status', 1000);
    expect(JSON.parse(first.data)).toEqual({ state: 'running', services: [], connections: [{ id: 'c1' }] });
    await waitFor(() => stream.events.filter((e) => e.event === 'status').length >= 2, 2500, 'a second event');
    expect(stream.events.filter((e) => e.event === 'status').every((e) => JSON.parse(e.data).connections.length === 1)).toBe(true);
  });

  test('a slow status() is never asked again before it settles, and streams opened meanwhile get its answer', async () => {
    let calls = 0;
    let inFlight = 0;
    let most = 0;
    const server = createAdminServer({
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
      healthy: () => true,
      ready: () => true,
      status: async () => {
        const n = ++calls;
        most = Math.max(most, ++inFlight);
        await new Promise((r) => setTimeout(r, 2500));
        inFlight--;
        return { n };
      },
    });
    const port = await listen(server);
    const a = await openEvents('127.0.0.1', port);
    const b = await openEvents('127.0.0.1', port);
    const [ea, eb] = await Promise.all([a.next((e) => e.event === 'status', 4000), b.next((e) => e.event === 'status', 4000)]);
    expect(JSON.parse(ea.data)).toEqual({ n: 1 });
    expect(JSON.parse(eb.data)).toEqual({ n: 1 });
    await waitFor(() => a.events.filter((e) => e.event === 'status').length >= 2, 6000, 'a second event');
    // 1 s ticks over 2.5 s snapshots: without the guard, 5 or more would have been started by now.
    expect(most).toBe(1);
    expect(calls).toBeLessThanOrEqual(3);
  }, 15_000);

  test('a status() that throws or rejects sends a comment, keeps the stream open, and the next good snapshot follows', async () => {
    let calls = 0;
    const server = createAdminServer({
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
      healthy: () => true,
      ready: () => true,
      status: () => {
        calls++;
        if (calls === 1) throw new Error('workers\ngone');
        if (calls === 2) return Promise.reject(new Error('no answer'));
        return Promise.resolve({ ok: calls });
      },
    });
    const port = await listen(server);
    const stream = await openEvents('127.0.0.1', port);
    const good = await stream.next((e) => e.event === 'status', 4000);
    expect(JSON.parse(good.data)).toEqual({ ok: 3 });
    const comments = stream.events.filter((e) => e.event === 'comment').map((e) => e.data);
    expect(comments).toEqual(expect.arrayContaining(['status failed: workers gone', 'status failed: no answer']));
    expect(stream.events.filter((e) => e.event === 'status')).toHaveLength(1);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  });

  test('destroying the gateway ends open streams at once', async () => {
    const { gw, admin } = await gatewayWithEcho();
    const stream = await openEvents(admin.host, admin.port);
    await stream.next((e) => e.event === 'status', 1000);
    const t0 = Date.now();
    await gw.destroy();
    await stream.ended(1000);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  test('server.close() alone ends open streams too (they are never idle)', async () => {
    const server = createAdminServer({
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
      healthy: () => true,
      ready: () => true,
      status: () => ({ ok: true }),
    });
    const port = await listen(server);
    const stream = await openEvents('127.0.0.1', port);
    await stream.next((e) => e.event === 'status', 1000);
    const closedIn = await new Promise<number | string>((resolve) => {
      const t0 = Date.now();
      const timer = setTimeout(() => resolve('server.close() still waiting after 2 s'), 2000);
      server.close(() => { clearTimeout(timer); resolve(Date.now() - t0); });
    });
    expect(typeof closedIn === 'number' && closedIn < 1000).toBe(true);
    await stream.ended(1000);
  });

  test('an open stream never keeps the process alive (its timer is unref\'d)', async () => {
    // A child process serves one stream to itself, then unrefs every socket: only a ref'd
    // timer could keep it running.
    const admin = path.resolve(__dirname, '../../dist/admin/admin.js');
    const code = `
      const http = require('http');
      const { createAdminServer } = require(${JSON.stringify(admin)});
      const server = createAdminServer({ metrics: async () => ({}), healthy: () => true, ready: () => true, status: () => ({ ok: 1 }) });
      server.on('connection', (s) => s.unref());
      server.listen(0, '127.0.0.1', () => {
        http.get({ host: '127.0.0.1', port: server.address().port, path: '/events', agent: false }, (res) => {
          res.once('data', (d) => {
            process.stdout.write(String(d).includes('event: status') ? 'streaming\\n' : 'bad\\n');
            res.socket.unref();
            server.unref();
          });
        });
      });`;
    const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    onTeardown(() => { child.kill('SIGKILL'); });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const exit = await new Promise<number | string>((resolve) => {
      const timer = setTimeout(() => resolve('still running after 5 s'), 5000);
      child.once('exit', (code) => { clearTimeout(timer); resolve(code ?? -1); });
    });
    expect(out).toBe('streaming\n');
    expect(exit).toBe(0);
  });
});

describe('the admin port shrugs off garbage and keeps the gateway serving', () => {
  test('a 100 KB header gets 431 or a close', async () => {
    const { gw, admin } = await gatewayWithEcho();
    const r = await rawExchange(admin.port, (s) => {
      s.on('error', () => {});
      s.write(`GET /status HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(100 * 1024)}\r\n\r\n`);
    });
    expect(r.closed).toBe(true);
    if (r.reply !== '') expect(r.reply).toMatch(/^HTTP\/1\.1 431 /);
    expect(r.reply).not.toContain('"connections"');
    await expectStillServing(gw);
  });

  test('a non-HTTP byte string gets 400 and a close', async () => {
    const { gw, admin } = await gatewayWithEcho();
    // A TLS ClientHello's first bytes, then binary noise: what a misdirected client sends.
    const r = await rawExchange(admin.port, (s) => s.write(Buffer.concat([Buffer.from('160301020001', 'hex'), randomBytes(512)])));
    expect(r.closed).toBe(true);
    expect(r.reply).toMatch(/^HTTP\/1\.1 400 /);
    await expectStillServing(gw);
  });

  test('a huge POST body is refused with 413 without being read', async () => {
    const { gw, admin } = await gatewayWithEcho();
    const declared = 256 * 1024 * 1024;
    let accepted = 0;
    const r = await rawExchange(admin.port, (s) => {
      s.on('error', () => {});
      s.write(`POST /reload HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: ${declared}\r\n\r\n`);
      void pump(s, declared).then((n) => (accepted = n));
    }, 10000);
    expect(r.closed).toBe(true);
    if (!r.reset) expect(r.reply).toMatch(/^HTTP\/1\.1 413 /);
    // The server hung up long before 256 MB: it did not swallow the body.
    expect(accepted).toBeLessThan(declared);
    await expectStillServing(gw);
  });

  test('an endless chunked POST body is refused with 413', async () => {
    const { gw, admin } = await gatewayWithEcho();
    const r = await rawExchange(admin.port, (s) => {
      s.on('error', () => {});
      s.write('POST /status HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n');
      const chunk = `10000\r\n${'b'.repeat(0x10000)}\r\n`;
      let n = 0;
      const more = (): void => { while (n++ < 4096 && !s.destroyed) if (!s.write(chunk)) { s.once('drain', more); return; } };
      more();
    }, 10000);
    expect(r.closed).toBe(true);
    if (!r.reset) expect(r.reply).toMatch(/^HTTP\/1\.1 413 /);
    await expectStillServing(gw);
  });

  test('200 concurrent garbage connections each get 4xx or a close, within 10 s', async () => {
    const { gw, admin } = await gatewayWithEcho();
    const garbage = [
      (): Buffer => randomBytes(300),
      (): Buffer => Buffer.from('GET / HTTP/9.9\r\n\r\n'),
      (): Buffer => Buffer.from(`GET /${'x'.repeat(20000)} HTTP/1.1\r\n\r\n`),
      (): Buffer => Buffer.from('GET /status HTTP/1.1\r\nhost x\r\n\r\n'),
      (): Buffer => Buffer.from('\r\n\r\n\0\0\0\0 SSH-2.0-OpenSSH_9.6\r\n'),
    ];
    const t0 = Date.now();
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => rawExchange(admin.port, (s) => {
      s.on('error', () => {});
      s.write(garbage[i % garbage.length]());
    }, 10000)));
    expect(Date.now() - t0).toBeLessThan(10000);
    for (const r of results) {
      expect(r.closed).toBe(true);
      if (r.reply !== '') expect(r.reply).toMatch(/^HTTP\/1\.1 4\d\d /);
    }
    // Most get a proper answer, not just a dropped connection.
    expect(results.filter((r) => /^HTTP\/1\.1 4\d\d /.test(r.reply)).length).toBeGreaterThanOrEqual(150);
    await expectStillServing(gw);
  });

  test('a keep-alive client gets /status and / on one connection', async () => {
    const { gw, admin } = await gatewayWithEcho();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    onTeardown(() => agent.destroy());
    const get = (p: string): Promise<{ status: number; socket: net.Socket }> => new Promise((resolve, reject) => {
      http.get({ host: admin.host, port: admin.port, path: p, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, socket: res.socket }));
      }).on('error', reject);
    });
    const a = await get('/status');
    const b = await get('/');
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(b.socket).toBe(a.socket);
    await expectStillServing(gw);
  });
});
