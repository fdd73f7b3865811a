import type { ErrorObject } from 'ajv';
import { isAlias, isMap, isNode, isScalar, isSeq, type Document, type LineCounter, type Node as YamlNode, type YAMLError } from 'yaml';
import type { ConfigProblem } from '../errors';

/**
 * Where a config problem is and how to word it: paths into the document, the line and column
 * of a node, and the wording of yaml's and the schema's errors for the person editing the file.
 */

export type PathSeg = string | number;

export function pathText(path: readonly PathSeg[]): string {
  let out = '';
  for (const seg of path) {
    // Keys that are not plain names are quoted, so the path stays unambiguous.
    const name = typeof seg === 'string' && !/^[A-Za-z0-9_-]+$/.test(seg) ? JSON.stringify(seg.length > 60 ? `${seg.slice(0, 60)}…` : seg) : seg;
    out += typeof seg === 'number' ? `[${seg}]` : out ? `.${name}` : String(name);
  }
  return out || '(root)';
}

/** Collections nested deeper than this are refused (a real config needs about 8). */
export const MAX_DEPTH = 64;

export function oneLine(s: string): string {
  return s.split('\n')[0].replace(/\s+at line \d+, column \d+:?$/, '').trim();
}

export function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const k = `${p.line}:${p.col}:${p.path}:${p.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

const PATTERN_HINTS: Record<string, string> = {
  duration: 'must be a duration such as 250ms, 5s, 15m or 1h',
  name: "must be 1 to 128 letters, digits, '-' or '_'",
  clockTime: 'must be a time HH:MM from 00:00 to 23:59',
  clockEnd: 'must be a time HH:MM from 00:00 to 24:00',
  mac: 'must be a MAC address such as 52:54:00:12:34:56',
  rate: 'must be a rate such as 20/s, 100/m or 1000/h, or off',
  limitCount: 'must be a number or off',
  servicePort: 'must be a port number or "auto"',
  tag: "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
};

const TYPE_WORDS: Record<string, string> = {
  object: 'a mapping', array: 'a list', integer: 'an integer', number: 'a number',
  string: 'a string', boolean: 'true or false', null: 'empty',
};

/** A value as the person editing the file would name it, for "must be X, not Y". */
function describe(v: unknown): string {
  if (v === null || v === undefined) return 'empty';
  if (typeof v === 'string') return `the string ${quote(v)}`;
  if (typeof v === 'number') return Number.isInteger(v) ? `the number ${v}` : `the number ${v} (not whole)`;
  if (typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return 'a list';
  return 'a mapping';
}

export function quote(s: string, max = 60): string {
  return JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);
}

/** Edit distance, for "did you mean" on unknown keys (short strings only). */
function distance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3 || a.length > 64) return 99;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/** Where a problem is and how to word it. */
export class Context {
  constructor(
    readonly file: string,
    readonly doc: Document,
    readonly lines: LineCounter,
    readonly problems: ConfigProblem[],
  ) {}

  /** Files the config read besides itself (TLS material): reloads follow their changes too. */
  readonly files = new Set<string>();

  nodePos(node: YamlNode | null | undefined): { line: number; col: number } {
    return node?.range ? this.lines.linePos(node.range[0]) : { line: 1, col: 1 };
  }

  /**
   * Position of the node at `path` (of its key when `key`), or of its nearest existing
   * ancestor. Walks the document itself, following aliases, so keys such as `5` or `"5"`
   * are found whichever way they were written.
   */
  position(path: readonly PathSeg[], key = false): { line: number; col: number } {
    let node: unknown = this.doc.contents;
    let best = this.nodePos(node as YamlNode);
    for (let i = 0; i < path.length; i++) {
      for (let hops = 0; isAlias(node) && hops < 100; hops++) node = node.resolve(this.doc);
      let next: unknown;
      let keyNode: unknown;
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(path[i]));
        next = pair?.value;
        keyNode = pair?.key;
      } else if (isSeq(node) && typeof path[i] === 'number') {
        next = node.items[path[i] as number];
      }
      if (key && i === path.length - 1 && isNode(keyNode) && keyNode.range) return this.lines.linePos(keyNode.range[0]);
      if (!isNode(next) || !next.range) {
        // `key: ` with no value: the key is the place to point at.
        if (isNode(keyNode) && keyNode.range) return this.lines.linePos(keyNode.range[0]);
        return best;
      }
      node = next;
      best = this.lines.linePos(next.range[0]);
    }
    return best;
  }

  add(path: readonly PathSeg[], message: string, key = false): void {
    this.problems.push({ file: this.file, ...this.position(path, key), path: pathText(path), message });
  }

  /** Path of the map key that starts at `offset`, for YAML errors that point at a key. */
  keyPathAt(offset: number): PathSeg[] | null {
    let node: unknown = this.doc.contents;
    const path: PathSeg[] = [];
    for (let depth = 0; depth <= MAX_DEPTH; depth++) {
      if (isSeq(node)) {
        const i = node.items.findIndex((it) => isNode(it) && it.range && it.range[0] <= offset && offset < it.range[2]);
        if (i < 0) return null;
        path.push(i);
        node = node.items[i];
      } else if (isMap(node)) {
        const pair = node.items.find((p) => isNode(p.key) && p.key.range?.[0] === offset);
        if (pair) return isScalar(pair.key) ? [...path, String(pair.key.value)] : null;
        const inner = node.items.find((p) => isNode(p.value) && p.value.range && p.value.range[0] <= offset && offset < p.value.range[2]);
        if (!inner || !isScalar(inner.key)) return null;
        path.push(String(inner.key.value));
        node = inner.value;
      } else {
        return null;
      }
    }
    return null;
  }

  yamlProblem(e: YAMLError): void {
    const pos = this.lines.linePos(e.pos[0]);
    let path = '(yaml)';
    let message = oneLine(e.message);
    if (e.code === 'DUPLICATE_KEY') {
      const keyPath = this.keyPathAt(e.pos[0]);
      if (keyPath) path = pathText(keyPath);
      message = keyPath ? `duplicate key "${keyPath[keyPath.length - 1]}": a key may appear only once in a mapping` : 'duplicate key: a key may appear only once in a mapping';
    } else if (e.code === 'MULTIPLE_DOCS') {
      message = 'a second YAML document ("---") follows: the config is one document';
    } else if (/Maximum call stack size exceeded/.test(message)) {
      message = 'nested too deeply to parse';
    }
    this.problems.push({ file: this.file, ...pos, path, message });
  }

  schemaProblem(e: ErrorObject, data: unknown): void {
    // A segment is an index only where the data holds a list there, so a key written `5` stays a key.
    const path: PathSeg[] = [];
    let cur: unknown = data;
    for (const raw of e.instancePath.split('/').slice(1)) {
      const s = raw.replace(/~1/g, '/').replace(/~0/g, '~');
      const seg: PathSeg = Array.isArray(cur) && /^[0-9]+$/.test(s) ? Number(s) : s;
      path.push(seg);
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[seg as string] : undefined;
    }
    const propertyName = (e as ErrorObject & { propertyName?: string }).propertyName;
    const got = propertyName === undefined ? `, not ${describe(e.data)}` : '';
    const p = e.params as Record<string, unknown>;
    switch (e.keyword) {
      case 'additionalProperties': {
        const name = String(p.additionalProperty);
        const allowed = Object.keys((e.parentSchema as { properties?: object }).properties ?? {});
        const near = allowed.map((a) => ({ a, d: distance(name, a) })).filter((x) => x.d <= Math.max(1, Math.floor(x.a.length / 4))).sort((x, y) => x.d - y.d)[0];
        const hint = near ? ` (did you mean "${near.a}"?)` : allowed.length ? ` (expected one of: ${allowed.join(', ')})` : '';
        return this.add([...path, name], `unknown key${hint}`, true);
      }
      case 'required':
        return this.add(path, `missing required key "${String(p.missingProperty)}"`);
      case 'enum':
        return this.add(path, `must be one of: ${(p.allowedValues as unknown[]).join(', ')}${got}`);
      case 'type': {
        // A number-or-word value (a port or auto, a count or off) says so, not "an integer or a string".
        const word = ['servicePort', 'limitCount'].find((k) => e.schemaPath.includes(`/definitions/${k}/`));
        if (word) return this.add(path, `${PATTERN_HINTS[word]}${got}`);
        return this.add(path, `must be ${String(p.type).split(',').map((t) => TYPE_WORDS[t] ?? t).join(' or ')}${got}`);
      }
      case 'minProperties': {
        const keys = Object.keys((e.parentSchema as { properties?: object }).properties ?? {});
        return this.add(path, keys.length > 0 ? `needs at least one of: ${keys.join(', ')}` : 'must not be empty');
      }
      case 'minItems':
        return this.add(path, Number(p.limit) === 1 ? 'must not be an empty list' : `must have at least ${String(p.limit)} items`);
      case 'uniqueItems':
        return this.add([...path, Number(p.i)], `the same entry as ${pathText([...path, Number(p.j)])}`);
      case 'maxItems':
        return this.add(path, `must have at most ${String(p.limit)} items (has ${Array.isArray(e.data) ? e.data.length : '?'})`);
      case 'minLength':
        if (propertyName !== undefined) return this.add([...path, propertyName], 'key must not be empty', true);
        return this.add(path, Number(p.limit) === 1 ? 'must not be empty' : `must be at least ${String(p.limit)} characters long`);
      case 'maxLength':
        if (propertyName !== undefined) return this.add([...path, propertyName], `key must be at most ${String(p.limit)} characters long`, true);
        return this.add(path, `must be at most ${String(p.limit)} characters long (is ${typeof e.data === 'string' ? e.data.length : '?'})`);
      case 'propertyNames':
        return;
      case 'pattern': {
        const ref = Object.keys(PATTERN_HINTS).find((k) => e.schemaPath.includes(`/definitions/${k}/`));
        let message = ref ? PATTERN_HINTS[ref] : `must match ${String(p.pattern)}`;
        if (e.schemaPath.includes('/bind/')) message = 'must be "internal", "all" or a list of interface names and addresses';
        if (e.schemaPath.includes('/workers/')) message = 'must be a number or "auto"';
        if (e.schemaPath.includes('/passivePorts/')) message = 'must be a port range such as 50000-50100';
        if (e.schemaPath.includes('/password/')) message = 'must be a hash printed by `mapgate passwd` (scrypt:…), never the password itself';
        if (propertyName !== undefined) return this.add([...path, propertyName], `key ${message}`, true);
        return this.add(path, `${message}${got}`);
      }
      default:
        if (propertyName !== undefined) return this.add([...path, propertyName], `key ${e.message ?? 'is invalid'}`, true);
        return this.add(path, e.message ?? 'is invalid');
    }
  }
}
