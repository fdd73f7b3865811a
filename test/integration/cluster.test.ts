import { readFileSync, writeFileSync } from 'node:fs';
import { roundTrip, startTaggedServer, waitFor } from '../helpers/net';
import { runCli, started, startedPort, writeConfig } from '../helpers/process';

function children(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

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
