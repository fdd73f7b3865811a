import * as net from 'node:net';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClientDisconnectEvent } from '../../src/events/events';
import {
  adminGet, closed, connect, listen, metricValue, nextDisconnect, portOf, readAll, recordEvents, roundTrip, sendAndCollect, startBlackHole, startEchoServer, startGateway, startTaggedServer, unusedPort, waitFor,
} from '../helpers/net';

describe('routing with real clients', () => {
  test('user by source address, source CIDR, reject, and default, in order', async () => {
    const [a, b, d] = await Promise.all([startTaggedServer('alice'), startTaggedServer('branch'), startTaggedServer('default')]);
    const gw = await startGateway(`
admin: { listen: "off" }
log: { events: "off" }
users:
  alice: { sources: [127.0.0.2] }
services:
  - name: s
    port: 0
    bind: ["127.0.0.1"]
    destination: 127.0.0.1:${d}
    mappings:
      - user: alice
        destination: 127.0.0.1:${a}
      - source: 127.0.0.3/32
        destination: 127.0.0.1:${b}
      - source: [127.0.0.4, 127.0.0.2]
        action: reject
`);
    const events = recordEvents(gw);
    const port = portOf(gw, 's');
    const via = async (localAddress: string): Promise<string> => (await sendAndCollect(port, 'x', '127.0.0.1', { localAddress })).data.toString();
    expect(await via('127.0.0.2')).toBe('alice:x');   // user rule first, though a reject rule also matches
    expect(await via('127.0.0.3')).toBe('branch:x');
    expect(await via('127.0.0.4')).toBe('');          // rejected: closed without a byte
    expect(await via('127.0.0.5')).toBe('default:x');
    await waitFor(() => events.filter((e) => e.event === 'ClientDisconnect').length === 4);
    const disc = events.filter((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect');
    expect(disc.map((e) => [e.user, e.reason])).toEqual([
      ['alice', 'client-closed'], [null, 'client-closed'], [null, 'rejected'], [null, 'client-closed'],
    ]);
    expect(disc[2].destination).toBeNull();
    expect(await metricValue(gw, 'mapgate_rejected_total', { service: 's', reason: 'rejected' })).toBe(1);
  });

  test('IPv4-mapped clients of a dual-stack listener match IPv4 rules', async () => {
    const [a, d] = await Promise.all([startTaggedServer('alice'), startTaggedServer('default')]);
    const gw = await startGateway(`
admin: { listen: "off" }
log: { events: "off" }
users:
  alice: { sources: [127.0.0.2] }
services:
  - name: s
    port: 0
    bind: ["::"]
    destination: 127.0.0.1:${d}
    mappings:
      - user: alice
        destination: 127.0.0.1:${a}
`);
    const port = portOf(gw, 's');
    const done = nextDisconnect(gw);
    const s = await connect(port, '127.0.0.1', { localAddress: '127.0.0.2' } as net.NetConnectOpts);
    expect(s.remoteAddress).toBe('127.0.0.1');
    const got = readAll(s);
    s.end('y');
    expect((await got).toString()).toBe('alice:y');
    const e = await done;
    expect(e.client).toMatch(/^\[::ffff:127\.0\.0\.2\]:\d+$/);
    expect(e.user).toBe('alice');
    expect((await roundTrip(port, 'z', '::1')).toString()).toBe('default:z');
  });

  test('no default and no matching mapping closes the client with no-route', async () => {
    const gw = await startGateway(`
admin: { listen: "off" }
log: { events: "off" }
services:
  - name: s
    port: 0
    bind: ["127.0.0.1"]
    mappings:
      - source: 10.0.0.0/8
        destination: 127.0.0.1:9
`);
    const done = nextDisconnect(gw);
    expect((await sendAndCollect(portOf(gw, 's'), 'x')).data.length).toBe(0);
    expect(await done).toMatchObject({ reason: 'no-route', destination: null, error: null });
    expect(await metricValue(gw, 'mapgate_rejected_total', { service: 's', reason: 'no-route' })).toBe(1);
  });
});

describe('intercept ports and limits', () => {
  test('an intercept port follows the same mapping', async () => {
    const { port } = await startEchoServer();
    const gw = await startGateway(`
admin: { listen: "off" }
log: { events: "off" }
services:
  - name: s
    port: 0
    intercept: [0]
    bind: ["127.0.0.1"]
    destination: 127.0.0.1:${port}
`);
    const main = portOf(gw, 's');
    const icpt = portOf(gw, 's', true);
    expect(icpt).not.toBe(main);
    const done = nextDisconnect(gw);
    expect((await roundTrip(icpt, 'intercepted')).toString()).toBe('intercepted');
    const e = await done;
    expect(e.service).toBe('s');
    expect(e.listener).toBe(`127.0.0.1:${icpt}`);
  });

  test('over maxConnections a new client is closed at once with reason limit', async () => {
    const { port } = await startEchoServer();
    const gw = await startGateway(`
admin: { listen: "off" }
log: { events: "off" }
services:
  - name: s
    port: 0
    bind: ["127.0.0.1"]
    maxConnections: 2
    destination: 127.0.0.1:${port}
`);
    const p = portOf(gw, 's');
    const events = recordEvents(gw);
    const a = await connect(p);
    const b = await connect(p);
    // Both are relayed (echo proves the upstream is connected).
    for (const s of [a, b]) {
      s.write('hi');
      await new Promise((r) => s.once('data', r));
    }
    const c = await connect(p);
    await closed(c);
    await waitFor(() => events.some((e) => e.event === 'ClientDisconnect' && e.reason === 'limit'));
    expect(await metricValue(gw, 'mapgate_rejected_total', { service: 's', reason: 'limit' })).toBe(1);
    expect(await metricValue(gw, 'mapgate_connections_active', { service: 's' })).toBe(2);
    // A freed slot is usable again.
    a.end();
    await closed(a);
    await waitFor(() => events.filter((e) => e.event === 'ClientDisconnect').length === 2);
    expect((await roundTrip(p, 'again')).toString()).toBe('again');
  });
});

describe('upstream failures and timeouts', () => {
  const config = (dest: string, extra = ''): string => `
admin: { listen: "off" }
log: { events: "off" }
services:
  - name: s
    port: 0
    bind: ["127.0.0.1"]
    destination: ${dest}
${extra}`;

  test('connect refused closes the client: connect-failed with ECONNREFUSED', async () => {
    const gw = await startGateway(config(`127.0.0.1:${await unusedPort()}`));
    const done = nextDisconnect(gw);
    expect((await sendAndCollect(portOf(gw, 's'), 'x')).data.length).toBe(0);
    expect(await done).toMatchObject({ reason: 'connect-failed', error: 'ECONNREFUSED', destinationIndex: null });
    expect(await metricValue(gw, 'mapgate_upstream_connect_failures_total', { service: 's', code: 'ECONNREFUSED' })).toBe(1);
    expect(await metricValue(gw, 'mapgate_connections_total', { service: 's', outcome: 'connect-failed' })).toBe(1);
  });

  test('an upstream that never answers SYN hits the connect timeout', async () => {
    const hole = await startBlackHole();
    const gw = await startGateway(config(`127.0.0.1:${hole.port}`, '    connectTimeout: 300ms'));
    const done = nextDisconnect(gw);
    const t0 = Date.now();
    expect((await sendAndCollect(portOf(gw, 's'), 'x')).data.length).toBe(0);
    const e = await done;
    expect(e).toMatchObject({ reason: 'connect-timeout', error: 'MAPGATE_ERR_CONNECT_TIMEOUT' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  });

  test('failover: the next destination serves when the first refuses or times out', async () => {
    const hole = await startBlackHole();
    const good = await startTaggedServer('good');
    const gw = await startGateway(config(`[127.0.0.1:${await unusedPort()}, 127.0.0.1:${hole.port}, 127.0.0.1:${good}]`, '    connectTimeout: 300ms'));
    const done = nextDisconnect(gw);
    expect((await roundTrip(portOf(gw, 's'), 'x')).toString()).toBe('good:x');
    const e = await done;
    expect(e).toMatchObject({ reason: 'client-closed', destination: `127.0.0.1:${good}`, destinationIndex: 2 });
    expect(await metricValue(gw, 'mapgate_upstream_connect_failures_total', { service: 's', code: 'ECONNREFUSED' })).toBe(1);
    expect(await metricValue(gw, 'mapgate_upstream_connect_failures_total', { service: 's', code: 'MAPGATE_ERR_CONNECT_TIMEOUT' })).toBe(1);
  });

  test('no traffic for idleTimeout closes both legs: idle-timeout', async () => {
    const { port } = await startEchoServer();
    const gw = await startGateway(config(`127.0.0.1:${port}`, '    idleTimeout: 300ms'));
    const done = nextDisconnect(gw);
    const s = await connect(portOf(gw, 's'));
    s.write('ping');
    await new Promise((r) => s.once('data', r));
    const t0 = Date.now();
    await closed(s);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(await done).toMatchObject({ reason: 'idle-timeout', bytesFromClient: 4, bytesToClient: 4 });
  });

  test('traffic keeps an idle timeout from firing', async () => {
    const { port } = await startEchoServer();
    const gw = await startGateway(config(`127.0.0.1:${port}`, '    idleTimeout: 400ms'));
    const s = await connect(portOf(gw, 's'));
    const got = readAll(s);
    for (let i = 0; i < 8; i++) {
      s.write('.');
      await new Promise((r) => setTimeout(r, 100));
    }
    s.end();
    expect((await got).toString()).toBe('........');
  });

  test('an upstream reset mid-transfer closes the client: upstream-closed with ECONNRESET', async () => {
    const server = net.createServer((s) => {
      s.on('error', () => {});
      s.write('partial');
      setTimeout(() => s.resetAndDestroy(), 50);
    });
    const port = await listen(server);
    const gw = await startGateway(config(`127.0.0.1:${port}`));
    const done = nextDisconnect(gw);
    const s = await connect(portOf(gw, 's'));
    await closed(s);
    expect(await done).toMatchObject({ reason: 'upstream-closed', error: 'ECONNRESET', bytesToClient: 7 });
  });

  test('a client reset mid-transfer closes the upstream', async () => {
    let upstreamClosed!: Promise<void>;
    const server = net.createServer((s) => {
      upstreamClosed = closed(s);
      s.write('data');
    });
    const port = await listen(server);
    const gw = await startGateway(config(`127.0.0.1:${port}`));
    const done = nextDisconnect(gw);
    const s = await connect(portOf(gw, 's'));
    await new Promise((r) => s.once('data', r));
    s.resetAndDestroy();
    await upstreamClosed;
    expect((await done).reason).toBe('client-closed');
  });
});

describe('events', () => {
  test('fields, order, and exactly one ClientDisconnect per ClientConnect; JSON lines in the log file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mapgate-events-'));
    const log = join(dir, 'events.jsonl');
    const { port } = await startEchoServer();
    const dead = await unusedPort();
    const gw = await startGateway(`
admin: { listen: "off" }
log: { events: "${log}" }
users:
  bob: { sources: [127.0.0.7] }
services:
  - name: echo
    port: 0
    bind: ["127.0.0.1"]
    destination: 127.0.0.1:${port}
    mappings:
      - source: 127.0.0.9
        action: reject
      - source: 127.0.0.8
        destination: 127.0.0.1:${dead}
`);
    const events = recordEvents(gw);
    const p = portOf(gw, 'echo');
    const sources = ['127.0.0.1', '127.0.0.7', '127.0.0.8', '127.0.0.9'];
    const N = 40;
    await Promise.all(Array.from({ length: N }, async (_, i) => {
      await sendAndCollect(p, `msg${i}`, '127.0.0.1', { localAddress: sources[i % 4] });
    }));
    await waitFor(() => events.filter((e) => e.event === 'ClientDisconnect').length === N);
    const ids = new Set(events.map((e) => e.id));
    expect(ids.size).toBe(N);
    for (const id of ids) {
      const mine = events.filter((e) => e.id === id);
      expect(mine.map((e) => e.event)).toEqual(['ClientConnect', 'ClientDisconnect']);
    }
    const ok = events.find((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect' && e.user === 'bob')!;
    expect(ok).toEqual({
      event: 'ClientDisconnect', id: expect.any(String), service: 'echo', listener: `127.0.0.1:${p}`,
      client: expect.stringMatching(/^127\.0\.0\.7:\d+$/), user: 'bob', auth: 'source', sni: null, alpn: null, requested: null, originalDestination: null, destination: `127.0.0.1:${port}`, tls: false,
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), bytesFromClient: expect.any(Number), bytesToClient: expect.any(Number),
      durationMs: expect.any(Number), reason: 'client-closed', error: null, destinationIndex: 0,
    });
    // Every echo connection moved its message ("msgN") once each way.
    for (const e of events) {
      if (e.event !== 'ClientDisconnect' || e.reason !== 'client-closed') continue;
      expect([4, 5]).toContain(e.bytesFromClient);
      expect(e.bytesToClient).toBe(e.bytesFromClient);
    }
    const reasons = events.filter((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect').map((e) => e.reason).sort();
    expect(new Set(reasons)).toEqual(new Set(['client-closed', 'connect-failed', 'rejected']));
    expect(reasons.filter((r) => r === 'rejected')).toHaveLength(N / 4);

    await gw.destroy();
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(2 * N);
    expect(lines).toEqual(events);
  });
});

describe('metrics and admin', () => {
  test('metric values after known traffic; bytes of open connections are counted at scrape', async () => {
    const { port } = await startEchoServer();
    const gw = await startGateway(`
admin: { listen: "127.0.0.1:0" }
log: { events: "off" }
services:
  - name: m
    port: 0
    bind: ["127.0.0.1"]
    destination: 127.0.0.1:${port}
`);
    const p = portOf(gw, 'm');
    for (let i = 0; i < 3; i++) expect((await roundTrip(p, Buffer.alloc(1000, 1))).length).toBe(1000);
    await waitFor(() => gw.open.size === 0);
    // An open connection that moved 500 bytes each way.
    const s = await connect(p);
    s.write(Buffer.alloc(500, 2));
    let echoed = 0;
    s.on('data', (d: Buffer) => (echoed += d.length));
    await waitFor(() => echoed === 500);

    const v = (name: string, labels: Record<string, string>): Promise<number> => metricValue(gw, name, labels);
    expect(await v('mapgate_connections_active', { service: 'm' })).toBe(1);
    expect(await v('mapgate_connections_total', { service: 'm', outcome: 'client-closed' })).toBe(3);
    expect(await v('mapgate_bytes_total', { service: 'm', direction: 'from_client' })).toBe(3500);
    expect(await v('mapgate_bytes_total', { service: 'm', direction: 'to_client' })).toBe(3500);
    expect(await v('mapgate_upstream_connect_seconds_count', { service: 'm' })).toBe(4);
    expect(await v('mapgate_connection_duration_seconds_count', { service: 'm' })).toBe(3);
    expect(await v('mapgate_connections_max', { service: 'm' })).toBe(256);
    expect(await v('mapgate_listeners', { service: 'm' })).toBe(1);

    // Closing the open connection adds only its remaining bytes (none were double counted).
    s.end(Buffer.alloc(100, 3));
    await closed(s);
    await waitFor(() => gw.open.size === 0);
    expect(await v('mapgate_bytes_total', { service: 'm', direction: 'from_client' })).toBe(3600);
    expect(await v('mapgate_bytes_total', { service: 'm', direction: 'to_client' })).toBe(3600);

    const scraped = await adminGet(gw, '/metrics');
    expect(scraped.status).toBe(200);
    expect(scraped.body).toMatch(/^mapgate_build_info\{version="\d+\.\d+\.\d+",node="v\d+/m);
    // No label carries a client address.
    const labelValues = [...scraped.body.matchAll(/="([^"]*)"/g)].map((m) => m[1]);
    expect(labelValues.filter((l) => l.includes('127.0.0.1'))).toEqual([]);

    expect(await adminGet(gw, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await adminGet(gw, '/readyz')).toEqual({ status: 200, body: 'ready\n' });
    expect((await adminGet(gw, '/nope')).status).toBe(404);
  });
});
