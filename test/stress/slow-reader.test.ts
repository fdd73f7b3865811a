import type { Socket } from 'node:net';
import { connect } from '../helpers/net';
import { sleep, startGatewayProcess, startUpstream } from './procs';

const MB = 1024 * 1024;
const STREAM_MB = 500;
/** The bound issue 3 sets on the gateway's resident-memory growth under slow readers. */
const MAX_GROWTH_KIB = 64 * 1024;

/**
 * The gateway as its own process between an upstream process that streams 500 MB per
 * connection as fast as it can and `readers` clients that each take 4 bytes every 100 ms.
 * The gateway's VmRSS is sampled before and every 250 ms throughout; every byte read is
 * checked against the upstream's pattern.
 */
async function slowReaders(readers: number, seconds: number): Promise<void> {
  const upstream = await startUpstream(['stream', String(STREAM_MB)]);
  const gw = await startGatewayProcess(`
services:
  - name: s
    port: 0
    bind: ["127.0.0.1"]
    idleTimeout: 5m
    destination: 127.0.0.1:${upstream.port}
`);
  await sleep(500);
  const before = gw.rssKiB();
  const clients: Socket[] = [];
  for (let i = 0; i < readers; i++) {
    const c = await connect(gw.port('s'));
    c.pause();
    clients.push(c);
  }
  const offsets = new Array<number>(readers).fill(0);
  let wrongBytes = 0;
  let peak = before;
  const t0 = Date.now();
  for (let tick = 0; Date.now() - t0 < seconds * 1000 && tick < seconds * 20; tick++) {
    await sleep(100);
    clients.forEach((c, i) => {
      const b = c.read(4) as Buffer | null;
      if (!b) return;
      for (let j = 0; j < b.length; j++) if (b[j] !== (offsets[i] + j) % 251) wrongBytes++;
      offsets[i] += b.length;
    });
    if (tick % 2 === 1) peak = Math.max(peak, gw.rssKiB());
  }
  const after = gw.rssKiB();
  peak = Math.max(peak, after);
  const stats = await upstream.stats();
  console.log(`[stress] ${readers} slow reader(s) for ${seconds} s: gateway VmRSS ${before} KiB before, peak ${peak} KiB (+${peak - before} KiB), ` +
    `${after} KiB after; upstream wrote ${(stats.sent / MB).toFixed(1)} MB of ${readers * STREAM_MB} MB; clients read ${offsets.join('/')} bytes`);

  for (const [i, c] of clients.entries()) {
    // Every reader got its share, in order, still connected.
    expect(offsets[i]).toBeGreaterThanOrEqual(4 * seconds * 5);
    expect(c.destroyed).toBe(false);
  }
  expect(wrongBytes).toBe(0);
  expect(stats.open).toBe(readers);
  // Backpressure reached the upstream: it is stuck far short of its 500 MB per connection
  // (what it wrote sits in socket buffers, which the kernel holds, not the gateway).
  expect(stats.sent).toBeLessThan(readers * 128 * MB);
  expect(gw.run.child.exitCode).toBeNull();
  expect(peak - before).toBeLessThan(MAX_GROWTH_KIB);
}

describe('slow readers against a 500 MB stream, the gateway in its own process', () => {
  test('one client reading 4 bytes per 100 ms for 15 s: gateway memory grows by less than 64 MB', async () => {
    await slowReaders(1, 15);
  }, 60_000);

  test('8 such clients at once for 10 s: gateway memory grows by less than 64 MB', async () => {
    await slowReaders(8, 10);
  }, 60_000);
});
