import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  connect, onTeardown, startEchoServer, unusedPort,
} from '../helpers/net';
import { CLI, NODE_FLAGS } from '../helpers/process';
import type { StatusJson } from './sse';

beforeAll(() => {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
});

function writeConfig(text: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mapgate-status-'));
  onTeardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'mappings.yaml');
  fs.writeFileSync(file, text);
  return file;
}

/** Runs the CLI to completion (killed after `ms`); resolves its exit code and output. */
function runCli(args: string[], ms = 10_000, options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: options.cwd, env: options.env ?? process.env });
    onTeardown(() => { child.kill('SIGKILL'); });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

/** Starts `mapgate run`; resolves once it logged that it started. Killed at teardown. */
async function startGatewayProcess(file: string): Promise<{ child: ChildProcess; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [...NODE_FLAGS, CLI, 'run', '-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  onTeardown(() => { child.kill('SIGKILL'); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start within 10 s: ${stderr}`)), 10_000);
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (stderr.includes('"msg":"mapgate started"')) { clearTimeout(timer); resolve(); }
    });
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`gateway exited with ${code}: ${stderr}`)); });
  });
  return { child, exited };
}

/** A table as `mapgate status` prints it: rows of whitespace-separated cells (no cell holds a space). */
function parseTables(stdout: string): string[][][] {
  return stdout.trimEnd().split('\n\n').map((t) => t.split('\n').map((line) => line.trim().split(/\s+/)));
}

describe('mapgate status', () => {
  test('--tag shows only the services with that tag, and their connections; tags are listed', async () => {
    const echo = await startEchoServer();
    const adminPort = await unusedPort();
    const file = writeConfig(`
admin: { listen: "127.0.0.1:${adminPort}" }
log: { events: "off" }
shutdownGrace: 1s
services:
  - { name: mail, port: 0, bind: [127.0.0.1], tags: [branch-a, mail], comment: "IMAP for branch A", destination: "127.0.0.1:${echo.port}" }
  - { name: db, port: 0, bind: [127.0.0.1], tags: [branch-b], destination: "127.0.0.1:${echo.port}" }
`);
    const gw = await startGatewayProcess(file);
    const status = (await (await fetch(`http://127.0.0.1:${adminPort}/status`)).json()) as StatusJson;
    const port = (name: string): number => Number(status.services.find((s) => s.name === name)!.listeners[0].address.split(':').pop());
    const toDb = await connect(port('db'));
    toDb.write('x');
    await new Promise((r) => toDb.once('data', r));

    const all = await runCli(['status', '-c', file]);
    expect(parseTables(all.stdout)[0].map((r) => [r[0], r[3]])).toEqual([['SERVICE', 'TAGS'], ['mail', 'branch-a,mail'], ['db', 'branch-b']]);
    const a = await runCli(['status', '-c', file, '--tag', 'branch-a']);
    expect(a.code).toBe(0);
    const [services, connections] = parseTables(a.stdout);
    expect(services.map((r) => r[0])).toEqual(['SERVICE', 'mail']);
    expect(connections).toHaveLength(1);
    const b = await runCli(['status', '-c', file, '--tag=branch-b']);
    expect(parseTables(b.stdout)[1].map((r) => r[1])).toEqual(['SERVICE', 'db']);
    expect((await runCli(['check', '-c', file, '--tag', 'x'])).code).toBe(2);
    toDb.destroy();
    gw.child.kill('SIGTERM');
    await gw.exited;
  });

  test('prints the running gateway\'s services and open connections as tables', async () => {
    const echo = await startEchoServer();
    const adminPort = await unusedPort();
    const file = writeConfig(`
admin: { listen: "127.0.0.1:${adminPort}" }
log: { events: "off" }
shutdownGrace: 1s
services:
  - name: echo
    port: 0
    bind: [127.0.0.1]
    maxConnections: 5
    destination: 127.0.0.1:${echo.port}
`);
    const gw = await startGatewayProcess(file);
    const status = (await (await fetch(`http://127.0.0.1:${adminPort}/status`)).json()) as StatusJson;
    const listener = status.services[0].listeners[0].address;
    const servicePort = Number(listener.split(':').pop());

    const c = await connect(servicePort);
    c.write('1234567');
    await new Promise((r) => c.once('data', r));
    const open = await runCli(['status', '-c', file]);
    expect(open.stderr).toBe('');
    expect(open.code).toBe(0);
    const [services, connections] = parseTables(open.stdout);
    expect(services).toEqual([['SERVICE', 'ACTIVE', 'MAX', 'TAGS', 'LISTENERS'], ['echo', '1', '5', '-', listener]]);
    expect(connections[0]).toEqual(['ID', 'SERVICE', 'CLIENT', 'USER', 'DESTINATION', 'SECONDS', 'FROM_CLIENT', 'TO_CLIENT']);
    expect(connections).toHaveLength(2);
    const [id, service, client, user, destination, seconds, fromClient, toClient] = connections[1];
    expect(id).toMatch(/^\S+-\S+$/);
    expect([service, client, user, destination]).toEqual(['echo', `127.0.0.1:${c.localPort}`, '-', `127.0.0.1:${echo.port}`]);
    expect(Number(seconds)).toBeGreaterThanOrEqual(0);
    expect(Number(seconds)).toBeLessThan(10);
    expect([fromClient, toClient]).toEqual(['7', '7']);

    c.destroy();
    const deadline = Date.now() + 5000;
    let after = await runCli(['status', '-c', file]);
    while (parseTables(after.stdout)[1]?.length !== 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      after = await runCli(['status', '-c', file]);
    }
    expect(after.code).toBe(0);
    expect(parseTables(after.stdout)).toEqual([
      [['SERVICE', 'ACTIVE', 'MAX', 'TAGS', 'LISTENERS'], ['echo', '0', '5', '-', listener]],
      [['ID', 'SERVICE', 'CLIENT', 'USER', 'DESTINATION', 'SECONDS', 'FROM_CLIENT', 'TO_CLIENT']],
    ]);

    gw.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([gw.exited, new Promise((r) => (timer = setTimeout(() => r('still running after 5 s'), 5000)))]);
    clearTimeout(timer);
    expect(code).toBe(0);

    // Nobody answers on the admin port any more: exit 1 with the reason, no table.
    const gone = await runCli(['status', '-c', file]);
    expect(gone.code).toBe(1);
    expect(gone.stdout).toBe('');
    expect(gone.stderr).toMatch(/^mapgate: .*ECONNREFUSED/);
  }, 40_000);

  test('with admin.listen off there is nothing to ask: exit 1 and say so', async () => {
    const file = writeConfig(`
admin: { listen: "off" }
services:
  - name: s
    port: 0
    destination: 127.0.0.1:9
`);
    const r = await runCli(['status', '-c', file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('admin.listen is off');
  });

  test('with no file to read (a gateway of -L tunnels alone has none), it asks the default admin address', async () => {
    const dir = path.dirname(writeConfig(''));
    fs.rmSync(path.join(dir, 'mappings.yaml'));
    const env = { ...process.env };
    delete env.MAPGATE_CONFIG;
    // Nothing listens there in this test: the error names the address it tried, not a missing file.
    const r = await runCli(['status'], 10_000, { cwd: dir, env });
    expect(r.stderr).not.toContain('mappings.yaml');
    if (r.code === 0) {
      // Something on this machine does answer there: a status table, then.
      expect(r.stdout).toContain('SERVICE');
    } else {
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('127.0.0.1:9464');
    }
    // With -c naming a missing file, the file is still what is missing.
    const named = await runCli(['status', '-c', path.join(dir, 'mappings.yaml')], 10_000, { cwd: dir, env });
    expect(named.code).toBe(1);
    expect(named.stderr).toContain('mappings.yaml');
  });
});
