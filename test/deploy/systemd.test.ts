import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load';
import { parseDuration } from '../../src/config/parse-values';
import { NODE_FLAGS } from '../helpers/process';
import { ROOT, repoFile, run, which } from './tools';

const UNIT = 'deploy/systemd/mapgate.service';
const INSTALL_ROOT = '/opt/mapgate';

/** `[Section]` → key → every value (keys may repeat). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      current = new Map();
      sections.set(section[1], current);
      continue;
    }
    const eq = line.indexOf('=');
    if (!current || eq < 0) throw new Error(`unparseable unit line: ${line}`);
    const key = line.slice(0, eq);
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1)]);
  }
  return sections;
}

const unit = parseUnit(repoFile(UNIT));
const service = unit.get('Service')!;
const one = (key: string): string => {
  const v = service.get(key);
  if (!v || v.length !== 1) throw new Error(`${key}: expected exactly one value, got ${JSON.stringify(v)}`);
  return v[0];
};

describe('systemd unit', () => {
  test('is hardened as documented', () => {
    expect(unit.has('Unit')).toBe(true);
    expect(unit.get('Install')?.get('WantedBy')).toEqual(['multi-user.target']);
    expect(one('DynamicUser')).toBe('yes');
    expect(one('ProtectSystem')).toBe('strict');
    expect(one('NoNewPrivileges')).toBe('yes');
    expect(one('AmbientCapabilities')).toBe('CAP_NET_BIND_SERVICE');
    expect(one('CapabilityBoundingSet')).toBe('CAP_NET_BIND_SERVICE');
    expect(one('Restart')).toBe('on-failure');
    expect(Number(one('LimitNOFILE'))).toBeGreaterThanOrEqual(65536);
    expect(one('ExecReload')).toBe('/bin/kill -HUP $MAINPID');
    expect(one('ConfigurationDirectory')).toBe('mapgate');
  });

  test('starts the built CLI on /etc/mapgate/mappings.yaml, checking the config first', async () => {
    const start = one('ExecStart').split(/\s+/);
    const pre = one('ExecStartPre').split(/\s+/);
    expect(start).toEqual(['/usr/bin/node', ...NODE_FLAGS, `${INSTALL_ROOT}/dist/cli.js`, 'run', '-c', '/etc/mapgate/mappings.yaml']);
    expect(pre).toEqual(['/usr/bin/node', `${INSTALL_ROOT}/dist/cli.js`, 'check', '-c', '/etc/mapgate/mappings.yaml']);
    // The install root holds the built package: dist/cli.js is the CLI the build produces.
    expect(existsSync(join(ROOT, 'dist', 'cli.js'))).toBe(true);
    // ExecStartPre's command, as the unit runs it, on the bundled config: exit 0 and its summary line.
    const check = await run(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'check', '-c', join(ROOT, 'mappings.yaml')]);
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
    expect(check.stdout).toMatch(/mappings\.yaml: ok: /);
  });

  test('TimeoutStopSec leaves room for the bundled config\'s shutdownGrace', () => {
    const config = parseConfig(repoFile('mappings.yaml'), 'mappings.yaml');
    const stopMs = parseDuration(one('TimeoutStopSec'));
    expect(stopMs).not.toBeNull();
    expect(stopMs!).toBeGreaterThan(config.shutdownGraceMs + 5000);
  });

  test('passes systemd-analyze verify without a warning', async () => {
    const tool = which('systemd-analyze');
    if (!tool) {
      // setup.sh installs it where apt can; elsewhere the static checks above still run.
      console.warn('systemd-analyze not installed: `systemd-analyze verify` skipped');
      return;
    }
    let text = repoFile(UNIT);
    // verify checks that the ExecStart binaries exist; the unit documents Node at /usr/bin/node.
    if (!existsSync('/usr/bin/node')) {
      console.warn(`no /usr/bin/node on this machine: verifying with ${process.execPath} in its place`);
      text = text.split('/usr/bin/node').join(process.execPath);
    }
    const dir = mkdtempSync(join(tmpdir(), 'mapgate-unit-'));
    try {
      const file = join(dir, 'mapgate.service');
      writeFileSync(file, text);
      const r = await run(tool, ['verify', file], { env: { ...process.env, SYSTEMD_LOG_LEVEL: 'notice' } });
      // Unknown keys and bad values are only warnings (exit 0): any line naming the unit fails too.
      expect(r.stderr.split('\n').filter((l) => l.includes('mapgate.service'))).toEqual([]);
      expect(r.code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('ExecReload (SIGHUP) reloads the config and keeps the gateway serving', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mapgate-hup-'));
    const file = join(dir, 'mappings.yaml');
    writeFileSync(file, 'admin: { listen: "127.0.0.1:0" }\nlog: { events: "off" }\nservices:\n  - { name: a, port: 0, bind: [127.0.0.1], destination: "127.0.0.1:9" }\n');
    const child = spawn(process.execPath, [...NODE_FLAGS, join(ROOT, 'dist', 'cli.js'), 'run', '-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let exited: number | null | undefined;
    child.once('exit', (code) => (exited = code));
    try {
      // The start log line names the admin address actually bound.
      const admin = await new Promise<{ host: string; port: number }>((resolve, reject) => {
        let buf = '';
        const timer = setTimeout(() => reject(new Error(`no start line: ${buf}`)), 10_000);
        child.stderr!.setEncoding('utf8').on('data', (d: string) => {
          buf += d;
          for (const line of buf.split('\n')) {
            if (!line.includes('mapgate started')) continue;
            clearTimeout(timer);
            resolve((JSON.parse(line) as { admin: { host: string; port: number } }).admin);
          }
        });
      });
      const base = `http://${admin.host}:${admin.port}`;
      const reloads = async (): Promise<string> => (await (await fetch(`${base}/metrics`)).text()).split('\n').filter((l) => l.startsWith('mapgate_config_reload_total{')).join('\n');
      expect(await reloads()).toContain('mapgate_config_reload_total{result="success"} 0');
      child.kill('SIGHUP');
      const deadline = Date.now() + 5000;
      let after = '';
      while (exited === undefined && !after.includes('result="success"} 1') && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        after = await reloads().catch(() => '');
      }
      // Node's default action for SIGHUP is to exit: `systemctl reload` must not stop the gateway.
      expect({ exitedOnSighup: exited !== undefined }).toEqual({ exitedOnSighup: false });
      expect(after).toContain('mapgate_config_reload_total{result="success"} 1');
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
    } finally {
      if (exited === undefined) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await gone;
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
