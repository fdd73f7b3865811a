import { existsSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import { parseConfig } from '../../src/config/load';
import { adminGet, startGateway } from '../helpers/net';
import { NODE_FLAGS } from '../helpers/process';
import { ROOT, repoFile, run } from './tools';

interface Instruction { op: string; args: string; stage: number }

/** The Dockerfile's instructions, continuation lines joined, comments dropped. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue;
    pending += raw.replace(/\\$/, ' ');
    if (raw.endsWith('\\')) continue;
    const line = pending.trim();
    pending = '';
    if (!line) continue;
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`unparseable Dockerfile line: ${line}`);
    const op = m[1].toUpperCase();
    if (op === 'FROM') stage++;
    out.push({ op, args: m[2].trim(), stage });
  }
  return out;
}

const steps = parseDockerfile(repoFile('deploy/docker/Dockerfile'));
const final = Math.max(...steps.map((s) => s.stage));
const inFinal = (op: string): Instruction[] => steps.filter((s) => s.stage === final && s.op === op);
const last = (op: string): string => {
  const all = inFinal(op);
  if (all.length === 0) throw new Error(`no ${op} in the runtime stage`);
  return all[all.length - 1].args;
};
const exec = (op: string): string[] => JSON.parse(last(op)) as string[];

/** COPY's flags, sources and destination. */
function copyArgs(args: string): { from: string | null; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  let from: string | null = null;
  while (words[0].startsWith('--')) {
    const flag = words.shift()!;
    if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
  }
  const dest = words.pop()!;
  return { from, sources: words, dest };
}

/** ENV's key=value pairs (several per instruction). */
const env: Record<string, string> = {};
for (const s of inFinal('ENV')) for (const m of s.args.matchAll(/(\w+)=(\S+)/g)) env[m[1]] = m[2];

describe('Dockerfile', () => {
  test('is a two-stage build: node:20 to build, a slim node:20 to run', () => {
    const froms = steps.filter((s) => s.op === 'FROM').map((s) => s.args);
    expect(froms).toHaveLength(2);
    expect(froms[0]).toMatch(/^node:20[-\w.]* AS build$/);
    expect(froms[1]).toMatch(/^node:20[-\w.]*-slim$/);
  });

  test('every COPY source from the build context exists in the repo and is not ignored', () => {
    const ignore = repoFile('deploy/docker/Dockerfile.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    expect(ignore[0]).toBe('**');
    const allowed = ignore.slice(1).map((l) => l.replace(/^!/, '').replace(/\/\*\*$/, ''));
    const contextCopies = steps.filter((s) => s.op === 'COPY' && copyArgs(s.args).from === null).flatMap((s) => copyArgs(s.args).sources);
    expect(contextCopies.length).toBeGreaterThan(0);
    for (const src of contextCopies) {
      expect({ src, exists: existsSync(join(ROOT, src)) }).toEqual({ src, exists: true });
      expect({ src, allowed: allowed.includes(src) }).toEqual({ src, allowed: true });
    }
  });

  test('the build stage runs npm commands the repo has, after copying what they need', () => {
    const build = steps.filter((s) => s.stage === 0);
    const scripts = (JSON.parse(repoFile('package.json')) as { scripts: Record<string, string> }).scripts;
    const copiedBefore = (i: number): string[] => build.slice(0, i).filter((s) => s.op === 'COPY').flatMap((s) => copyArgs(s.args).sources);
    build.forEach((s, i) => {
      if (s.op !== 'RUN') return;
      for (const m of s.args.matchAll(/npm run ([\w:-]+)/g)) expect({ script: m[1], defined: m[1] in scripts }).toEqual({ script: m[1], defined: true });
      if (/npm ci/.test(s.args)) expect(copiedBefore(i)).toEqual(expect.arrayContaining(['package.json', 'package-lock.json']));
      if (/npm run build/.test(s.args)) expect(copiedBefore(i)).toEqual(expect.arrayContaining(['src', 'schema', 'tsconfig.json', 'tsconfig.build.json']));
    });
    // `npm run build` compiles src/ into dist/: what the runtime stage copies from the build stage.
    const tsconfig = JSON.parse(repoFile('tsconfig.build.json')) as { compilerOptions: { rootDir: string; outDir: string } };
    expect(tsconfig.compilerOptions).toMatchObject({ rootDir: 'src', outDir: 'dist' });
    const workdir = build.filter((s) => s.op === 'WORKDIR').map((s) => s.args).pop()!;
    const fromBuild = inFinal('COPY').map((s) => copyArgs(s.args)).filter((c) => c.from === 'build');
    const produced = new Set(['node_modules', 'dist', ...copiedBefore(build.length)]);
    for (const c of fromBuild) {
      for (const src of c.sources) {
        const rel = posix.relative(workdir, src);
        expect({ src, produced: produced.has(rel) }).toEqual({ src, produced: true });
      }
    }
  });

  test('runs the built CLI as a non-root user on /etc/mapgate/mappings.yaml', async () => {
    const user = last('USER').split(':')[0];
    expect(user).not.toMatch(/^(root|0)$/);
    const created = inFinal('RUN').some((s) => new RegExp(`useradd .*--uid 10001 .*\\b${user}$`).test(s.args));
    expect(created).toBe(true);
    const workdir = last('WORKDIR');
    const entry = exec('ENTRYPOINT');
    // node with the flags mapgate runs with (see launchers.test.ts), then the CLI's path inside
    // the image, relative to the WORKDIR the runtime stage copies dist/ into.
    expect(entry.slice(0, 1 + NODE_FLAGS.length)).toEqual(['node', ...NODE_FLAGS]);
    const cli = posix.relative(workdir, entry[1 + NODE_FLAGS.length]);
    expect(cli).toBe('dist/cli.js');
    expect(existsSync(join(ROOT, 'src', 'cli.ts'))).toBe(true);
    expect(statSync(join(ROOT, cli)).isFile()).toBe(true);
    const cmd = exec('CMD');
    expect(cmd).toEqual(['run', '-c', '/etc/mapgate/mappings.yaml']);
    expect(env.MAPGATE_CONFIG).toBe('/etc/mapgate/mappings.yaml');
    const configCopy = inFinal('COPY').map((s) => copyArgs(s.args)).find((c) => c.dest === '/etc/mapgate/mappings.yaml');
    expect(configCopy?.sources).toEqual(['mappings.yaml']);
    // ENTRYPOINT + CMD with `check` in place of `run`: the arguments parse and the default config is valid.
    const r = await run(process.execPath, [join(ROOT, cli), 'check', ...cmd.slice(1).map((a) => (a === '/etc/mapgate/mappings.yaml' ? join(ROOT, 'mappings.yaml') : a))]);
    expect(r.code).toBe(0);
  });

  test('HEALTHCHECK reaches /healthz at the bundled config\'s admin address, and fails when nothing answers', async () => {
    const bundled = parseConfig(repoFile('mappings.yaml'), 'mappings.yaml');
    expect(env.MAPGATE_HEALTH_ADDR).toBe(`${bundled.admin!.host}:${bundled.admin!.port}`);
    const hc = last('HEALTHCHECK');
    const m = /^(.*?)\bCMD\s+(\[.*\])$/.exec(hc);
    expect(m).not.toBeNull();
    const argv = JSON.parse(m![2]) as string[];
    expect(argv[0]).toBe('node');
    expect(argv.join(' ')).toContain('/healthz');

    // The check, run as Docker runs it, against a real gateway's admin endpoint.
    const gw = await startGateway('admin: { listen: "127.0.0.1:0" }\nlog: { events: "off" }\nservices: []\n');
    const admin = gw.adminAddress()!;
    expect((await adminGet(gw, '/healthz')).status).toBe(200);
    const up = await run(process.execPath, argv.slice(1), { env: { ...process.env, MAPGATE_HEALTH_ADDR: `${admin.host}:${admin.port}` } });
    expect(up.code).toBe(0);
    await gw.destroy();
    const down = await run(process.execPath, argv.slice(1), { env: { ...process.env, MAPGATE_HEALTH_ADDR: `${admin.host}:${admin.port}` } });
    expect(down.code).toBe(1);

    // An admin endpoint with admin.tls and a token: MAPGATE_HEALTH_SCHEME=https, and /healthz needs no token.
    expect(env.MAPGATE_HEALTH_SCHEME).toBe('http');
    const secure = await startGateway(`admin: { listen: "127.0.0.1:0", token: "a-token-of-twenty-chars", tls: { cert: server.pem, key: server.key } }
log: { events: "off" }
services: []
`, { baseDir: join(ROOT, 'test', 'fixtures') });
    const sa = secure.adminAddress()!;
    const healthEnv = (scheme: string): NodeJS.ProcessEnv => ({ ...process.env, MAPGATE_HEALTH_ADDR: `${sa.host}:${sa.port}`, MAPGATE_HEALTH_SCHEME: scheme });
    expect((await run(process.execPath, argv.slice(1), { env: healthEnv('https') })).code).toBe(0);
    // Plain HTTP to the TLS endpoint is no answer.
    expect((await run(process.execPath, argv.slice(1), { env: healthEnv('http') })).code).toBe(1);
  });
});
