import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, NODE_FLAGS, nodeFlags } from '../helpers/process';
import { ROOT, repoFile } from './tools';

/**
 * mapgate runs with the Node flags on its executable's `#!` line (a young generation capped at
 * 4 MiB: README, Performance). Every way the repository starts it must pass the same flags.
 */
describe('every launcher runs node with the flags of the CLI\'s #! line', () => {
  test('the flags cap the young generation', () => {
    expect(NODE_FLAGS).toEqual(['--max-semi-space-size=4']);
  });

  test('the built CLI keeps the #! line, and it runs as the kernel would run it', () => {
    const built = readFileSync(CLI, 'utf8');
    expect(nodeFlags(built)).toEqual(NODE_FLAGS);
    // The kernel hands everything after the interpreter's path to env as one argument.
    const line = built.split('\n', 1)[0];
    const [interpreter, ...rest] = line.slice(2).split(' ');
    const r = spawnSync(interpreter, [rest.join(' '), CLI, '--version'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe((JSON.parse(repoFile('package.json')) as { version: string }).version);
  });

  test('npm start', () => {
    const start = (JSON.parse(repoFile('package.json')) as { scripts: Record<string, string> }).scripts.start;
    expect(start).toBe(['node', ...NODE_FLAGS, 'dist/cli.js', 'run', '-c', 'mappings.yaml'].join(' '));
  });

  test('the benchmarks start mapgate with the flags of dist/cli.js', () => {
    const bench = readFileSync(join(ROOT, 'test', 'bench', 'bench.js'), 'utf8');
    // `key`: mapgate, or mapgate-w2 (workers: 2).
    expect(bench).toMatch(/startProcess\(key, process\.execPath, \[\.\.\.nodeArgs, CLI/);
    expect(bench).toMatch(/const nodeArgs = \[\.\.\.mapgateNodeFlags\(\)/);
    const cost = readFileSync(join(ROOT, 'test', 'bench', 'conn-cost.js'), 'utf8');
    expect(cost).toMatch(/const flags = fs\.readFileSync\(CLI, 'utf8'\)\.split\('\\n', 1\)\[0\]/);
    expect(cost).toMatch(/argv = \[\.\.\.flags, CLI, 'run'/);
  });
});
