import type { ClientDisconnectEvent, DisconnectReason } from '../../src/events/events';
import {
  HISTORY_SECONDS, RECENT_CLOSED, Traffic, mergeClosed, mergeHistories, mergeTraffic, type SampledConnection, type TrafficHistory,
} from '../../src/admin/traffic';

/** An open connection whose byte counters the test sets. */
class FakeConnection implements SampledConnection {
  from = 0;
  to = 0;
  sampledFromClient = 0;
  sampledToClient = 0;
  rateFromClient = 0;
  rateToClient = 0;
  constructor(readonly service: string) {}
  bytesFromClient(): number { return this.from; }
  bytesToClient(): number { return this.to; }
}

const T0 = Date.parse('2026-12-02T10:00:00.000Z');

function closedEvent(service: string, reason: DisconnectReason, fields: Partial<ClientDisconnectEvent> = {}): ClientDisconnectEvent {
  return {
    event: 'ClientDisconnect', id: `c${Math.random().toString(36).slice(2, 8)}`, service, listener: '127.0.0.1:1', client: '10.0.0.1:5000',
    user: null, auth: null, sni: null, alpn: null, requested: null, originalDestination: null, destination: '10.0.0.2:143', tls: false,
    time: new Date(T0).toISOString(), bytesFromClient: 0, bytesToClient: 0, durationMs: 10, reason, error: null, destinationIndex: 0, ...fields,
  };
}

function traffic(): { t: Traffic; open: Set<FakeConnection> } {
  const open = new Set<FakeConnection>();
  return { t: new Traffic(() => open), open };
}

describe('the console sampler', () => {
  test('a connection moving 1000 B/s up and 4000 B/s down: its rates, its service\'s, and the history\'s, exactly', () => {
    const { t, open } = traffic();
    t.sample(T0 - 1000);
    const c = new FakeConnection('imap');
    open.add(c);
    t.opened('imap');
    for (let s = 0; s <= 6; s++) {
      c.from = 1000 * s;
      c.to = 4000 * s;
      t.sample(T0 + s * 1000);
    }
    expect([c.rateFromClient, c.rateToClient]).toEqual([1000, 4000]);
    // It opened more than 5 seconds ago.
    expect(t.of('imap').rates).toEqual({ connections: 0, fromClient: 1000, toClient: 4000 });
    const h = t.history();
    expect(h.end).toBe(T0 / 1000 + 6);
    expect(h.open).toEqual([0, 1, 1, 1, 1, 1, 1, 1]);
    // The first point has no interval before it.
    expect(h.fromClient).toEqual([0, 0, 1000, 1000, 1000, 1000, 1000, 1000]);
    expect(h.toClient).toEqual([0, 0, 4000, 4000, 4000, 4000, 4000, 4000]);
  });

  test('a connection that closes hands its bytes over without a jump: the rate counts what it moved before closing, once', () => {
    const { t, open } = traffic();
    const c = new FakeConnection('imap');
    open.add(c);
    c.from = 10_000;
    t.sample(T0);
    // 500 more bytes, then it closes between two samples.
    open.delete(c);
    t.closed(closedEvent('imap', 'client-closed', { bytesFromClient: 10_500, bytesToClient: 0 }));
    t.sample(T0 + 1000);
    expect(t.history().fromClient.at(-1)).toBe(500);
    t.sample(T0 + 2000);
    expect(t.history().fromClient.at(-1)).toBe(0);
    expect(t.history().open).toEqual([1, 0, 0]);
  });

  test('rejected and failed in the last minute, by reason; a minute later they are gone', () => {
    const { t } = traffic();
    t.sample(T0);
    const reasons: Array<[DisconnectReason, Partial<ClientDisconnectEvent>]> = [
      ['limit', { destination: null }], ['rejected', {}], ['no-route', { destination: null }], ['handshake-timeout', { destination: null }],
      ['proxy-protocol', {}], ['socks', {}], ['auth-failed', {}],
      // The client's TLS handshake failed (no destination chosen yet): rejected; the upstream's: failed.
      ['tls-failed', { destination: null }], ['tls-failed', { destination: '10.0.0.2:993' }],
      ['connect-failed', { error: 'ECONNREFUSED' }], ['connect-timeout', {}],
      ['client-closed', {}], ['upstream-closed', {}], ['idle-timeout', {}], ['schedule', {}], ['shutdown', {}],
    ];
    for (const [reason, fields] of reasons) {
      t.opened('mail');
      t.closed(closedEvent('mail', reason, fields));
    }
    t.sample(T0 + 1000);
    expect(t.of('mail').lastMinute).toEqual({ connections: reasons.length, rejected: 8, failed: 3 });
    for (let s = 2; s <= 60; s++) t.sample(T0 + s * 1000);
    expect(t.of('mail').lastMinute).toEqual({ connections: reasons.length, rejected: 8, failed: 3 });
    t.sample(T0 + 61_000);
    expect(t.of('mail').lastMinute).toEqual({ connections: 0, rejected: 0, failed: 0 });
    expect(t.of('unknown')).toEqual({ rates: { connections: 0, fromClient: 0, toClient: 0 }, lastMinute: { connections: 0, rejected: 0, failed: 0 } });
  });

  test('rates average the last 5 seconds: a burst of 10 connections reads 2/s, then 0 once 5 seconds have passed', () => {
    const { t } = traffic();
    t.follow(['web']);
    for (let s = 0; s <= 5; s++) t.sample(T0 + s * 1000);
    for (let i = 0; i < 10; i++) t.opened('web');
    t.sample(T0 + 6000);
    expect(t.of('web').rates.connections).toBe(2);
    for (let s = 7; s <= 10; s++) t.sample(T0 + s * 1000);
    expect(t.of('web').rates.connections).toBe(2);
    t.sample(T0 + 11_000);
    expect(t.of('web').rates.connections).toBe(0);
  });

  test(`the history keeps ${HISTORY_SECONDS} points, one a second; a second the timer skipped repeats its neighbour; a long gap starts afresh`, () => {
    const { t, open } = traffic();
    const c = new FakeConnection('x');
    t.sample(T0);
    open.add(c);
    // Skips the second T0+1.
    t.sample(T0 + 2000);
    expect(t.history().open).toEqual([0, 1, 1]);
    // Skips 10 seconds (the process was stopped): no data shown for them.
    t.sample(T0 + 13_000);
    expect(t.history().open).toEqual([0, 1, 1, ...new Array(10).fill(null), 1]);
    for (let s = 3; s < 1000; s++) t.sample(T0 + s * 1000);
    const h = t.history();
    expect(h.open).toHaveLength(HISTORY_SECONDS);
    expect(h.end).toBe(T0 / 1000 + 999);
    expect(h.open.every((v) => v === 1)).toBe(true);
    // Nothing for an hour (a suspended VM): the old points are not shown as if they were recent.
    open.delete(c);
    t.sample(T0 + 3_600_000);
    expect(t.history()).toEqual({ end: T0 / 1000 + 3600, open: [0], fromClient: [0], toClient: [0] });
  });

  test(`the last ${RECENT_CLOSED} closed connections, newest first, with when they closed`, () => {
    const { t } = traffic();
    expect(t.closedConnections()).toEqual([]);
    for (let i = 0; i < 150; i++) t.closed(closedEvent('s', 'client-closed', { id: `c${i}`, durationMs: i * 1000, bytesFromClient: i }));
    const list = t.closedConnections();
    expect(list).toHaveLength(RECENT_CLOSED);
    expect(list.map((c) => c.id)).toEqual(Array.from({ length: RECENT_CLOSED }, (_, k) => `c${149 - k}`));
    expect(list[0]).toEqual({
      id: 'c149', service: 's', client: '10.0.0.1:5000', user: null, auth: null, requested: null, destination: '10.0.0.2:143',
      closed: new Date(T0 + 149_000).toISOString(), durationMs: 149_000, bytesFromClient: 149, bytesToClient: 0, reason: 'client-closed', error: null,
    });
  });

  test('follow: a service gone from the config is forgotten once its connections have closed, not before', () => {
    const { t, open } = traffic();
    t.follow(['old']);
    t.sample(T0);
    const c = new FakeConnection('old');
    c.from = 5;
    open.add(c);
    t.opened('old');
    t.sample(T0 + 1000);
    // Still open: kept, with what it moves.
    t.follow([]);
    c.from = 10;
    t.sample(T0 + 2000);
    expect(t.of('old').lastMinute.connections).toBe(1);
    expect(t.of('old').rates.fromClient).toBe(5);
    open.delete(c);
    t.closed(closedEvent('old', 'client-closed', { bytesFromClient: 10 }));
    t.sample(T0 + 3000);
    t.follow([]);
    expect(t.of('old').lastMinute.connections).toBe(0);
  });
});

describe('merging the workers\' figures', () => {
  test('histories of the same seconds add up; one that started later or ended earlier adds where it has points', () => {
    const a: TrafficHistory = { end: 1005, open: [1, 2, 3, 4, 5], fromClient: [10, 20, 30, 40, 50], toClient: [0, 0, 0, 0, 0] };
    const b: TrafficHistory = { end: 1004, open: [1, null, 1], fromClient: [1, null, 1], toClient: [7, null, 7] };
    const c: TrafficHistory = { end: 1002, open: [null, null], fromClient: [null, null], toClient: [null, null] };
    expect(mergeHistories([a, b, { end: 0, open: [], fromClient: [], toClient: [] }])).toEqual({
      end: 1005, open: [1, 3, 3, 5, 5], fromClient: [10, 21, 30, 41, 50], toClient: [0, 7, 0, 7, 0],
    });
    expect(mergeHistories([])).toEqual({ end: 0, open: [], fromClient: [], toClient: [] });
    // Where no worker has a point, there is none.
    expect(mergeHistories([c])).toEqual({ end: 1002, open: [null, null], fromClient: [null, null], toClient: [null, null] });
    // Never longer than the window, however far apart the workers' clocks are.
    const old: TrafficHistory = { end: 10, open: [1], fromClient: [1], toClient: [1] };
    expect(mergeHistories([a, old]).open).toHaveLength(5);
  });

  test('rates and last minutes add up; recent lists interleave by close time, newest first, the last 100', () => {
    const x = { rates: { connections: 1, fromClient: 2, toClient: 3 }, lastMinute: { connections: 4, rejected: 5, failed: 6 } };
    expect(mergeTraffic(x, x)).toEqual({ rates: { connections: 2, fromClient: 4, toClient: 6 }, lastMinute: { connections: 8, rejected: 10, failed: 12 } });
    const at = (id: string, ms: number) => ({ ...new Traffic(() => []).closedConnections()[0], id, closed: new Date(T0 + ms).toISOString() }) as never;
    const merged = mergeClosed([[at('a3', 3000), at('a1', 1000)], [at('b2', 2000), at('b0', 0)]]);
    expect(merged.map((c: { id: string }) => c.id)).toEqual(['a3', 'b2', 'a1', 'b0']);
    const many = Array.from({ length: 80 }, (_, i) => at(`w${i}`, i));
    expect(mergeClosed([many, many])).toHaveLength(RECENT_CLOSED);
  });
});
