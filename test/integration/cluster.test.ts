import * as net from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openEvents, statusOf } from '../admin/sse';
import { children, isListening, sample, stopProcess, timedGet, withEachAlone, within } from '../helpers/cluster';
import { connect, listen, roundTrip, startTaggedServer, unusedPort, waitFor } from '../helpers/net';
import { runCli, started, startedPort, writeConfig, type Running } from '../helpers/process';

async function metric(admin: { host: string; port: number }, name: string): Promise<number> {
  const text = await (await fetch(`http://${admin.host}:${admin.port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{') && l.slice(0, l.lastIndexOf(' ')) === name);
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
}

describe('workers: 2 (node:cluster)', () => {
  test('shared listeners, whole event lines, aggregated metrics and status, reload, replacement, graceful stop', async () => {
    const [a, b] = await Promise.all([startTaggedServer('a'), startTaggedServer('b')]);
    const yaml = (dest: number): string => `
admin: { listen: "127.0.0.1:0" }
log: { events: stdout }
workers: 2
shutdownGrace: 2s
services:
  - name: echo
    port: 0
    bind: [127.0.0.1]
    maxConnections: 100
    destination: 127.0.0.1:${dest}
`;
    const file = writeConfig(yaml(a));
    const r = runCli(['run', '-c', file]);
    const info = await started(r, 20_000);
    const port = startedPort(info, 'echo');
    const admin = info.admin!;
    expect(children(r.child.pid!)).toHaveLength(2);

    const N = 40;
    const answers = await Promise.all(Array.from({ length: N }, (_, i) => roundTrip(port, `m${i}`)));
    answers.forEach((ans, i) => expect(ans.toString()).toBe(`a:m${i}`));
    await waitFor(() => r.stdout.length >= 2 * N, 10_000, 'event lines');
    // Every line is whole JSON (workers never interleave mid-line); ids are unique across workers.
    const events = r.stdout.map((l) => JSON.parse(l));
    expect(new Set(events.map((e) => e.id)).size).toBe(N);

    expect(await metric(admin, 'mapgate_workers')).toBe(2);
    expect(await metric(admin, 'mapgate_connections_total{service="echo",outcome="client-closed"}')).toBe(N);
    expect(await metric(admin, 'mapgate_connections_max{service="echo"}')).toBe(200);
    expect(await metric(admin, 'mapgate_listeners{service="echo"}')).toBe(1);
    const status = await (await fetch(`http://${admin.host}:${admin.port}/status`)).json();
    expect(status).toMatchObject({ workers: 2, services: [{ name: 'echo', active: 0, maxConnections: 200 }], connections: [] });

    // Reload (SIGHUP): validated once by the primary, applied by every worker.
    writeFileSync(file, yaml(b));
    r.child.kill('SIGHUP');
    await waitFor(() => r.stderr.filter((l) => l.includes('"config reloaded"')).length >= 2, 10_000, 'reload in both workers');
    for (let i = 0; i < 6; i++) expect((await roundTrip(port, 'x')).toString()).toBe('b:x');
    writeFileSync(file, 'services: [');
    r.child.kill('SIGHUP');
    await waitFor(() => r.stderr.some((l) => l.includes('config reload refused')), 10_000, 'refused reload');
    expect(await metric(admin, 'mapgate_config_last_reload_successful')).toBe(0);
    expect(await metric(admin, 'mapgate_config_reload_total{result="success"}')).toBeGreaterThanOrEqual(1);

    // A dead worker is replaced; service continues meanwhile.
    const [victim] = children(r.child.pid!);
    process.kill(victim, 'SIGKILL');
    await waitFor(() => { const c = children(r.child.pid!); return c.length === 2 && !c.includes(victim); }, 10_000, 'replacement worker');
    expect(await metric(admin, 'mapgate_worker_restarts_total')).toBe(1);
    await waitFor(() => r.stderr.filter((l) => l.includes('worker died')).length === 1);
    for (let i = 0; i < 6; i++) expect((await roundTrip(port, 'y')).toString()).toBe('b:y');

    r.child.kill('SIGTERM');
    expect(await r.exit).toBe(0);
  }, 60_000);
});

/** A `workers: 2` config: service `echo` (port 0) to `dest`, and optionally `extra` on a fixed port. */
function clusterYaml(o: { dest: number; grace?: string; extra?: { port: number; dest: number } }): string {
  return `
admin: { listen: "127.0.0.1:0" }
log: { events: stdout }
workers: 2
shutdownGrace: ${o.grace ?? '2s'}
services:
  - name: echo
    port: 0
    bind: [127.0.0.1]
    maxConnections: 100
    destination: 127.0.0.1:${o.dest}
${o.extra ? `  - name: extra
    port: ${o.extra.port}
    bind: [127.0.0.1]
    destination: 127.0.0.1:${o.extra.dest}
` : ''}`;
}

interface Cluster { r: Running; file: string; port: number; admin: { host: string; port: number }; workers: number[] }

async function startCluster(yaml: string): Promise<Cluster> {
  const file = writeConfig(yaml);
  const r = runCli(['run', '-c', file]);
  const info = await started(r, 20_000);
  const workers = children(r.child.pid!);
  expect(workers).toHaveLength(2);
  return { r, file, port: startedPort(info, 'echo'), admin: info.admin!, workers };
}

/** The primary's log records (they carry no `worker` field), parsed. */
function primaryLogs(r: Running): Array<Record<string, unknown>> {
  return r.stderr.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => !('worker' in l));
}

/** The workers (ids) that logged a record with this `msg`. */
function workersLogging(r: Running, msg: string): Set<number> {
  return new Set(r.stderr.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).filter((l) => l.msg === msg && 'worker' in l).map((l) => l.worker as number));
}

function refusals(r: Running): Array<Record<string, unknown>> {
  return primaryLogs(r).filter((l) => String(l.msg).startsWith('config reload refused'));
}

/** Waits until the primary counts `n` refused reloads. */
async function refusedReloads(c: Cluster, n: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (sample((await timedGet(c.admin, '/metrics')).body, 'mapgate_config_reload_total{result="failure"}') !== n) {
    if (Date.now() > deadline) throw new Error(`no ${n} refused reloads within 15 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Each worker, alone, relays `echo` to the upstream tagged `tag`. */
async function expectEachWorkerServes(c: Cluster, tag: string): Promise<void> {
  await withEachAlone(c.workers, async (pid) => {
    const answer = await within(5000, roundTrip(c.port, `w${pid}`), `a connection served by worker ${pid}`);
    expect(`${pid} ${answer.toString()}`).toBe(`${pid} ${tag}:w${pid}`);
  });
}

/**
 * A cluster relaying to upstream `a`, then a file that is valid but whose new listener cannot
 * bind (its port is taken): refused, so the primary keeps running the first config.
 */
async function startWithRefusedReload(): Promise<{ c: Cluster; a: number; b: number; takenPort: number }> {
  const [a, b] = await Promise.all([startTaggedServer('a'), startTaggedServer('b')]);
  const takenPort = await listen(net.createServer());
  const c = await startCluster(clusterYaml({ dest: a }));
  writeFileSync(c.file, clusterYaml({ dest: b, extra: { port: takenPort, dest: b } }));
  await refusedReloads(c, 1);
  return { c, a, b, takenPort };
}

/** Kills one worker: its replacement and the survivor, each alone, relay to the upstream tagged `tag`. */
async function expectReplacementServes(c: Cluster, tag: string): Promise<void> {
  const [victim, survivor] = c.workers;
  process.kill(victim, 'SIGKILL');
  await waitFor(() => { const now = children(c.r.child.pid!); return now.length === 2 && !now.includes(victim); }, 10_000, 'a replacement worker');
  const replacement = children(c.r.child.pid!).find((p) => p !== survivor)!;
  await expectEachWorkerServes({ ...c, workers: [replacement, survivor] }, tag);
  expect(c.r.stderr.some((l) => l.includes('replacement worker failed to start'))).toBe(false);
}

describe('workers: 2, issue 8: status stream, hung workers, config hand-over, all-or-none reloads, second signal', () => {
  test('/events carries the status merged over the workers (not {}), with a relayed connection', async () => {
    const a = await startTaggedServer('a');
    const c = await startCluster(clusterYaml({ dest: a }));
    const stream = await openEvents(c.admin.host, c.admin.port);
    const first = statusOf(await stream.next((e) => e.event === 'status', 4000));
    expect(first).toMatchObject({ state: 'running', workers: 2, missingWorkers: [], connections: [] });
    expect(first.services).toEqual([expect.objectContaining({ name: 'echo', active: 0, maxConnections: 200 })]);
    const s = await connect(c.port);
    s.write('hi');
    await new Promise((r) => s.once('data', r));
    const seen = await stream.next((e) => e.event === 'status' && statusOf(e).connections.some((x) => x.client === `127.0.0.1:${s.localPort}` && x.bytesToClient === 4), 4000);
    expect(statusOf(seen).services[0].active).toBe(1);
  }, 60_000);

  test('a stopped (hung) worker delays neither /metrics nor /status past the deadline: mapgate_workers_up and missingWorkers say so, with one warning', async () => {
    const a = await startTaggedServer('a');
    const c = await startCluster(clusterYaml({ dest: a }));
    const [victim, other] = c.workers;
    const resume = stopProcess(victim);

    const m = await timedGet(c.admin, '/metrics');
    expect(m.status).toBe(200);
    expect(m.ms).toBeLessThan(4000);
    expect(sample(m.body, 'mapgate_workers_up')).toBe(1);
    expect(sample(m.body, 'mapgate_workers')).toBe(2);
    // The answering worker's series are in the scrape.
    expect(sample(m.body, 'mapgate_listeners{service="echo"}')).toBe(1);
    expect(sample(m.body, 'mapgate_connections_max{service="echo"}')).toBe(100);

    const st = await timedGet(c.admin, '/status');
    expect(st.status).toBe(200);
    expect(st.ms).toBeLessThan(4000);
    const status = JSON.parse(st.body);
    expect(status.workers).toBe(2);
    expect(status.missingWorkers).toEqual([{ worker: expect.any(Number), pid: victim }]);
    expect(status.services).toEqual([expect.objectContaining({ name: 'echo', maxConnections: 100 })]);

    // Warned once for the worker (two requests missed it), naming it by pid; none for the other.
    const warned = (): Array<Record<string, unknown>> => primaryLogs(c.r).filter((l) => l.level === 'warn' && Array.isArray(l.workers));
    await waitFor(() => warned().length > 0, 2000, 'the warning');
    const warnings = warned();
    expect(warnings).toHaveLength(1);
    expect(warnings[0].workers).toEqual([{ worker: expect.any(Number), pid: victim }]);
    // By pid, not as a substring of the log line: a pid can also be the milliseconds of its time.
    expect(warnings.flatMap((w) => (w.workers as Array<{ pid: number }>).map((x) => x.pid))).not.toContain(other);

    resume();
    const back = await timedGet(c.admin, '/metrics');
    expect(sample(back.body, 'mapgate_workers_up')).toBe(2);
    expect(sample(back.body, 'mapgate_connections_max{service="echo"}')).toBe(200);
    await waitFor(() => primaryLogs(c.r).some((l) => l.msg === 'workers answer again'), 2000, 'the worker noted as answering again');
    expect(warned()).toHaveLength(1);
  }, 60_000);

  test('a worker that exits while a scrape waits for it does not stall the scrape', async () => {
    const a = await startTaggedServer('a');
    const c = await startCluster(clusterYaml({ dest: a }));
    const [victim] = c.workers;
    stopProcess(victim);
    const scrape = timedGet(c.admin, '/metrics');
    await new Promise((r) => setTimeout(r, 300));
    process.kill(victim, 'SIGKILL');
    const m = await scrape;
    // Answered when the worker was gone (about 300 ms), not at the 2 s deadline.
    expect(m.ms).toBeLessThan(1500);
    expect(sample(m.body, 'mapgate_workers_up')).toBe(1);
  }, 60_000);

  test('workers never read the file: a reload prepared while one worker is stopped commits the primary\'s config in both, though the file is garbage by the time the second one prepares', async () => {
    const [a, b] = await Promise.all([startTaggedServer('a'), startTaggedServer('b')]);
    const extra = await unusedPort();
    const c = await startCluster(clusterYaml({ dest: a }));
    const [w1, w2] = c.workers;
    const resume = stopProcess(w2);
    writeFileSync(c.file, clusterYaml({ dest: b, extra: { port: extra, dest: b } }));
    // The extra listener is bound once the primary has read the file and the running worker prepares.
    await waitFor(() => isListening(extra), 10_000, 'the prepared listener of the new config');
    writeFileSync(c.file, 'services: [');
    resume();
    await waitFor(() => workersLogging(c.r, 'config reloaded').size === 2, 10_000, 'the reload committed in both workers');
    await waitFor(() => refusals(c.r).length === 1, 10_000, 'the garbage refused by the primary');
    await expectEachWorkerServes(c, 'b');
    await withEachAlone([w1, w2], async (pid) => {
      expect(`${pid} ${(await within(5000, roundTrip(extra, 'x'), `extra via ${pid}`)).toString()}`).toBe(`${pid} b:x`);
    });
  }, 60_000);

  test('a replacement worker runs the primary\'s config, not the (refused) file it would have read', async () => {
    const { c } = await startWithRefusedReload();
    await expectReplacementServes(c, 'a');
  }, 60_000);

  test('a replacement worker starts while the file on disk is garbage: it never reads it', async () => {
    const a = await startTaggedServer('a');
    const c = await startCluster(clusterYaml({ dest: a }));
    writeFileSync(c.file, 'services: [\n');
    await refusedReloads(c, 1);
    await expectReplacementServes(c, 'a');
  }, 60_000);

  test('a reload whose new listener cannot bind is refused in every worker: no worker changed, no series of the refused service remain', async () => {
    const { c, takenPort } = await startWithRefusedReload();
    // Refused with the worker's message, which names the port it could not bind.
    const res = await fetch(`http://${c.admin.host}:${c.admin.port}/reload`, { method: 'POST' });
    expect(res.status).toBe(422);
    expect(await res.text()).toContain(`127.0.0.1:${takenPort}`);

    const m = await timedGet(c.admin, '/metrics');
    expect(sample(m.body, 'mapgate_workers_up')).toBe(2);
    expect(sample(m.body, 'mapgate_config_last_reload_successful')).toBe(0);
    expect(sample(m.body, 'mapgate_listeners{service="echo"}')).toBe(1);
    expect(m.body).not.toContain('service="extra"');
    const status = JSON.parse((await timedGet(c.admin, '/status')).body);
    expect(status.services.map((s: { name: string }) => s.name)).toEqual(['echo']);
    await expectEachWorkerServes(c, 'a');
    // The primary logs each refusal with the worker that refused.
    await waitFor(() => refusals(c.r).length === 2, 5000, 'both refusals logged by the primary');
    expect(refusals(c.r)[1]).toMatchObject({ refusedBy: { worker: expect.any(Number), pid: expect.any(Number) } });
  }, 60_000);

  test('a reload one worker does not answer (stopped) is aborted in all: none changed, even after it wakes; then a reload applies in both', async () => {
    const [a, b] = await Promise.all([startTaggedServer('a'), startTaggedServer('b')]);
    const c = await startCluster(clusterYaml({ dest: a }));
    const [, w2] = c.workers;
    const resume = stopProcess(w2);
    writeFileSync(c.file, clusterYaml({ dest: b }));
    await waitFor(() => refusals(c.r).length === 1, 15_000, 'the reload refused for want of an answer');
    expect(refusals(c.r)[0]).toMatchObject({ workers: [{ worker: expect.any(Number), pid: w2 }] });
    // w1 prepared it, then aborted: it still relays to a.
    expect((await within(5000, roundTrip(c.port, 'x'), 'served by w1 alone')).toString()).toBe('a:x');
    resume();
    // Woken, w2 handles the prepare and the abort queued behind it.
    await waitFor(() => workersLogging(c.r, 'config reload refused; the running config stays in force').size === 2, 10_000, 'the late worker aborting too');
    await expectEachWorkerServes(c, 'a');
    expect(workersLogging(c.r, 'config reloaded').size).toBe(0);

    c.r.child.kill('SIGHUP');
    await waitFor(() => workersLogging(c.r, 'config reloaded').size === 2, 10_000, 'the reload committed in both workers');
    await expectEachWorkerServes(c, 'b');
    expect(sample((await timedGet(c.admin, '/metrics')).body, 'mapgate_config_last_reload_successful')).toBe(1);
  }, 60_000);

  test('a second SIGTERM while draining ends every connection now, with reason shutdown', async () => {
    const a = await startTaggedServer('a');
    const c = await startCluster(clusterYaml({ dest: a, grace: '60s' }));
    const s = await connect(c.port);
    s.on('error', () => {});
    s.write('hold');
    await new Promise((r) => s.once('data', r));
    c.r.child.kill('SIGTERM');
    await waitFor(() => c.r.stderr.filter((l) => l.includes('"msg":"draining"')).length === 2, 10_000, 'both workers draining');
    const t0 = Date.now();
    c.r.child.kill('SIGTERM');
    expect(await within(10_000, c.r.exit, 'exit after the second SIGTERM')).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    // The exit may be seen before the last lines of its stdout.
    await waitFor(() => c.r.stdout.some((l) => l.includes('"ClientDisconnect"')), 2000, 'the ClientDisconnect event');
    const events = c.r.stdout.map((l) => JSON.parse(l));
    expect(events.filter((e) => e.event === 'ClientDisconnect')).toEqual([expect.objectContaining({ service: 'echo', reason: 'shutdown' })]);
  }, 60_000);

  test('a worker hung during shutdown (stopped) is killed once its drain is over: the stop always ends', async () => {
    const a = await startTaggedServer('a');
    const c = await startCluster(clusterYaml({ dest: a, grace: '1s' }));
    const [hung] = c.workers;
    stopProcess(hung);
    const t0 = Date.now();
    c.r.child.kill('SIGTERM');
    // Grace 1 s, then 5 s for the workers to exit, then the hung one is killed.
    expect(await within(15_000, c.r.exit, 'the primary to exit')).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(5500);
    const killed = c.r.stderr.map((l) => (l.startsWith('{') ? JSON.parse(l) : {})).find((r) => r.msg === 'workers did not stop in time; killing them');
    expect(killed).toMatchObject({ level: 'error', workers: [expect.objectContaining({ pid: hung })] });
  }, 60_000);

  test('the stop ends when the primary sees a worker exit before its IPC channel closes', async () => {
    // node:cluster keeps an exited worker in cluster.workers until its channel closes too; the
    // order of the two is chance (it hung a CI run). Here a `sleep` holds each worker's channel
    // open for 12 s after the worker exits, so every exit comes first.
    const a = await startTaggedServer('a');
    const file = writeConfig(clusterYaml({ dest: a, grace: '1s' }));
    const r = runCli(['run', '-c', file], { NODE_OPTIONS: `--require ${join(__dirname, '..', 'fixtures', 'hold-ipc.js')}`, HOLD_IPC_SECONDS: '12' });
    await started(r, 20_000);
    expect(children(r.child.pid!)).toHaveLength(2);
    const t0 = Date.now();
    r.child.kill('SIGTERM');
    expect(await within(15_000, r.exit, 'the primary to exit')).toBe(0);
    // No connection to drain: the workers exit at once, and the primary with them, not once the held channels close.
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(primaryLogs(r).map((l) => l.msg)).toContain('stopped');
  }, 60_000);
});
