import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify } from 'yaml';
import { parseConfig } from '../../src/config/load';
import { createGateway, type Gateway } from '../../src/gateway';
import { PrometheusServer } from './prometheus-server';
import { ROOT, repoFile, run, which } from './tools';

/**
 * deploy/prometheus/scrape-mapgate.yaml, the scrape job for an admin endpoint with admin.token
 * and admin.tls: promtool accepts it, and a real Prometheus running exactly that job (its file
 * paths, server name and target pointed at this test's) scrapes a real protected gateway, while
 * the same job with another token is refused (401).
 */

const EXAMPLE = 'deploy/prometheus/scrape-mapgate.yaml';
const FIXTURES = join(ROOT, 'test', 'fixtures');
const TOKEN = 'scrape-token-9f3b2c7d1e';

type Job = Record<string, any>;
const example = parseYaml(repoFile(EXAMPLE)) as { scrape_configs: Job[] };

let dir = '';
let gateway: Gateway;
let prometheus: PrometheusServer | null = null;
let promUrl = '';

/** The example's job with this test's CA, server name and target; it sends the token `credentialsFile` holds. */
function localJob(name: string, credentialsFile: string, target: string): Job {
  const job = structuredClone(example.scrape_configs[0]);
  job.job_name = name;
  job.authorization.credentials_file = credentialsFile;
  job.tls_config.ca_file = join(FIXTURES, 'ca.pem');
  job.tls_config.server_name = 'localhost';
  job.scrape_interval = '1s';
  job.scrape_timeout = '1s';
  job.static_configs = [{ targets: [target] }];
  return job;
}

interface Target { labels: { job: string }; health: string; lastError: string; scrapeUrl: string }

async function targets(): Promise<Target[]> {
  const res = await fetch(`${promUrl}/api/v1/targets?state=active`);
  return ((await res.json()) as { data: { activeTargets: Target[] } }).data.activeTargets;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mapgate-scrape-'));
  gateway = createGateway(parseConfig(`
admin:
  listen: "127.0.0.1:0"
  token: "${TOKEN}"
  tls: { cert: server.pem, key: server.key }
log: { events: "off" }
services: []
`, 'scrape-test.yaml', { baseDir: FIXTURES }), { defaultMetrics: false });
  await gateway.start();
  const admin = gateway.adminAddress()!;
  writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
  writeFileSync(join(dir, 'wrong-token'), 'not-the-token-at-all\n');
  const target = `127.0.0.1:${admin.port}`;
  prometheus = await PrometheusServer.start(dir, stringify({
    global: { scrape_interval: '1s' },
    scrape_configs: [localJob('mapgate', join(dir, 'token'), target), localJob('mapgate-wrong-token', join(dir, 'wrong-token'), target)],
  }));
  promUrl = prometheus.url;
}, 60_000);

afterAll(async () => {
  await prometheus?.stop();
  await gateway?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe('the scrape job for a protected admin endpoint (deploy/prometheus/scrape-mapgate.yaml)', () => {
  test('is https with a bearer credentials file and a CA + server name, and promtool accepts it', async () => {
    const job = example.scrape_configs[0];
    expect(job.job_name).toMatch(/mapgate/);
    expect(job.scheme).toBe('https');
    expect(job.metrics_path).toBe('/metrics');
    expect(job.authorization).toEqual({ type: 'Bearer', credentials_file: expect.stringMatching(/^\//) });
    expect(job.tls_config).toMatchObject({ ca_file: expect.stringMatching(/^\//), server_name: expect.any(String) });
    // promtool reads the files a job names: here the example's, pointed at this test's files.
    const checked = join(dir, 'example-local.yml');
    writeFileSync(checked, stringify({ scrape_configs: [localJob(job.job_name, join(dir, 'token'), '127.0.0.1:9464')] }));
    const r = await run(which('promtool') ?? 'promtool', ['check', 'config', checked]);
    expect({ code: r.code, out: r.stdout + r.stderr }).toEqual({ code: 0, out: expect.stringContaining('SUCCESS') });
    // As written, only its example paths differ: promtool's complaint, if any, is about them.
    const asWritten = await run(which('promtool') ?? 'promtool', ['check', 'config', '--syntax-only', join(ROOT, EXAMPLE)]);
    if (!/unknown long flag|flag provided but not defined/.test(asWritten.stderr)) expect({ code: asWritten.code, out: asWritten.stdout + asWritten.stderr }).toEqual({ code: 0, out: expect.stringContaining('SUCCESS') });
  });

  test('a real Prometheus running the job scrapes the gateway over HTTPS with the token; with another token it gets 401', async () => {
    await prometheus!.until('both targets scraped', 30_000, async () => (await targets()).every((t) => t.health !== 'unknown') && (await targets()).length === 2);
    const byJob = new Map((await targets()).map((t) => [t.labels.job, t]));
    expect(byJob.get('mapgate')).toMatchObject({ health: 'up', lastError: '', scrapeUrl: expect.stringMatching(/^https:\/\//) });
    expect(byJob.get('mapgate-wrong-token')).toMatchObject({ health: 'down', lastError: expect.stringContaining('401') });
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent('mapgate_build_info{job="mapgate"}')}`);
    const body = (await res.json()) as { data: { result: unknown[] } };
    expect(body.data.result).toHaveLength(1);
  });
});
