import { roundTrip, startEchoServer } from '../helpers/net';
import { sample, timedGet } from '../helpers/cluster';
import { runCli, started, startedPort, writeConfig } from '../helpers/process';

const SERVICES = 300;

describe('what a service costs while it is not used', () => {
  test(`${SERVICES} services with a rate limit each: no rate table until a client takes a token`, async () => {
    // Each service's rate buckets are an LRU of 16,384 addresses, about 350 KiB once allocated:
    // allocated up front, 300 services would hold over 100 MB of heap.
    const { port } = await startEchoServer();
    const services = Array.from({ length: SERVICES }, (_, i) => `  - name: s${i}
    port: 0
    bind: [127.0.0.1]
    destination: 127.0.0.1:${port}
`).join('');
    const r = runCli(['run', '-c', writeConfig(`admin: { listen: "127.0.0.1:0" }
log: { events: off }
shutdownGrace: 1s
defaults:
  limits: { rate: 100/s }
services:
${services}`)]);
    const info = await started(r, 20_000);
    expect(info.listeners).toHaveLength(SERVICES);
    expect((await roundTrip(startedPort(info, 's0'), 'one')).toString()).toBe('one');
    const { body: text } = await timedGet(info.admin!, '/metrics');
    expect(sample(text, 'mapgate_limit_tracked_sources{service="s0"}')).toBe(1);
    expect(sample(text, 'mapgate_limit_tracked_sources{service="s1"}')).toBe(0);
    expect(sample(text, 'nodejs_heap_size_used_bytes')).toBeLessThan(64 * 1024 * 1024);
    r.child.kill('SIGTERM');
    expect(await r.exit).toBe(0);
  }, 40_000);
});
