/**
 * Seeded fuzzing of the config loader: every mutation of a valid config either loads or is
 * refused with a ConfigError whose problems are all located (`file:line:col: path: message`);
 * never another exception, never a slow case. Set FUZZ_SEED to explore other seeds; a failure
 * message names the seed and case number that reproduce it.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { loadConfigFile, parseConfig } from '../../src/config/load';
import type { GatewayConfig } from '../../src/config/types';
import { ConfigError, formatProblem } from '../../src/errors';
import { FAKE_INTERFACES } from './fake-host';
import { prng } from '../helpers/prng';

const ROOT = join(__dirname, '..', '..');
const SEED = Number(process.env.FUZZ_SEED ?? 20240601);
const CASES = 1200;
const CASE_LIMIT_MS = 2000;


type Rand = ReturnType<typeof prng>;
const int = (r: Rand, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)];

function bomb(r: Rand): string {
  const width = 5 + int(r, 6);
  const lines = [`lol0: &l0 [${Array(width).fill('"lol"').join(', ')}]`];
  for (let i = 1; i < 8 + int(r, 6); i++) lines.push(`lol${i}: &l${i} [${Array(width).fill(`*l${i - 1}`).join(', ')}]`);
  return lines.join('\n') + '\n';
}

/** Values that are wrong somewhere (and right elsewhere): types, ranges, formats, sizes. */
function evilValue(r: Rand): string {
  const n = int(r, 34);
  switch (n) {
    case 0: return '-1';
    case 1: return '0';
    case 2: return '65536';
    case 3: return '70000';
    case 4: return '1.5';
    case 5: return 'true';
    case 6: return 'null';
    case 7: return '~';
    case 8: return '[]';
    case 9: return '{}';
    case 10: return '"80"';
    case 11: return '10.0.0.0/33';
    case 12: return '"fd00::/129"';
    case 13: return '10.0.300.1';
    case 14: return '5x';
    case 15: return '1d';
    case 16: return '9999999999h';
    case 17: return 'host';
    case 18: return 'host:0';
    case 19: return '"[::1]"';
    case 20: return '"::1:80"';
    case 21: return `"${'a'.repeat(1 + int(r, 300_000))}"`;
    case 22: return '['.repeat(1 + int(r, 2000)) + ']'.repeat(int(r, 2000));
    case 23: return '{a: '.repeat(1 + int(r, 500)) + '1' + '}'.repeat(int(r, 500));
    case 24: return '*nope';
    case 25: return '&x [*x]';
    case 26: return 'reject';
    case 27: return 'internal';
    case 28: return '[eth9, 999.1.1.1, all]';
    case 29: return '!!binary aGVsbG8=';
    case 30: return '|\n  multi\n  line';
    case 31: return String(int(r, 70000));
    case 32: return '0x1F';
    default: return `"${String.fromCharCode(...Array.from({ length: 1 + int(r, 20) }, () => int(r, 0x3000)))}"`;
  }
}

const KEYS = ['name', 'port', 'bind', 'intercept', 'destination', 'mappings', 'connectTimeout', 'idleTimeout', 'maxConnections',
  'user', 'source', 'action', 'host', 'tls', 'servername', 'verify', 'sources', 'listen', 'events', 'services', 'users',
  'admin', 'defaults', 'interfaces', 'workers', 'shutdownGrace', 'destinaton', 'prot', 'bogus', '<<', '"odd key"', '[k]'];

/** Text-level mutations: produce any string, valid YAML or not. */
function mutateText(r: Rand, text: string): string {
  const lines = text.split('\n');
  const at = int(r, lines.length);
  const indent = (lines[at].match(/^ */) ?? [''])[0];
  switch (int(r, 14)) {
    case 0: { // replace the value of a key: value line
      const cand = lines.map((l, i) => [l, i] as const).filter(([l]) => /^\s*-?\s*[A-Za-z_]+:\s*\S/.test(l) && !/^\s*#/.test(l));
      if (cand.length === 0) return text;
      const [l, i] = pick(r, cand);
      lines[i] = l.replace(/:\s*\S.*$/, `: ${evilValue(r)}`);
      return lines.join('\n');
    }
    case 1: // an unknown or misplaced key at some indentation
      lines.splice(at, 0, `${indent}${pick(r, KEYS)}: ${evilValue(r)}`);
      return lines.join('\n');
    case 2: // duplicate a line: duplicate keys, services, ports
      lines.splice(at, 0, lines[at]);
      return lines.join('\n');
    case 3: // delete a line
      lines.splice(at, 1);
      return lines.join('\n');
    case 4: // truncation
      return text.slice(0, int(r, text.length));
    case 5: { // YAML punctuation in a random place
      const i = int(r, text.length);
      return text.slice(0, i) + pick(r, ['&', '*', '!', '|', '>', '{', '[', ']', '}', '%', '@', '`', '#', ':', '- ', '? ', '"', "'", '\t', '\r', '\u0000', '\ufeff', '\n', '  ']) + text.slice(i);
    }
    case 6: // alias bomb at the top
      return bomb(r) + text;
    case 7: // deep nesting under a key
      lines.splice(at, 0, `${indent}${pick(r, KEYS)}: ${'['.repeat(40 + int(r, 3000))}`);
      return lines.join('\n');
    case 8: { // indentation damage
      lines[at] = int(r, 2) ? ` ${lines[at]}` : lines[at].replace(/^ {1,2}/, '');
      return lines.join('\n');
    }
    case 9: // a second document
      return `${text}\n---\n${text}`;
    case 10: { // block-nested mapping far deeper than any config
      const depth = 30 + int(r, 200);
      const nest = Array.from({ length: depth }, (_, d) => `${' '.repeat(2 * d)}k${d}:`).join('\n');
      return `${text}\n${nest} 1\n`;
    }
    case 11: // huge comment or key
      return int(r, 2) ? `# ${'x'.repeat(int(r, 500_000))}\n${text}` : `${'k'.repeat(int(r, 3000))}: 1\n${text}`;
    case 12: { // swap two lines
      const b = int(r, lines.length);
      [lines[at], lines[b]] = [lines[b], lines[at]];
      return lines.join('\n');
    }
    default: { // a random printable run
      const i = int(r, text.length);
      return text.slice(0, i) + String.fromCharCode(...Array.from({ length: 1 + int(r, 12) }, () => 32 + int(r, 95))) + text.slice(i);
    }
  }
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function evilJson(r: Rand): Json {
  return pick<Json>(r, [-1, 0, 65535, 65536, 1e9, 1.5, '', 'x', '80', true, false, null, [], {}, [1, 2], { a: 1 },
    '10.0.0.0/8', '10.0.0.0/40', '::ffff:10.0.0.0/104', 'fe80::1%eth0', '0s', '250ms', '25h', '24d', 'h:1', 'h:65536', '[::1]:80',
    '[::1', 'a'.repeat(200), 'reject', 'forward', 'all', 'internal', 'external', 'off', ['eth1'], ['eth0', '::1'], { host: 'h', port: 1 }]);
}

/** Structure-level mutations: valid YAML, wrong contents (types, ranges, duplicates, cross-field). */
function mutateData(r: Rand, data: Json): Json {
  const copy = JSON.parse(JSON.stringify(data)) as Json;
  const containers: Array<{ parent: Json[] | { [k: string]: Json }; key: string | number }> = [];
  const walk = (v: Json): void => {
    if (Array.isArray(v)) v.forEach((x, i) => { containers.push({ parent: v, key: i }); walk(x); });
    else if (v && typeof v === 'object') for (const k of Object.keys(v)) { containers.push({ parent: v, key: k }); walk(v[k]); }
  };
  walk(copy);
  const services = copy && typeof copy === 'object' && !Array.isArray(copy) && Array.isArray(copy.services) ? copy.services : null;
  const rounds = 1 + int(r, 3);
  for (let i = 0; i < rounds && containers.length > 0; i++) {
    const c = pick(r, containers);
    const op = int(r, 6);
    if (op === 0) (c.parent as Record<string, Json>)[c.key] = evilJson(r);
    else if (op === 1 && !Array.isArray(c.parent)) delete c.parent[c.key as string];
    else if (op === 2 && !Array.isArray(c.parent)) c.parent[pick(r, KEYS)] = evilJson(r);
    else if (op === 3 && services && services.length > 0) services.push(JSON.parse(JSON.stringify(pick(r, services))) as Json); // duplicate names/ports
    else if (op === 4 && services && services.length > 1) {
      const [a, b] = [pick(r, services), pick(r, services)] as Array<Record<string, Json>>;
      if (a && b && typeof a === 'object' && typeof b === 'object') b.port = a.port; // same port
    } else if (Array.isArray(c.parent)) c.parent.push(evilJson(r));
  }
  return copy;
}

/** Byte-level mutations, loaded from a file: flips, invalid UTF-8, stray NULs. */
function mutateBytes(r: Rand, text: string): Buffer {
  const buf = Buffer.from(text, 'utf8');
  const n = 1 + int(r, 8);
  const parts: Buffer[] = [buf];
  for (let i = 0; i < n; i++) {
    const b = Buffer.concat(parts.splice(0));
    const at = int(r, b.length + 1);
    const kind = int(r, 4);
    if (kind === 0 && b.length > 0) { b[Math.min(at, b.length - 1)] ^= 1 << int(r, 8); parts.push(b); }
    else if (kind === 1) parts.push(b.subarray(0, at), Buffer.from(pick(r, [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf5, 0x80, 0x80, 0x80], [0x80], [0xc3]])), b.subarray(at));
    else if (kind === 2) parts.push(b.subarray(0, at), Buffer.from([0]), b.subarray(at));
    else parts.push(b.subarray(0, at), Buffer.from('é😀', 'utf8'), b.subarray(at));
  }
  return Buffer.concat(parts);
}

interface Outcome { valid: number; invalid: number; slowest: number; byKind: Record<string, number> }

describe('config fuzz', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'mapgate-fuzz-')); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test(`${CASES} seeded mutations (seed ${SEED}): each loads or is refused with located problems, each under ${CASE_LIMIT_MS} ms`, () => {
    const bases = [
      readFileSync(join(ROOT, 'mappings.yaml'), 'utf8'),
      readFileSync(join(ROOT, 'test', 'fixtures', 'config', 'rich.yaml'), 'utf8'),
      readFileSync(join(ROOT, 'test', 'fixtures', 'config', 'issue-2.yaml'), 'utf8'),
    ];
    // The bases themselves are valid, so a refusal below is the mutation's doing.
    for (const b of bases) parseConfig(b, 'base.yaml', { interfaces: FAKE_INTERFACES, baseDir: dir });

    const r = prng(SEED);
    const out: Outcome = { valid: 0, invalid: 0, slowest: 0, byKind: {} };
    const started = performance.now();
    for (let i = 0; i < CASES; i++) {
      const base = pick(r, bases);
      const kind = pick(r, ['text', 'text', 'text', 'text+', 'data', 'data', 'bytes']);
      const file = join(dir, `case-${i}.yaml`);
      let run: () => GatewayConfig;
      let lineCount: number;
      if (kind === 'bytes') {
        const bytes = mutateBytes(r, base);
        writeFileSync(file, bytes);
        if (process.env.FUZZ_DUMP === String(i)) writeFileSync(join(tmpdir(), `mapgate-fuzz-case-${SEED}-${i}.yaml`), bytes);
        lineCount = bytes.toString('utf8').split(/\r\n|\r|\n/).length;
        run = () => loadConfigFile(file, { interfaces: FAKE_INTERFACES });
      } else {
        let text: string;
        if (kind === 'data') text = stringifyYaml(mutateData(r, parseYaml(base) as Json));
        else text = kind === 'text+' ? mutateText(r, mutateText(r, mutateText(r, base))) : mutateText(r, base);
        lineCount = text.split(/\r\n|\r|\n/).length;
        // FUZZ_DUMP=N writes case N's text next to the cases, to reproduce it outside the test.
        if (process.env.FUZZ_DUMP === String(i)) writeFileSync(join(tmpdir(), `mapgate-fuzz-case-${SEED}-${i}.yaml`), text);
        run = () => parseConfig(text, file, { interfaces: FAKE_INTERFACES, baseDir: dir });
      }

      const where = `seed ${SEED} case ${i} (${kind})`;
      const t0 = performance.now();
      let result: GatewayConfig | ConfigError;
      try {
        result = run();
      } catch (err) {
        if (!(err instanceof ConfigError)) throw new Error(`${where}: threw ${String((err as Error)?.stack ?? err)}`);
        result = err;
      }
      const ms = performance.now() - t0;
      out.slowest = Math.max(out.slowest, ms);
      if (ms > CASE_LIMIT_MS) throw new Error(`${where}: took ${ms.toFixed(0)} ms`);

      if (result instanceof ConfigError) {
        out.invalid++;
        if (result.code !== 'MAPGATE_ERR_CONFIG' || result.problems.length === 0) throw new Error(`${where}: ConfigError without problems`);
        for (const p of result.problems) {
          const line = formatProblem(p);
          const ok = Number.isInteger(p.line) && Number.isInteger(p.col) && p.line >= 1 && p.col >= 1 && p.line <= lineCount + 1
            && p.file === file && p.path.length > 0 && p.message.length > 0 && !/[\r\n]/.test(line)
            && line.startsWith(`${file}:${p.line}:${p.col}: ${p.path}: `) && !/\bat .*\.(ts|js):\d+/.test(p.message);
          if (!ok) throw new Error(`${where}: badly located problem: ${JSON.stringify(p)} (file has ${lineCount} lines)`);
        }
        const kindKey = result.problems[0].path === '(yaml)' ? 'yaml' : result.problems[0].path === '(file)' ? 'file' : 'content';
        out.byKind[kindKey] = (out.byKind[kindKey] ?? 0) + 1;
      } else {
        out.valid++;
        if (!Array.isArray(result.services) || !Object.isFrozen(result) || !Object.isFrozen(result.services)) throw new Error(`${where}: config not normalized`);
      }
    }
    const total = performance.now() - started;

    expect(out.valid + out.invalid).toBe(CASES);
    // Not vacuous: the mutations produce both outcomes and every kind of refusal.
    expect(out.valid).toBeGreaterThan(CASES * 0.03);
    expect(out.invalid).toBeGreaterThan(CASES * 0.5);
    expect(out.byKind.yaml).toBeGreaterThan(20);
    expect(out.byKind.file).toBeGreaterThan(20);
    expect(out.byKind.content).toBeGreaterThan(200);
    expect(total).toBeLessThan(45_000);
  }, 60_000);
});
