/**
 * `mapgate check`, run as ops run it: the built CLI in a child process (`npm test` builds
 * dist/ in pretest; for a local run, `npm run build` first).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'cli.js');

interface Run { code: number | null; stdout: string; stderr: string }

function mapgate(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: dir, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

let dir: string;
beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build (npm test does it in pretest)`);
  dir = mkdtempSync(join(tmpdir(), 'mapgate-check-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

describe('mapgate check', () => {
  test('the bundled mappings.yaml: a one-line summary on stdout, nothing on stderr, exit 0', async () => {
    const file = join(ROOT, 'mappings.yaml');
    const r = await mapgate(['check', '-c', file]);
    expect(r).toEqual({ code: 0, stdout: `${file}: ok: 1 service, 1 port, 0 users, admin 127.0.0.1:9464\n`, stderr: '' });
  });

  test('a larger valid config: counts services, ports (with intercepts) and users', async () => {
    const file = write('ok.yaml', [
      'admin: { listen: "off" }',
      'users:',
      '  alice: { sources: [10.0.0.15] }',
      '  ops: { sources: [10.0.8.0/24] }',
      'services:',
      '  - { name: imap, port: 11143, bind: [127.0.0.1], intercept: [11144, 11145], destination: "mail:143" }',
      '  - { name: ssh, port: 12222, bind: [127.0.0.1], destination: "bastion:22" }',
      '',
    ].join('\n'));
    const r = await mapgate(['check', '--config', file]);
    expect(r).toEqual({ code: 0, stdout: `${file}: ok: 2 services, 4 ports, 2 users, admin off\n`, stderr: '' });
  });

  test('-c defaults to $MAPGATE_CONFIG', async () => {
    const file = write('env.yaml', 'services:\n  - { name: a, port: 0, bind: [127.0.0.1] }\n');
    const r = await mapgate(['check'], { MAPGATE_CONFIG: file });
    expect(r).toEqual({ code: 0, stdout: `${file}: ok: 1 service, 1 port, 0 users, admin 127.0.0.1:9464\n`, stderr: '' });
  });

  test('an invalid config: every problem on stderr as file:line:col, a count, nothing on stdout, exit 1', async () => {
    const file = write('bad.yaml', [
      'services:',
      '  - name: imap',
      '    port: 70000',
      '    destinaton: mail:143',
      '  - name: imap',
      '    port: 1143',
      '    connectTimeout: 5 s',
      '',
    ].join('\n'));
    const r = await mapgate(['check', '-c', file]);
    expect(r).toEqual({
      code: 1,
      stdout: '',
      stderr: [
        `${file}:3:11: services[0].port: must be <= 65535`,
        `${file}:4:5: services[0].destinaton: unknown key (did you mean "destination"?)`,
        `${file}:5:11: services[1].name: duplicate service name "imap" (first at services[0])`,
        `${file}:7:21: services[1].connectTimeout: must be a duration such as 250ms, 5s, 15m or 1h, not the string "5 s"`,
        `mapgate: 4 problems in ${file}`,
        '',
      ].join('\n'),
    });
  });

  test('a YAML syntax error is one located line, exit 1', async () => {
    const file = write('syntax.yaml', 'services:\n  - name: a\n    port: [1\n');
    const r = await mapgate(['check', '-c', file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`${file}:3:11: services[0].port: this "[" is never closed: a flow list needs its "]"\nmapgate: 1 problem in ${file}\n`);
  });

  test('a missing file, exit 1', async () => {
    const file = join(dir, 'absent.yaml');
    const r = await mapgate(['check', '-c', file]);
    expect(r).toEqual({ code: 1, stdout: '', stderr: `${file}:1:1: (file): cannot read the config file: no such file (ENOENT)\nmapgate: 1 problem in ${file}\n` });
  });

  test('invalid UTF-8, exit 1 with the byte located', async () => {
    const file = join(dir, 'latin1.yaml');
    writeFileSync(file, Buffer.concat([Buffer.from('services: [] # caf'), Buffer.from([0xe9, 0x0a])]));
    const r = await mapgate(['check', '-c', file]);
    expect(r).toEqual({ code: 1, stdout: '', stderr: `${file}:1:19: (file): not valid UTF-8 (byte 0xe9): save the file as UTF-8\nmapgate: 1 problem in ${file}\n` });
  });

  test('a deeply nested document is refused, not a crash', async () => {
    const file = write('deep.yaml', `services: []\nx: ${'['.repeat(5000)}${']'.repeat(5000)}\n`);
    const r = await mapgate(['check', '-c', file]);
    expect(r).toEqual({ code: 1, stdout: '', stderr: `${file}:2:1004: (yaml): nested more than 64 levels deep\nmapgate: 1 problem in ${file}\n` });
  });

  test.each([
    [['check', '--bogus'], 'mapgate: unknown argument: --bogus'],
    [['check', '-c'], 'mapgate: -c needs a file'],
    [['check', 'extra'], 'mapgate: unknown argument: extra'],
  ])('bad usage %j: exit 2 with the reason and the usage on stderr', async (args, reason) => {
    const r = await mapgate(args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n')[0]).toBe(reason);
    expect(r.stderr).toContain('mapgate check [-c FILE]');
  });
});
