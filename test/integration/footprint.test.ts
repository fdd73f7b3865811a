import * as http from 'node:http';
import { roundTrip, startEchoServer } from '../helpers/net';
import { runCli, started, startedPort, writeConfig } from '../helpers/process';

const SERVICES = 300;

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no ${name} in /metrics`);
  return Number(line.slice(name.length + 1));
}

function getMetrics(admin: { host: string; port: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ host: admin.host, port: admin.port, path: '/metrics', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

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
    const text = await getMetrics(info.admin!);
    expect(metric(text, 'mapgate_limit_tracked_sources{service="s0"}')).toBe(1);
    expect(metric(text, 'mapgate_limit_tracked_sources{service="s1"}')).toBe(0);
    expect(metric(text, 'nodejs_heap_size_used_bytes')).toBeLessThan(64 * 1024 * 1024);
    r.child.kill('SIGTERM');
    expect(await r.exit).toBe(0);
  }, 40_000);
});
