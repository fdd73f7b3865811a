import type * as net from 'node:net';
import { parseConfig } from '../../src/config/load';
import type { ClientConnectEvent, ClientDisconnectEvent } from '../../src/events/events';
import type { Gateway, GatewayOptions } from '../../src/gateway';
import { adminGet, metricValue, onTeardown, portOf, recordEvents, startEchoServer, startGateway, unusedPort, waitFor } from '../helpers/net';
import { bounded, floodAddress, probe, type Probe } from '../helpers/sources';

type GatewayEvent = ClientConnectEvent | ClientDisconnectEvent;

/** A running gateway and every event it emitted. */
interface Harness {
  readonly gw: Gateway;
  readonly events: GatewayEvent[];
}

/** A client the gateway let in: still open, its probe echoed. */
interface Admitted {
  readonly socket: net.Socket;
  /** `address:port`, as the gateway's events name it. */
  readonly client: string;
  /** Its connection id (a later client may get the same port). */
  readonly id: string;
}

const LIMITS = ['service', 'rate', 'per-source', 'per-user'];

function yaml(services: string, head = '', admin = 'off'): string {
  return `admin: { listen: "${admin}" }
log: { events: "off" }
${head}
services:
${services}`;
}

/** One service on 127.0.0.1 in front of `echo`; `extra` holds more of its keys, one a line. */
function service(name: string, echo: number, extra: string[] = [], port = 0): string {
  return [`  - name: ${name}`, `    port: ${port}`, '    bind: [127.0.0.1]', `    destination: 127.0.0.1:${echo}`, ...extra.map((l) => `    ${l}`)].join('\n') + '\n';
}

async function start(text: string, gateway: GatewayOptions = {}): Promise<Harness> {
  const gw = await startGateway(text, { gateway });
  return { gw, events: recordEvents(gw) };
}

const disconnectOf = (events: readonly GatewayEvent[], client: string): ClientDisconnectEvent | undefined =>
  events.find((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect' && e.client === client);

/** Writes `text` and resolves once exactly that came back. */
function echoes(s: net.Socket, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (d: Buffer): void => {
      got += d.toString('latin1');
      if (got.length < text.length) return;
      s.off('data', onData);
      s.off('close', onClose);
      if (got === text) resolve();
      else reject(new Error(`echoed ${JSON.stringify(got)}, sent ${JSON.stringify(text)}`));
    };
    const onClose = (): void => reject(new Error(`closed before ${JSON.stringify(text)} came back (${JSON.stringify(got)})`));
    s.on('data', onData);
    s.once('close', onClose);
    s.write(text);
  });
}

/** Connects from `address`; the gateway must let it in: its byte echoes and nothing ended it. */
async function admitted(h: Harness, address: string, service = 's'): Promise<Admitted> {
  const from = h.events.length;
  const p = await probe(portOf(h.gw, service), address, { hold: true });
  onTeardown(() => p.socket.destroy());
  const client = `${address}:${p.localPort}`;
  expect({ client, admitted: p.admitted }).toEqual({ client, admitted: true });
  const mine = h.events.slice(from).filter((e) => e.client === client);
  expect(mine.map((e) => e.event)).toEqual(['ClientConnect']);
  return { socket: p.socket, client, id: mine[0].id };
}

/**
 * Connects from `address`; the gateway must close it at once, with one ClientConnect and one
 * ClientDisconnect (reason `limit`, not a byte either way). Resolves the limit the event names.
 */
async function refused(h: Harness, address: string, service = 's'): Promise<string | null> {
  const from = h.events.length;
  const p = await probe(portOf(h.gw, service), address);
  const client = `${address}:${p.localPort}`;
  expect({ client, admitted: p.admitted }).toEqual({ client, admitted: false });
  await waitFor(() => disconnectOf(h.events.slice(from), client) !== undefined, 2000, `the ClientDisconnect of ${client}`);
  const mine = h.events.slice(from).filter((e) => e.client === client);
  expect(mine.map((e) => e.event)).toEqual(['ClientConnect', 'ClientDisconnect']);
  const [connected, gone] = mine as [ClientConnectEvent, ClientDisconnectEvent];
  expect(gone).toMatchObject({ id: connected.id, reason: 'limit', bytesFromClient: 0, bytesToClient: 0, destinationIndex: null });
  return gone.error;
}

/** Half-closes an admitted client and waits for the gateway to finish it (reason client-closed). */
async function close(h: Harness, a: Admitted): Promise<void> {
  a.socket.on('end', () => a.socket.end());
  a.socket.resume();
  a.socket.end();
  const gone = (): ClientDisconnectEvent | undefined => h.events.find((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect' && e.id === a.id);
  await waitFor(() => gone() !== undefined, 2000, `the ClientDisconnect of ${a.client}`);
  expect(gone()!.reason).toBe('client-closed');
}

let echo: number;
beforeEach(async () => {
  echo = (await startEchoServer()).port;
});

describe('limits with real clients', () => {
  test('perSource: a third connection from one address is refused while two are open, others are not; a closed one frees its slot', async () => {
    const h = await start(yaml(service('s', echo, ['limits: { perSource: 2 }'])));
    const a1 = await admitted(h, '127.0.0.2');
    const a2 = await admitted(h, '127.0.0.2');
    expect(await refused(h, '127.0.0.2')).toBe('per-source');
    // Another address at the same time has slots of its own.
    const b = await admitted(h, '127.0.0.3');
    expect(await refused(h, '127.0.0.2')).toBe('per-source');
    await Promise.all([echoes(a1.socket, 'one'), echoes(a2.socket, 'two'), echoes(b.socket, 'three')]);

    await close(h, a1);
    const a3 = await admitted(h, '127.0.0.2');
    await echoes(a3.socket, 'again');
    expect(await refused(h, '127.0.0.2')).toBe('per-source');
    await echoes(a2.socket, 'still open');
  });

  test('perUser: counts the connections of one identified user across its addresses; unidentified clients are not limited per user', async () => {
    const h = await start(yaml(service('s', echo, ['limits: { perUser: 2 }']), `users:
  staff: { sources: [127.0.5.0/24] }
  ops: { sources: [127.0.6.0/24] }`));
    const s1 = await admitted(h, '127.0.5.1');
    const s2 = await admitted(h, '127.0.5.2');
    expect(await refused(h, '127.0.5.3')).toBe('per-user');
    const byUser = h.events.filter((e) => e.event === 'ClientDisconnect' && e.client.startsWith('127.0.5.3:'));
    expect(byUser.map((e) => e.user)).toEqual(['staff']);
    // Another user has a count of its own; nobody (user null) is never limited per user.
    const o = await admitted(h, '127.0.6.1');
    const nobody = [await admitted(h, '127.0.9.9'), await admitted(h, '127.0.9.9'), await admitted(h, '127.0.9.9')];
    const connects = h.events.filter((e) => e.event === 'ClientConnect' && (e.client.startsWith('127.0.9.9:') || e.client.startsWith('127.0.6.1:')));
    expect(connects.map((e) => e.user)).toEqual(['ops', null, null, null]);
    await Promise.all([s1, s2, o, ...nobody].map((a, i) => echoes(a.socket, `hello ${i}`)));

    await close(h, s1);
    const s3 = await admitted(h, '127.0.5.3');
    await echoes(s3.socket, 'staff again');
    expect(await refused(h, '127.0.5.4')).toBe('per-user');
  });

  test('rate: a burst of N, then one more token every 1/N s of the gateway clock; per address', async () => {
    let now = 1_700_000_000_000;
    const h = await start(yaml(service('s', echo, ['limits: { rate: 3/s }'])), { clock: () => now });
    // Closed at once: the rate counts attempts, not open connections.
    for (let i = 0; i < 3; i++) await close(h, await admitted(h, '127.0.0.2'));
    expect(await refused(h, '127.0.0.2')).toBe('rate');
    now += 333;
    // 333 ms earn 999/1000 of a token; the refused attempt took nothing.
    expect(await refused(h, '127.0.0.2')).toBe('rate');
    now += 1;
    const again = await admitted(h, '127.0.0.2');
    await echoes(again.socket, 'refilled');
    expect(await refused(h, '127.0.0.2')).toBe('rate');
    // Another address has its own bucket, full.
    for (let i = 0; i < 3; i++) await admitted(h, '127.0.0.3');
    expect(await refused(h, '127.0.0.3')).toBe('rate');
    // A long pause fills the bucket to N, not beyond.
    now += 3_600_000;
    for (let i = 0; i < 3; i++) await admitted(h, '127.0.0.2');
    expect(await refused(h, '127.0.0.2')).toBe('rate');
  });

  test('maxConnections: over it a client is refused with limit "service"; a closed one frees the slot', async () => {
    const h = await start(yaml(service('s', echo, ['maxConnections: 1'])));
    const a = await admitted(h, '127.0.0.2');
    expect(await refused(h, '127.0.0.3')).toBe('service');
    await echoes(a.socket, 'alone');
    await close(h, a);
    await echoes((await admitted(h, '127.0.0.3')).socket, 'next');
  });

  test('checks run in order: service, mapping reject, rate (every attempt that gets there takes a token), per-source, per-user', async () => {
    const now = 1_700_000_000_000;
    const h = await start(yaml(service('s', echo, [
      'maxConnections: 3',
      'limits: { perSource: 1, perUser: 2, rate: 3/s }',
      'mappings:',
      '  - { source: 127.0.0.4, action: reject }',
    ]), `users:
  staff: { sources: [127.0.5.0/24] }`), { clock: () => now });
    const s1 = await admitted(h, '127.0.5.1');
    const s2 = await admitted(h, '127.0.5.2');
    expect(await refused(h, '127.0.5.3')).toBe('per-user');
    // Over both per-source (one open) and per-user (two open): per-source is checked first.
    expect(await refused(h, '127.0.5.1')).toBe('per-source');
    expect(await refused(h, '127.0.5.1')).toBe('per-source');
    // Those refusals took tokens: 127.0.5.1 has spent its 3, so with nothing of it open it meets the rate.
    await close(h, s1);
    expect(await refused(h, '127.0.5.1')).toBe('rate');
    // Over both the rate and per-source: the rate is checked first.
    expect(await refused(h, '127.0.5.2')).toBe('per-source');
    expect(await refused(h, '127.0.5.2')).toBe('per-source');
    expect(await refused(h, '127.0.5.2')).toBe('rate');
    // A reject mapping comes before the rate: more attempts than tokens, every one "rejected".
    const before = h.events.length;
    for (let i = 0; i < 4; i++) expect((await probe(portOf(h.gw, 's'), '127.0.0.4')).admitted).toBe(false);
    const rejections = (): ClientDisconnectEvent[] => h.events.slice(before).filter((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect');
    await waitFor(() => rejections().length === 4, 2000, 'four rejections');
    expect(rejections().map((e) => [e.reason, e.error])).toEqual(Array(4).fill(['rejected', null]));
    // maxConnections comes before everything: with 3 open, whoever it is, "service".
    const t = [await admitted(h, '127.0.0.9'), await admitted(h, '127.0.0.11')];
    expect(await refused(h, '127.0.0.10')).toBe('service');
    expect(await refused(h, '127.0.0.4')).toBe('service');
    expect(await refused(h, '127.0.5.2')).toBe('service');
    await Promise.all([echoes(s2.socket, 'x'), echoes(t[0].socket, 'y'), echoes(t[1].socket, 'z')]);
  });

  test('a reject mapping takes no token: a rejected address has its whole burst once the mapping is gone', async () => {
    const now = 1_700_000_000_000;
    const port = await unusedPort();
    const withReject = (reject: boolean): string => yaml(service('s', echo, [
      'limits: { rate: 2/s }', ...(reject ? ['mappings:', '  - { source: 127.0.0.4, action: reject }'] : []),
    ], port));
    const h = await start(withReject(true), { clock: () => now });
    for (let i = 0; i < 4; i++) expect((await probe(port, '127.0.0.4')).admitted).toBe(false);
    await waitFor(() => h.events.filter((e) => e.event === 'ClientDisconnect').length === 4, 2000, 'four rejections');
    expect(h.events.filter((e) => e.event === 'ClientDisconnect').map((e) => (e as ClientDisconnectEvent).reason)).toEqual(['rejected', 'rejected', 'rejected', 'rejected']);
    expect((await h.gw.reload(parseConfig(withReject(false), 'test.yaml'))).ok).toBe(true);
    // The clock has not moved: these two tokens are the ones the rejections did not take.
    await admitted(h, '127.0.0.4');
    await admitted(h, '127.0.0.4');
    expect(await refused(h, '127.0.0.4')).toBe('rate');
  });

  test('defaults.limits apply to every service; a service\'s keys replace them, "off" removes one; /status shows what is in force', async () => {
    const now = 1_700_000_000_000;
    const h = await start(yaml(
      service('plain', echo) +
      service('override', echo, ['limits: { perSource: 3 }']) +
      service('open', echo, ['limits: { perSource: off, rate: off, perUser: off }']),
      `defaults:
  limits: { perSource: 1, perUser: 64, rate: 2/s }`,
      '127.0.0.1:0',
    ), { clock: () => now });
    // plain: perSource 1 from the defaults.
    await admitted(h, '127.0.0.2', 'plain');
    expect(await refused(h, '127.0.0.2', 'plain')).toBe('per-source');
    // override: its perSource 3 replaces 1; the rate 2/s is still the defaults'.
    await admitted(h, '127.0.0.2', 'override');
    await admitted(h, '127.0.0.2', 'override');
    expect(await refused(h, '127.0.0.2', 'override')).toBe('rate');
    // open: no limit left; the same address holds five at once at the same instant.
    const many: Admitted[] = [];
    for (let i = 0; i < 5; i++) many.push(await admitted(h, '127.0.0.2', 'open'));
    await Promise.all(many.map((a, i) => echoes(a.socket, `open ${i}`)));

    const status = await adminGet(h.gw, '/status');
    expect(status.status).toBe(200);
    const body = JSON.parse(status.body) as { services: Array<{ name: string; limits: unknown }> };
    expect(body.services.map((s) => [s.name, s.limits])).toEqual([
      ['plain', { perSource: 1, perUser: 64, rate: '2/s' }],
      ['override', { perSource: 3, perUser: 64, rate: '2/s' }],
      ['open', { perSource: null, perUser: null, rate: null }],
    ]);
  });

  test('metrics count every refusal by service and limit, and no label carries a client address', async () => {
    const now = 1_700_000_000_000;
    const h = await start(yaml(
      service('svc', echo, ['maxConnections: 1']) +
      service('src', echo, ['limits: { perSource: 1 }']) +
      service('usr', echo, ['limits: { perUser: 1 }']) +
      service('rate', echo, ['limits: { rate: 1/s }', 'mappings:', '  - { source: 127.0.0.8, action: reject }']),
      `users:
  staff: { sources: [127.0.5.0/24] }`,
    ), { clock: () => now });
    const expected: Record<string, Record<string, number>> = {
      svc: { service: 2 }, src: { 'per-source': 3 }, usr: { 'per-user': 1 }, rate: { rate: 2 },
    };
    await admitted(h, '127.0.0.2', 'svc');
    expect(await refused(h, '127.0.0.3', 'svc')).toBe('service');
    expect(await refused(h, '127.0.0.4', 'svc')).toBe('service');
    await admitted(h, '127.0.0.2', 'src');
    await admitted(h, '127.0.0.3', 'src');
    for (let i = 0; i < 3; i++) expect(await refused(h, '127.0.0.2', 'src')).toBe('per-source');
    await admitted(h, '127.0.5.1', 'usr');
    expect(await refused(h, '127.0.5.2', 'usr')).toBe('per-user');
    await admitted(h, '127.0.0.5', 'rate');
    await admitted(h, '127.0.0.6', 'rate');
    expect(await refused(h, '127.0.0.5', 'rate')).toBe('rate');
    expect(await refused(h, '127.0.0.6', 'rate')).toBe('rate');
    // A rejection by mapping is counted as such, not as a limit.
    expect((await probe(portOf(h.gw, 'rate'), '127.0.0.8')).admitted).toBe(false);
    await waitFor(() => h.events.some((e) => e.event === 'ClientDisconnect' && e.reason === 'rejected'), 2000, 'the rejection');

    const refusals = h.events.filter((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect' && e.reason === 'limit');
    expect(refusals).toHaveLength(8);
    for (const [svc, byLimit] of Object.entries(expected)) {
      const total = Object.values(byLimit).reduce((a, b) => a + b, 0);
      expect([svc, await metricValue(h.gw, 'mapgate_rejected_total', { service: svc, reason: 'limit' })]).toEqual([svc, total]);
      expect([svc, refusals.filter((e) => e.service === svc).length]).toEqual([svc, total]);
      for (const limit of LIMITS) {
        expect([svc, limit, await metricValue(h.gw, 'mapgate_limit_rejections_total', { service: svc, limit })]).toEqual([svc, limit, byLimit[limit] ?? 0]);
      }
    }
    expect(await metricValue(h.gw, 'mapgate_rejected_total', { service: 'rate', reason: 'rejected' })).toBe(1);
    // Rate buckets exist only where a rate is set: two addresses tried `rate` (the rejected one never got that far).
    expect(await metricValue(h.gw, 'mapgate_limit_tracked_sources', { service: 'rate' })).toBe(2);
    for (const svc of ['svc', 'src', 'usr']) expect([svc, await metricValue(h.gw, 'mapgate_limit_tracked_sources', { service: svc })]).toEqual([svc, 0]);

    const text = await h.gw.metrics.registry.metrics();
    const values = [...text.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => m[2]);
    expect(values.length).toBeGreaterThan(0);
    expect(values.filter((v) => v.includes('127.0.'))).toEqual([]);
    for (const address of ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.8', '127.0.5.1', '127.0.5.2']) {
      expect([address, text.includes(address)]).toEqual([address, false]);
    }
  });
});

describe('limits across a reload', () => {
  test('lowering perSource keeps open connections; new ones over the new limit are refused until enough close', async () => {
    const port = await unusedPort();
    const config = (perSource: number): string => yaml(service('s', echo, [`limits: { perSource: ${perSource} }`], port));
    const h = await start(config(3));
    const open = [await admitted(h, '127.0.0.2'), await admitted(h, '127.0.0.2'), await admitted(h, '127.0.0.2')];
    const result = await h.gw.reload(parseConfig(config(1), 'test.yaml'));
    expect(result).toMatchObject({ ok: true, changed: ['s'] });
    await Promise.all(open.map((a, i) => echoes(a.socket, `kept ${i}`)));
    expect(await refused(h, '127.0.0.2')).toBe('per-source');
    await admitted(h, '127.0.0.3');
    await close(h, open[0]);
    await close(h, open[1]);
    // One still open: at the new limit.
    expect(await refused(h, '127.0.0.2')).toBe('per-source');
    await close(h, open[2]);
    const again = await admitted(h, '127.0.0.2');
    await echoes(again.socket, 'counted right');
    expect(await refused(h, '127.0.0.2')).toBe('per-source');
  });

  test('a reload that changes the rate keeps what each address has left: an emptied bucket stays empty', async () => {
    let now = 1_700_000_000_000;
    const port = await unusedPort();
    const config = (rate: string): string => yaml(service('s', echo, [`limits: { rate: ${rate} }`], port));
    const h = await start(config('2/s'), { clock: () => now });
    await admitted(h, '127.0.0.2');
    await admitted(h, '127.0.0.2');
    expect(await refused(h, '127.0.0.2')).toBe('rate');
    expect((await h.gw.reload(parseConfig(config('4/s'), 'test.yaml'))).ok).toBe(true);
    // A larger burst is no fresh bucket: still empty at the same instant, then refilled at the new rate.
    expect(await refused(h, '127.0.0.2')).toBe('rate');
    now += 250;
    await admitted(h, '127.0.0.2');
    expect(await refused(h, '127.0.0.2')).toBe('rate');
    // An address new to the service starts with the new, larger burst.
    for (let i = 0; i < 4; i++) await admitted(h, '127.0.0.3');
    expect(await refused(h, '127.0.0.3')).toBe('rate');
  });

  test('limits off by a reload and on again: counted connections give their counts back, uncounted ones take nothing away', async () => {
    const port = await unusedPort();
    const config = (limits: string): string => yaml(service('s', echo, limits ? [`limits: ${limits}`] : [], port));
    const h = await start(config('{ perSource: 2 }'));
    const a1 = await admitted(h, '127.0.0.2');
    const a2 = await admitted(h, '127.0.0.2');
    expect((await h.gw.reload(parseConfig(config(''), 'test.yaml'))).ok).toBe(true);
    // No limit at all: admitted without being counted.
    const a3 = await admitted(h, '127.0.0.2');
    await close(h, a1);
    expect((await h.gw.reload(parseConfig(config('{ perSource: 2 }'), 'test.yaml'))).ok).toBe(true);
    // Counted open: a2 only (a3 came in uncounted, as the Limiter documents).
    const b1 = await admitted(h, '127.0.0.2');
    expect(await refused(h, '127.0.0.2')).toBe('per-source');
    // a3 closing must not lower the count below what is counted (a2, b1).
    await close(h, a3);
    expect(await refused(h, '127.0.0.2')).toBe('per-source');
    await close(h, a2);
    await admitted(h, '127.0.0.2');
    expect(await refused(h, '127.0.0.2')).toBe('per-source');
    await echoes(b1.socket, 'still here');
  });
  test('a service removed and added back while its connections drain keeps their per-source counts', async () => {
    const port = await unusedPort();
    const other = await unusedPort();
    const s = service('s', echo, ['limits: { perSource: 2 }'], port);
    const t = service('t', echo, [], other);
    const config = (services: string): string => yaml(services, 'shutdownGrace: 30s');
    const h = await start(config(s + t));
    await admitted(h, '127.0.0.2');
    await admitted(h, '127.0.0.2');
    expect(await refused(h, '127.0.0.2')).toBe('per-source');
    expect((await h.gw.reload(parseConfig(config(t), 'test.yaml'))).ok).toBe(true);
    expect((await h.gw.reload(parseConfig(config(s + t), 'test.yaml'))).ok).toBe(true);
    expect(h.gw.status().connections.filter((c) => c.client.startsWith('127.0.0.2:'))).toHaveLength(2);
    expect(await refused(h, '127.0.0.2')).toBe('per-source');
  });
});


describe('a flood of distinct source addresses (scaled down; test/stress/source-flood.test.ts has the full one)', () => {
  test('3,000 addresses through a 500-bucket limiter: tracked sources stay at the maximum, an active address keeps its state, an idle one is evicted', async () => {
    const MAX = 500;
    const FLOOD = 3000;
    let now = 1_700_000_000_000;
    const h = await start(yaml(service('s', echo, ['maxConnections: 1000', 'limits: { perSource: 2, rate: 5/s }'])), { clock: () => now, limiterSources: MAX });
    const port = portOf(h.gw, 's');
    const active = '127.0.0.77';
    const idle = '127.0.0.78';
    const holder = '127.0.0.76';
    let floodAdmitted = 0;
    let done = 0;
    const flood = (from: number, count: number): Promise<number> => bounded(count, 50, Date.now() + 20_000, async (i) => {
      if ((await probe(port, floodAddress(from + i, 20))).admitted) floodAdmitted++;
      done++;
    });

    // The active address empties its bucket, then earns and spends one token at a time during the flood.
    for (let i = 0; i < 5; i++) await close(h, await admitted(h, active));
    expect(await refused(h, active)).toBe('rate');
    // The holder keeps two connections open through the flood: open counts are never evicted.
    const held = [await admitted(h, holder), await admitted(h, holder)];

    const started = Date.now();
    let finished = false;
    const flooding = flood(0, FLOOD).finally(() => (finished = true));
    // Between two turns of the active address at most ~150 others arrive: it stays recent.
    let turns = 0;
    while (!finished) {
      const target = Math.min(FLOOD, (turns + 1) * 100);
      await waitFor(() => finished || done >= target, 20_000, `${target} flood connections`);
      now += 200;
      await close(h, await admitted(h, active));
      turns++;
    }
    expect(await flooding).toBe(FLOOD);
    expect(floodAdmitted).toBe(FLOOD);
    expect(turns).toBeGreaterThanOrEqual(FLOOD / 100);
    expect(await metricValue(h.gw, 'mapgate_limit_tracked_sources', { service: 's' })).toBe(MAX);
    // The active address's bucket survived, empty: refused at once, one more 200 ms later.
    expect(await refused(h, active)).toBe('rate');
    now += 200;
    await admitted(h, active);
    expect(await refused(h, active)).toBe('rate');
    // The holder's two are still counted (and open), whatever became of its bucket.
    expect(await refused(h, holder)).toBe('per-source');
    await Promise.all(held.map((a, i) => echoes(a.socket, `held ${i}`)));

    // An address that empties its bucket and then goes quiet while more than MAX others come (the
    // clock standing still) is evicted: it comes back to a full bucket, not an empty one.
    for (let i = 0; i < 5; i++) await close(h, await admitted(h, idle));
    expect(await refused(h, idle)).toBe('rate');
    expect(await flood(FLOOD, MAX + 100)).toBe(MAX + 100);
    expect(floodAdmitted).toBe(FLOOD + MAX + 100);
    for (let i = 0; i < 5; i++) await close(h, await admitted(h, idle));
    expect(await refused(h, idle)).toBe('rate');

    await close(h, held[0]);
    await admitted(h, holder);
    expect(await metricValue(h.gw, 'mapgate_limit_rejections_total', { service: 's', limit: 'rate' })).toBe(5);
    expect(await metricValue(h.gw, 'mapgate_limit_rejections_total', { service: 's', limit: 'per-source' })).toBe(1);
    expect(await metricValue(h.gw, 'mapgate_limit_tracked_sources', { service: 's' })).toBe(MAX);
    console.log(`[limits] ${FLOOD + MAX + 100} distinct addresses in ${Date.now() - started} ms; the active address took ${turns} turns`);
  }, 30_000);

  test('open counts are never evicted: with more addresses open at once than the limiter keeps buckets for, a holder stays at its limit', async () => {
    const MAX = 100;
    const now = 1_700_000_000_000;
    const h = await start(yaml(service('s', echo, ['maxConnections: 1000', 'limits: { perSource: 2, rate: 5/s }'])), { clock: () => now, limiterSources: MAX });
    const holder = '127.0.0.76';
    const held = [await admitted(h, holder), await admitted(h, holder)];
    const others: Probe[] = [];
    expect(await bounded(MAX + 50, 50, Date.now() + 10_000, async (i) => {
      const p = await probe(portOf(h.gw, 's'), floodAddress(i, 21), { hold: true });
      onTeardown(() => p.socket.destroy());
      others.push(p);
    })).toBe(MAX + 50);
    expect(others.filter((p) => p.admitted)).toHaveLength(MAX + 50);
    expect(await metricValue(h.gw, 'mapgate_limit_tracked_sources', { service: 's' })).toBe(MAX);
    expect(await refused(h, holder)).toBe('per-source');
    for (const p of others) p.socket.destroy();
    await waitFor(() => h.gw.status().connections.length === held.length, 5000, 'the others to close');
    expect(await refused(h, holder)).toBe('per-source');
    await close(h, held[0]);
    await admitted(h, holder);
  });
});
