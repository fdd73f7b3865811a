import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { roundTrip, startEchoServer } from '../helpers/net';
import { NODE_FLAGS, runCli, started, startedPort, writeConfig } from '../helpers/process';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');

/**
 * Loaded with `-r` into a gateway: when it exits, writes the JS files it loaded from disk and
 * the Node built-ins it loaded to the file in $MAPGATE_LOADED.
 */
const REPORTER = writeConfig(`
process.on('exit', () => {
  const builtins = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13));
  require('fs').writeFileSync(process.env.MAPGATE_LOADED, JSON.stringify({ files: Object.keys(require.cache), builtins }));
});
`, 'reporter.js');

describe('dist/cli.js, the bundled command', () => {
  test('runs from one file: no other JS file is loaded, the schema validator and its Ajv helpers included', async () => {
    const { port } = await startEchoServer();
    const report = writeConfig('', 'loaded.json');
    const r = runCli(['run', '-c', writeConfig(`
admin: { listen: "127.0.0.1:0" }
log: { events: stdout }
shutdownGrace: 1s
services:
  - name: echo
    port: 0
    bind: [127.0.0.1]
    destination: 127.0.0.1:${port}
`)], { MAPGATE_LOADED: report }, [...NODE_FLAGS, '-r', REPORTER]);
    const p = startedPort(await started(r), 'echo');
    expect((await roundTrip(p, 'bundled')).toString()).toBe('bundled');
    r.child.kill('SIGTERM');
    expect(await r.exit).toBe(0);
    const loaded = JSON.parse(readFileSync(report, 'utf8')) as { files: string[]; builtins: string[] };
    expect(loaded.files.filter((f) => f !== REPORTER)).toEqual([CLI]);
    // prom-client's index would load its Pushgateway, and with it node:zlib (src/metrics/prom.ts).
    expect(loaded.builtins).not.toContain('zlib');
  });

  test('is ASCII only, so V8 holds its source as a one-byte string (half the memory of a two-byte one)', () => {
    const text = readFileSync(CLI, 'latin1');
    const lines = text.split('\n');
    const offending = lines.map((l, i) => ({ line: i + 1, text: l })).filter((l) => /[^\x00-\x7f]/.test(l.text));
    // Each is a comment esbuild kept: write it in ASCII in src/.
    expect(offending.map((l) => `dist/cli.js:${l.line}: ${l.text.trim()}`)).toEqual([]);
  });
});
