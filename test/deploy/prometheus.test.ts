import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../../src/config/load';
import { createGateway, type Gateway } from '../../src/gateway';
import { withBool, substitute } from './promql';
import { PrometheusServer, unusedPort } from './prometheus-server';
import { ROOT, repoFile, run, which } from './tools';

/**
 * deploy/prometheus/alerts.yaml and deploy/grafana/mapgate.json against a real Prometheus that
 * scrapes a real gateway every second while traffic flows: successful relays, upstream connect
 * failures (the first destination of `mail` has nothing listening; failover reaches the echo
 * server), policy rejects (`mail` rejects 127.0.0.2) and limit rejects (`full` allows one
 * connection, which the test holds open).
 */

const ALERTS = 'deploy/prometheus/alerts.yaml';
const DASHBOARD = 'deploy/grafana/mapgate.json';
const JOB = 'mapgate';
/** What Grafana would substitute with service "mail" selected, at a 15s resolution. */
const VARS = { service: 'mail', job: JOB, __rate_interval: '15s', __interval: '15s', __range: '1m' };

interface Rule { alert: string; expr: string; for: string; labels: { severity: string }; annotations: Record<string, string> }
const rules = (parseYaml(repoFile(ALERTS)) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules);

interface Panel { title: string; type: string; targets?: Array<{ expr: string }>; panels?: Panel[] }
const dashboard = JSON.parse(repoFile(DASHBOARD)) as { panels: Panel[]; templating: { list: Array<{ name: string; type: string; query: unknown; definition?: string }> } };
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');

interface Sample { metric: Record<string, string>; value: [number, string] }
interface QueryResult { status: string; error?: string; data: { resultType: string; result: Sample[] } }

let prometheus: PrometheusServer | null = null;
let promUrl = '';
let gateway: Gateway;
let dir = '';
const servers: net.Server[] = [];
const sockets = new Set<net.Socket>();
let traffic: Promise<void> = Promise.resolve();
let stopping = false;
const trafficErrors: string[] = [];
let relayed = 0;

function listenLocal(server: net.Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port }, () => resolve((server.address() as net.AddressInfo).port));
  });
}

function dial(port: number, localAddress?: string): net.Socket {
  const s = net.connect({ host: '127.0.0.1', port, localAddress, allowHalfOpen: true });
  sockets.add(s);
  s.on('error', () => {});
  s.on('close', () => sockets.delete(s));
  return s;
}

/** Sends `size` bytes through `port` and resolves the bytes echoed back before the end. */
function roundTrip(port: number, size: number): Promise<number> {
  return new Promise((resolve) => {
    const s = dial(port);
    let got = 0;
    s.on('data', (d: Buffer) => (got += d.length));
    s.on('close', () => resolve(got));
    s.end(Buffer.alloc(size, 0x61));
  });
}

/** Connects and resolves whether the gateway closed the connection without sending a byte. */
function refused(port: number, localAddress?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dial(port, localAddress);
    let got = 0;
    s.on('data', (d: Buffer) => (got += d.length));
    // The gateway closes its side at once; ours is half-open (allowHalfOpen), so end it on FIN.
    s.on('end', () => s.destroy());
    s.on('close', () => resolve(got === 0));
    s.setTimeout(5000, () => s.destroy());
  });
}

async function query(expr: string): Promise<QueryResult> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  return (await res.json()) as QueryResult;
}

async function api<T>(path: string): Promise<T> {
  const res = await fetch(`${promUrl}${path}`);
  const body = (await res.json()) as { status: string; data: T };
  if (body.status !== 'success') throw new Error(`${path}: ${JSON.stringify(body)}`);
  return body.data;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mapgate-prom-'));
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    s.pipe(s);
  });
  servers.push(echo);
  const echoPort = await listenLocal(echo);
  const deadPort = await unusedPort();
  const config = parseConfig(`
admin: { listen: "127.0.0.1:0" }
log: { events: "off" }
services:
  - name: mail
    port: 0
    bind: [127.0.0.1]
    destination: ["127.0.0.1:${deadPort}", "127.0.0.1:${echoPort}"]
    mappings:
      - source: 127.0.0.2/32
        action: reject
  - name: full
    port: 0
    bind: [127.0.0.1]
    maxConnections: 1
    destination: "127.0.0.1:${echoPort}"
  - name: secure
    port: 0
    bind: [127.0.0.1]
    accept:
      tls: { cert: server.pem, key: server.key }
    destination: "127.0.0.1:${echoPort}"
`, 'prometheus-test.yaml', { baseDir: join(ROOT, 'test', 'fixtures') });
  // Default process metrics on: the dashboard and the fd alert read them.
  gateway = createGateway(config);
  await gateway.start();
  const port = (service: string): number => gateway.endpoints().find((e) => e.service === service)!.port;
  const admin = gateway.adminAddress()!;

  // Hold `full`'s only slot, so every further connection to it is refused with reason limit.
  const holder = dial(port('full'));
  holder.write('hold');
  await new Promise((r) => holder.once('data', r));

  traffic = (async () => {
    // Bounded: at most 1500 rounds and 150 s, whichever ends first (or teardown).
    const deadline = Date.now() + 150_000;
    for (let i = 0; i < 1500 && !stopping && Date.now() < deadline; i++) {
      const [echoed, policy, limit] = await Promise.all([roundTrip(port('mail'), 4096), refused(port('mail'), '127.0.0.2'), refused(port('full'))]);
      if (echoed === 4096) relayed++;
      else trafficErrors.push(`round ${i}: ${echoed} of 4096 bytes echoed`);
      if (!policy) trafficErrors.push(`round ${i}: 127.0.0.2 was not rejected`);
      if (!limit) trafficErrors.push(`round ${i}: full's second connection was not refused`);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();

  prometheus = await PrometheusServer.start(dir, [
    'global: { scrape_interval: 1s, evaluation_interval: 1s }',
    `rule_files: [${JSON.stringify(join(ROOT, ALERTS))}]`,
    'scrape_configs:',
    `  - job_name: ${JOB}`,
    `    static_configs: [{ targets: ["${admin.host}:${admin.port}"] }]`,
    '',
  ].join('\n'));
  promUrl = prometheus.url;
  // Enough scrapes for every rate() window, with failures and both kinds of reject in them.
  await prometheus!.until('10 scrapes with traffic', 60_000, async () => {
    const checks = [
      `count_over_time(up{job="${JOB}"}[1m]) >= 10`,
      'increase(mapgate_upstream_connect_failures_total{service="mail"}[10s]) > 0',
      'increase(mapgate_rejected_total{service="mail",reason="rejected"}[10s]) > 0',
      'increase(mapgate_rejected_total{service="full",reason="limit"}[10s]) > 0',
      'increase(mapgate_connection_duration_seconds_count{service="mail"}[10s]) > 0',
    ];
    for (const c of checks) if ((await query(c)).data.result.length === 0) return false;
    return true;
  });
}, 150_000);

afterAll(async () => {
  stopping = true;
  await traffic;
  await prometheus?.stop();
  for (const s of sockets) s.destroy();
  await gateway?.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe('alert rules and dashboard, against a real Prometheus scraping mapgate', () => {
  test('promtool check rules accepts deploy/prometheus/alerts.yaml', async () => {
    const r = await run(which('promtool') ?? 'promtool', ['check', 'rules', join(ROOT, ALERTS)]);
    expect(r.stdout + r.stderr).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(r.code).toBe(0);
  });

  test("every alert has for:, severity, summary and runbook text, and covers the issues' cases (issue 4's six, issue 9's certificate expiry)", () => {
    expect(rules.map((r) => r.alert).sort()).toEqual([
      'MapgateCertificateExpiresSoon', 'MapgateConfigReloadFailing', 'MapgateConnectionLimitSaturation', 'MapgateDown',
      'MapgateFileDescriptorsNearLimit', 'MapgateRejectedConnectionsSpike', 'MapgateUpstreamConnectFailures',
    ]);
    for (const r of rules) {
      expect({ alert: r.alert, for: r.for }).toEqual({ alert: r.alert, for: expect.stringMatching(/^\d+[smh]$/) });
      expect(['critical', 'warning']).toContain(r.labels.severity);
      expect(r.annotations.summary.length).toBeGreaterThan(10);
      expect(r.annotations.runbook.length).toBeGreaterThan(100);
    }
  });

  test('the traffic really flowed: relays, failures and rejects', () => {
    expect(trafficErrors).toEqual([]);
    expect(relayed).toBeGreaterThan(10);
  });

  // How alert rules are evaluated: each `expr` twice through /api/v1/query. As written, it must
  // be valid (status success; it may be empty when the alert would not fire). Then with every
  // comparison turned into its `bool` form (`> 0.1` → `> bool 0.1`, see withBool), which keeps
  // every series with value 0 or 1 instead of dropping those below the threshold: that must
  // return data, i.e. every metric the rule reads exists with the labels it joins on.
  test.each(rules.map((r) => [r.alert, r.expr] as const))('alert %s: expr is valid and, in bool form, returns data', async (_name, expr) => {
    const asWritten = await query(expr);
    expect({ status: asWritten.status, error: asWritten.error }).toEqual({ status: 'success', error: undefined });
    const asBool = await query(withBool(expr));
    expect(asBool.status).toBe('success');
    expect(asBool.data.result.length).toBeGreaterThan(0);
    for (const s of asBool.data.result) expect(['0', '1']).toContain(s.value[1]);
  });

  test('the alerts this traffic should trigger do fire (as written) for the right services', async () => {
    const byName = new Map(rules.map((r) => [r.alert, r.expr]));
    const failures = await query(byName.get('MapgateUpstreamConnectFailures')!);
    expect(failures.data.result.map((s) => s.metric.service)).toEqual(['mail']);
    // One refused attempt per relayed connection: half of all attempts fail.
    expect(Number(failures.data.result[0].value[1])).toBeCloseTo(0.5, 1);
    const saturation = await query(byName.get('MapgateConnectionLimitSaturation')!);
    expect(saturation.data.result.map((s) => s.metric.service)).toEqual(['full']);
    expect(Number(saturation.data.result[0].value[1])).toBe(1);
    // Loaded as rule files, Prometheus itself evaluates them: healthy, and these two pending
    // (their for: has not elapsed) with the labels and rendered annotations Alertmanager would get.
    const groups = await api<{ groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> }>('/api/v1/rules');
    const loaded = groups.groups.flatMap((g) => g.rules);
    expect(loaded.map((r) => r.name).sort()).toEqual(rules.map((r) => r.alert).sort());
    for (const r of loaded) expect({ name: r.name, health: r.health, lastError: r.lastError ?? '' }).toEqual({ name: r.name, health: 'ok', lastError: '' });
    let alerts: Array<{ labels: Record<string, string>; annotations: Record<string, string>; state: string }> = [];
    await prometheus!.until('pending alerts', 20_000, async () => {
      alerts = (await api<{ alerts: typeof alerts }>('/api/v1/alerts')).alerts;
      return alerts.some((a) => a.labels.alertname === 'MapgateUpstreamConnectFailures') && alerts.some((a) => a.labels.alertname === 'MapgateConnectionLimitSaturation');
    });
    const failing = alerts.find((a) => a.labels.alertname === 'MapgateUpstreamConnectFailures')!;
    expect(failing).toMatchObject({ state: 'pending', labels: { service: 'mail', severity: 'warning', job: JOB } });
    // Every connection to mail fails once and then connects: exactly 50%. Prometheus reads it a
    // little either side: the failures series (labelled by error code, so created at the first
    // failure, not zero-initialised) loses its first increase to rate(), and a scrape between a
    // failure and the connect that follows it counts one more failure. 49.67% was seen in CI.
    expect(failing.annotations.summary).toMatch(/^mail: (4[5-9]|5[0-5])(\.\d+)?% of upstream connects fail$/);
    const full = alerts.find((a) => a.labels.alertname === 'MapgateConnectionLimitSaturation')!;
    expect(full).toMatchObject({ state: 'pending', labels: { service: 'full', severity: 'warning' } });
    expect(full.annotations.summary).toMatch(/^full on 127\.0\.0\.1:\d+ is at 100% of maxConnections$/);
    // The gateway is up: MapgateDown must not be among them.
    expect(alerts.map((a) => a.labels.alertname)).not.toContain('MapgateDown');
  });

  test('the dashboard has the service variable, and its variable queries return values', async () => {
    const vars = dashboard.templating.list;
    const service = vars.find((v) => v.name === 'service')!;
    expect(service.definition).toMatch(/^label_values\(mapgate_connections_active\b.*, service\)$/);
    for (const v of vars.filter((x) => x.type === 'query')) {
      const m = /^label_values\((.+), (\w+)\)$/.exec(v.definition!);
      expect(m).not.toBeNull();
      const values = await api<string[]>(`/api/v1/label/${m![2]}/values?match[]=${encodeURIComponent(substitute(m![1], { job: '.*' }))}`);
      expect(values).toEqual(expect.arrayContaining(v.name === 'service' ? ['full', 'mail'] : [JOB]));
    }
  });

  const targets = panels.flatMap((p) => (p.targets ?? []).map((t, i) => [`${p.title} #${i + 1}`, t.expr] as const));
  test('the dashboard has every panel the issue asks for', () => {
    const titles = panels.map((p) => p.title.toLowerCase());
    for (const want of ['active connections', 'connections/s by outcome', 'bytes/s each way', 'upstream connect latency p50 / p95 / p99', 'rejected connections by reason',
      'upstream connect failures by code', 'connection duration', 'config reload status', 'last successful config load', 'cpu', 'memory', 'open file descriptors', 'event-loop lag',
      'tls certificate expiry']) {
      expect(titles).toContain(want);
    }
    expect(targets.length).toBeGreaterThanOrEqual(20);
  });

  // Dashboard queries: $service = mail, $job = mapgate, $__rate_interval = $__interval = 15s,
  // $__range = 1m, evaluated as instant queries; each must return a series with a number in it.
  test.each(targets)('panel %s returns data', async (_name, expr) => {
    const r = await query(substitute(expr, VARS));
    expect({ status: r.status, error: r.error }).toEqual({ status: 'success', error: undefined });
    expect(r.data.result.length).toBeGreaterThan(0);
    expect(r.data.result.some((s) => Number.isFinite(Number(s.value[1])))).toBe(true);
  });

  test('every metric name used in deploy/ is one mapgate exports', async () => {
    const a = gateway.adminAddress()!;
    const exposition = await (await fetch(`http://${a.host}:${a.port}/metrics`)).text();
    const exported = new Set<string>();
    for (const line of exposition.split('\n')) {
      const m = /^(?:# (?:TYPE|HELP) )?([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
      if (m) exported.add(m[1]);
    }
    const used = new Map<string, string>();
    const walk = (d: string): void => {
      for (const f of readdirSync(d)) {
        const p = join(d, f);
        if (statSync(p).isDirectory()) walk(p);
        else for (const m of readFileSync(p, 'utf8').matchAll(/\b((?:mapgate|process|nodejs)_[a-z0-9_]*[a-z0-9])\b/g)) used.set(m[1], p.slice(ROOT.length + 1));
      }
    };
    walk(join(ROOT, 'deploy'));
    expect([...used.keys()].filter((n) => n.startsWith('mapgate_')).length).toBeGreaterThanOrEqual(15);
    const unknown = [...used].filter(([n]) => !exported.has(n)).map(([n, f]) => `${n} (${f})`);
    expect(unknown).toEqual([]);
  });
});
