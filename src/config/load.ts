import { readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { isIP, isIPv4, isIPv6 } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { networkInterfaces } from 'node:os';
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { LineCounter, Parser, parseDocument, isAlias, isMap, isNode, isScalar, isSeq, type Document, type Node as YamlNode, type YAMLError } from 'yaml';
import { ConfigError, type ConfigProblem } from '../errors';
import { parseCidr, type Cidr } from './cidr';
import { resolveBind, WILDCARDS, type InterfaceTable } from './bind';
import { hostPortLabel, hostPortProblem, isHost, MAX_TIMER_MS, parseDuration, parseHostPort } from './parse-values';
import type { AcceptConfig, AcceptTls, AdminTls, BindSpec, CertificateMatch, Destination, GatewayConfig, MappingRule, ServiceConfig, UpstreamTls, User } from './types';

export const DEFAULTS = Object.freeze({
  adminListen: '127.0.0.1:9464',
  events: 'stdout',
  connectTimeout: '5s',
  idleTimeout: '30m',
  maxConnections: 256,
  shutdownGrace: '10s',
  interfacePoll: '5s',
  handshakeTimeout: '10s',
});

/**
 * yaml's own alias limit, a backstop behind checkStructure's (which bounds the expanded size
 * and says where): references to one anchor times the aliases inside it.
 */
const MAX_ALIAS_COUNT = 1000;
/** Larger files are refused before parsing. */
const MAX_FILE_BYTES = 4 * 1024 * 1024;

export const SCHEMA_PATH = join(__dirname, '..', '..', 'schema', 'mappings.schema.json');

let validator: ValidateFunction | undefined;
function schemaValidator(): ValidateFunction {
  if (!validator) {
    const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, verbose: true });
    validator = ajv.compile(JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')));
  }
  return validator;
}

type PathSeg = string | number;

function pathText(path: readonly PathSeg[]): string {
  let out = '';
  for (const seg of path) {
    // Keys that are not plain names are quoted, so the path stays unambiguous.
    const name = typeof seg === 'string' && !/^[A-Za-z0-9_-]+$/.test(seg) ? JSON.stringify(seg.length > 60 ? `${seg.slice(0, 60)}…` : seg) : seg;
    out += typeof seg === 'number' ? `[${seg}]` : out ? `.${name}` : String(name);
  }
  return out || '(root)';
}

/** Options for {@link parseConfig}. */
export interface ParseOptions {
  /** Directory that relative TLS file paths resolve against; defaults to the config file's. */
  baseDir?: string;
  /** The host's interfaces (for `bind` checks); defaults to `os.networkInterfaces()`. */
  interfaces?: InterfaceTable;
}

/** Reads and parses a config file. Throws {@link ConfigError} listing every problem. */
export function loadConfigFile(file: string, options: ParseOptions = {}): GatewayConfig {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'is a directory, not a file' : e.code === 'EACCES' ? 'permission denied' : e.code ?? 'error';
    throw new ConfigError([{ file, line: 1, col: 1, path: '(file)', message: `cannot read the config file: ${why}${e.code && why !== e.code ? ` (${e.code})` : ''}` }]);
  }
  if (buf.length > MAX_FILE_BYTES) {
    throw new ConfigError([{ file, line: 1, col: 1, path: '(file)', message: `the file is ${buf.length} bytes; at most ${MAX_FILE_BYTES} are read` }]);
  }
  const bad = firstInvalidUtf8(buf);
  if (bad >= 0) {
    let lineStart = buf.lastIndexOf(0x0a, bad - 1) + 1;
    if (bad === 0) lineStart = 0;
    let line = 1;
    for (let i = buf.indexOf(0x0a); i >= 0 && i < lineStart; i = buf.indexOf(0x0a, i + 1)) line++;
    const col = buf.subarray(lineStart, bad).toString('utf8').length + 1;
    const byte = buf[bad].toString(16).padStart(2, '0');
    throw new ConfigError([{ file, line, col, path: '(file)', message: `not valid UTF-8 (byte 0x${byte}): save the file as UTF-8` }]);
  }
  return parseConfig(buf.toString('utf8'), file, { baseDir: dirname(resolve(file)), ...options });
}

/** Offset of the first byte that does not belong to a well-formed UTF-8 sequence, or -1. */
function firstInvalidUtf8(buf: Buffer): number {
  for (let i = 0; i < buf.length; ) {
    const b = buf[i];
    if (b < 0x80) { i++; continue; }
    let n: number;
    let min: number;
    if (b >= 0xc2 && b <= 0xdf) { n = 1; min = 0x80; }
    else if (b >= 0xe0 && b <= 0xef) { n = 2; min = 0x800; }
    else if (b >= 0xf0 && b <= 0xf4) { n = 3; min = 0x10000; }
    else return i;
    let cp = b & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const c = buf[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
    if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return i;
    i += n + 1;
  }
  return -1;
}

/** Parses config text. Throws {@link ConfigError} listing every problem with its line and column. */
export function parseConfig(text: string, file = '<inline>', options: ParseOptions = {}): GatewayConfig {
  const deep = nestingProblem(text);
  if (deep) throw new ConfigError([{ file, ...deep, path: '(yaml)', message: `nested more than ${MAX_DEPTH} levels deep` }]);
  const lineCounter = new LineCounter();
  // logLevel 'error': yaml would otherwise print process warnings (e.g. for collection keys),
  // which checkStructure reports as problems instead.
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, strict: true, logLevel: 'error' });
  const problems: ConfigProblem[] = [];
  const ctx = new Context(file, doc, lineCounter, problems);
  const fail = (): never => {
    problems.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigError(dedupe(problems));
  };

  if (doc.errors.length > 0) {
    const unclosed = ctx.unclosedProblems(text, doc.errors);
    for (const e of doc.errors) if (e.pos[0] < unclosed.cut) ctx.yamlProblem(e);
    problems.push(...unclosed.problems);
    fail();
  }
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    problems.push({ file, line: 1, col: 1, path: '(root)', message: 'the file is empty: it needs at least a "services:" list' });
    fail();
  }
  checkStructure(ctx);
  if (problems.length > 0) fail();

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    // checkStructure bounds depth and alias expansion first; this is the library's own backstop.
    problems.push({ file, line: 1, col: 1, path: '(yaml)', message: `cannot expand the document: ${oneLine((err as Error).message)}` });
    fail();
  }

  const validate = schemaValidator();
  if (!validate(data)) for (const e of validate.errors ?? []) ctx.schemaProblem(e, data);

  const config = normalize(data, ctx, options);
  if (problems.length > 0 || !config) fail();
  return config!;
}

/** Collections nested deeper than this are refused (a real config needs about 8). */
const MAX_DEPTH = 64;
/** Nodes that aliases may add to the document in total, so a "billion laughs" cannot expand. */
const MAX_ALIAS_NODES = 10_000;

/** Flow brackets open at once beyond which the text is refused before any YAML parsing. */
const MAX_FLOW_BRACKETS = 1000;

/**
 * Refuses deeply nested text before yaml's recursive composer sees it: on Node 20 a stack
 * overflow there can abort the process ("RegExpCompiler Allocation failed") instead of
 * throwing. A linear bracket scan first (yaml's CST parser is slow on megabytes of `[`),
 * then yaml's iterative CST parser, walked without recursion. Returns the position.
 */
function nestingProblem(text: string): { line: number; col: number } | null {
  const lc = new LineCounter();
  let open = 0;
  let quote = 0;
  let prev = 10;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (quote) {
      if (c === 92 && quote === 34) i++; // \ escape in a double-quoted scalar
      else if (c === quote) quote = 0;
    } else if (c === 35 && (prev === 32 || prev === 9 || prev === 10 || prev === 13)) {
      while (i < text.length && text.charCodeAt(i) !== 10) i++; // # comment
      prev = 10;
      continue;
    } else if ((c === 34 || c === 39) && (prev === 32 || prev === 10 || prev === 91 || prev === 123 || prev === 44 || prev === 58)) {
      quote = c;
    } else if (c === 91 || c === 123) {
      if (++open > MAX_FLOW_BRACKETS) {
        const before = text.slice(0, i);
        const line = before.split('\n').length;
        return { line, col: i - before.lastIndexOf('\n') };
      }
    } else if ((c === 93 || c === 125) && open > 0) {
      open--;
    }
    prev = c;
  }
  type Tok = { type?: string; offset?: number; value?: unknown; key?: unknown; items?: Array<{ key?: unknown; value?: unknown }> };
  const stack: Array<{ tok: Tok; depth: number }> = [];
  for (const tok of new Parser(lc.addNewLine).parse(text)) stack.push({ tok: tok as Tok, depth: 0 });
  while (stack.length > 0) {
    const { tok, depth } = stack.pop()!;
    const d = tok.type === 'block-map' || tok.type === 'block-seq' || tok.type === 'flow-collection' ? depth + 1 : depth;
    if (d > MAX_DEPTH) return lc.linePos(tok.offset ?? 0);
    const push = (t: unknown): void => { if (t && typeof t === 'object') stack.push({ tok: t as Tok, depth: d }); };
    push(tok.key);
    push(tok.value);
    if (Array.isArray(tok.items)) for (const it of tok.items) { push(it.key); push(it.value); }
  }
  return null;
}

/** The character that closes each opener. */
const CLOSER: Readonly<Record<string, string>> = { '[': ']', '{': '}', '"': '"', "'": "'" };

/** A `[`, `{`, `"` or `'` in the CST that its closing character does not follow. */
interface Opener {
  offset: number;
  char: string;
  /** The nearest unclosed opener around this one. */
  parent: Opener | null;
  /** Something inside was ended by this opener's closing character, so it may not be missing. */
  tainted: boolean;
}

/**
 * The flow collections and quoted scalars of yaml's CST that lack their closing character, and
 * every `]` or `}` that closes nothing (a stray: in a plain scalar, an error token, or a flow
 * end that no collection took). The CST already knows quotes, comments and block scalars, so
 * a bracket inside them is never counted. Iterative, like {@link nestingProblem}.
 */
function unclosedInCst(text: string): { open: Opener[]; stray: Array<{ offset: number; char: string }> } {
  type Tok = { type?: string; offset?: number; source?: string; start?: unknown; end?: unknown };
  const open: Opener[] = [];
  const stray: Array<{ offset: number; char: string }> = [];
  const taken = new Set<unknown>();
  const stack: Array<{ tok: unknown; parent: Opener | null }> = [];
  for (const tok of new Parser().parse(text)) stack.push({ tok, parent: null });
  while (stack.length > 0) {
    const { tok, parent } = stack.pop()!;
    if (Array.isArray(tok)) {
      for (const t of tok) stack.push({ tok: t, parent });
      continue;
    }
    if (!tok || typeof tok !== 'object') continue;
    const t = tok as Tok;
    const source = typeof t.source === 'string' ? t.source : '';
    const offset = t.offset ?? 0;
    let inner = parent;
    switch (t.type) {
      case 'flow-collection': {
        const char = (t.start as Tok | undefined)?.source === '{' ? '{' : '[';
        const end = Array.isArray(t.end) ? (t.end[0] as Tok | undefined) : undefined;
        const isEnd = end?.type === 'flow-seq-end' || end?.type === 'flow-map-end';
        if (isEnd) taken.add(end);
        if (end?.source !== CLOSER[char]) {
          inner = { offset, char, parent, tainted: false };
          open.push(inner);
          // `{a: [b}`: the "}" ended the list, so the "{" around it is not missing one.
          if (isEnd) for (let p: Opener | null = inner; p; p = p.parent) p.tainted = true;
        }
        break;
      }
      case 'double-quoted-scalar':
      case 'single-quoted-scalar':
        // yaml's own test (compose/resolve-flow-scalar): the last character is the quote.
        if (source.length < 2 || source[source.length - 1] !== source[0]) open.push({ offset, char: source[0], parent, tainted: false });
        break;
      case 'scalar':
      case 'error':
        for (const char of [']', '}']) {
          const i = source.indexOf(char);
          if (i >= 0) stray.push({ offset: offset + i, char });
        }
        break;
      case 'flow-seq-end':
      case 'flow-map-end':
        if (!taken.has(tok)) stray.push({ offset, char: source });
        break;
    }
    for (const child of Object.values(tok)) if (child && typeof child === 'object') stack.push({ tok: child, parent: inner });
  }
  return { open, stray };
}

/** The unclosed openers around the innermost one, for its message: outermost first. */
function enclosingNote(outer: ReadonlyArray<{ char: string; line: number; col: number }>): string {
  const named = outer.map((o) => `the "${o.char}" at ${o.line}:${o.col}`);
  if (named.length === 0) return '';
  if (named.length === 1) return ` (so does ${named[0]} around it)`;
  if (named.length <= 3) return ` (so do ${named.slice(0, -1).join(', ')} and ${named[named.length - 1]} around it)`;
  return ` (so do the ${named.length} around it, the outermost a "${outer[0].char}" at ${outer[0].line}:${outer[0].col})`;
}

interface Frame {
  node: unknown;
  parent: Frame | null;
  seg: PathSeg | null;
  depth: number;
  size: number;
  open: boolean;
}

function framePath(f: Frame | null): PathSeg[] {
  const out: PathSeg[] = [];
  for (let x = f; x && x.seg !== null; x = x.parent) out.unshift(x.seg);
  return out;
}

/**
 * Refuses what the schema cannot see and what would make expansion unsafe: nesting deeper
 * than {@link MAX_DEPTH}, keys that are not plain scalars, recursive aliases, and aliases
 * that would add more than {@link MAX_ALIAS_NODES} nodes. Iterative, so no input can
 * exhaust the stack; linear in the document size.
 */
function checkStructure(ctx: Context): void {
  const anchors = new Map<string, unknown>();
  const sizes = new Map<unknown, number>();
  const inProgress = new Set<unknown>();
  let aliasNodes = 0;
  const root: Frame = { node: ctx.doc.contents, parent: null, seg: null, depth: 0, size: 0, open: false };
  const stack: Frame[] = [root];
  while (stack.length > 0) {
    const f = stack[stack.length - 1];
    const node = f.node as YamlNode | null;
    if (f.open) {
      stack.pop();
      inProgress.delete(node);
      if (node && (node as { anchor?: string }).anchor) sizes.set(node, f.size);
      if (f.parent) f.parent.size += f.size;
      continue;
    }
    f.open = true;
    f.size = 1;
    if (isAlias(node)) {
      const target = anchors.get(node.source);
      const where = ctx.nodePos(node);
      if (target === undefined) {
        ctx.problems.push({ file: ctx.file, ...where, path: pathText(framePath(f)), message: `alias *${node.source} has no anchor &${node.source} before it` });
        continue;
      }
      if (inProgress.has(target)) {
        ctx.problems.push({ file: ctx.file, ...where, path: pathText(framePath(f)), message: `alias *${node.source} refers to a node that contains it: recursive structures are not allowed` });
        return;
      }
      const size = sizes.get(target) ?? 1;
      aliasNodes += size;
      if (aliasNodes > MAX_ALIAS_NODES) {
        ctx.problems.push({ file: ctx.file, ...where, path: pathText(framePath(f)),
          message: `alias *${node.source} makes the aliases expand to more than ${MAX_ALIAS_NODES} nodes: refused as a "billion laughs" document` });
        return;
      }
      f.size = size;
      continue;
    }
    if (node && (node as { anchor?: string }).anchor) {
      anchors.set((node as { anchor: string }).anchor, node);
      inProgress.add(node);
    }
    if (!isMap(node) && !isSeq(node)) continue;
    if (f.depth >= MAX_DEPTH) {
      ctx.problems.push({ file: ctx.file, ...ctx.nodePos(node), path: pathText(framePath(f)), message: `nested more than ${MAX_DEPTH} levels deep` });
      return;
    }
    const children: Frame[] = [];
    if (isSeq(node)) {
      node.items.forEach((item, i) => children.push({ node: item, parent: f, seg: i, depth: f.depth + 1, size: 0, open: false }));
    } else {
      for (const pair of node.items) {
        const key = pair.key;
        const keyText = isScalar(key) && key.value !== null && typeof key.value !== 'object' ? String(key.value) : null;
        if (keyText === null) {
          const at = isNode(key) && key.range ? ctx.lines.linePos(key.range[0]) : isNode(pair.value) && pair.value.range ? ctx.lines.linePos(pair.value.range[0]) : ctx.nodePos(node);
          const what = isMap(key) ? 'a mapping' : isSeq(key) ? 'a list' : isAlias(key) ? 'an alias' : isScalar(key) && key.value !== null ? 'a tagged value' : 'empty';
          ctx.problems.push({ file: ctx.file, ...at, path: pathText(framePath(f)), message: `a key must be a plain name, not ${what}` });
          continue;
        }
        children.push({ node: key, parent: f, seg: keyText, depth: f.depth + 1, size: 0, open: false });
        children.push({ node: pair.value, parent: f, seg: keyText, depth: f.depth + 1, size: 0, open: false });
      }
    }
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]);
  }
}

function oneLine(s: string): string {
  return s.split('\n')[0].replace(/\s+at line \d+, column \d+:?$/, '').trim();
}

function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
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

function quote(s: string, max = 60): string {
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
class Context {
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

  /**
   * Every flow collection (`[`, `{`) and quoted scalar (`"`, `'`) of the document, keyed by
   * its start offset and that character, with its path and where yaml's composer stopped
   * reading it (`range[1]`: for an unclosed one, where yaml's error about it is). Iterative
   * and linear, like checkStructure.
   */
  private openerIndex(): Map<string, { path: string; end: number }> {
    type F = { node: unknown; parent: F | null; seg: PathSeg | null; named: boolean };
    const found = new Map<string, { frame: F; end: number }>();
    const stack: F[] = [{ node: this.doc.contents, parent: null, seg: null, named: true }];
    while (stack.length > 0) {
      const f = stack.pop()!;
      const node = f.node;
      if (!isNode(node) || !node.range) continue;
      const char = isSeq(node) ? (node.flow ? '[' : null) : isMap(node) ? (node.flow ? '{' : null)
        : isScalar(node) ? (node.type === 'QUOTE_DOUBLE' ? '"' : node.type === 'QUOTE_SINGLE' ? "'" : null) : null;
      // Children come later and win: `[{a: 1}: b]` starts the pair's implicit map and its key at one offset.
      if (char) found.set(`${node.range[0]}${char}`, { frame: f, end: node.range[1] });
      if (isSeq(node)) {
        node.items.forEach((item, i) => stack.push({ node: item, parent: f, seg: i, named: f.named }));
      } else if (isMap(node)) {
        for (const pair of node.items) {
          const key = pair.key;
          const plain = isScalar(key) && key.value !== null && typeof key.value !== 'object';
          // Inside a key, the path is the map's.
          stack.push({ node: key, parent: f, seg: null, named: f.named });
          stack.push({ node: pair.value, parent: f, seg: plain ? String(key.value) : null, named: f.named && plain });
        }
      }
    }
    const index = new Map<string, { path: string; end: number }>();
    for (const [k, { frame, end }] of found) {
      const path: PathSeg[] = [];
      for (let x: F | null = frame; x; x = x.parent) if (x.seg !== null) path.unshift(x.seg);
      index.set(k, { path: frame.named ? pathText(path) : '(yaml)', end });
    }
    return index;
  }

  /**
   * yaml reports a `[`, `{` or quote that is never closed where it stopped reading it: the end
   * of the file, or the next line indented too little. Reworded here at the opener itself, one
   * problem per innermost opener, naming the brackets around it that are open too. Returns
   * them and `cut` (Infinity when there are none), the first offset where yaml stopped: its
   * errors from there on follow from the missing character (a list cut short mid-file leaves
   * the parser misreading the lines after it), so they are not reported until it is fixed.
   */
  unclosedProblems(text: string, errors: readonly YAMLError[]): { problems: ConfigProblem[]; cut: number } {
    const flagged = new Set(errors.filter((e) => e.code === 'MISSING_CHAR' || e.code === 'BAD_INDENT').map((e) => e.pos[0]));
    if (flagged.size === 0) return { problems: [], cut: Infinity };
    const { open, stray } = unclosedInCst(text);
    const lastStray = new Map<string, number>();
    for (const s of stray) lastStray.set(s.char, Math.max(s.offset, lastStray.get(s.char) ?? -1));
    const index = open.length > 0 ? this.openerIndex() : new Map<string, { path: string; end: number }>();
    const never = new Map<Opener, { path: string; end: number }>();
    for (const o of open) {
      if (o.tainted) continue;
      const at = index.get(`${o.offset}${o.char}`);
      // Only what yaml itself flagged, at the place its composer stopped, is reworded.
      if (!at || !flagged.has(at.end)) continue;
      // A "]" further down that closes nothing: the list was cut short by a line indented too
      // little, which yaml's own error, at that line, already says.
      if ((o.char === '[' || o.char === '{') && (lastStray.get(CLOSER[o.char]) ?? -1) >= at.end) continue;
      never.set(o, at);
    }
    const outer = new Set<Opener>();
    for (const o of never.keys()) for (let p = o.parent; p; p = p.parent) if (never.has(p)) outer.add(p);
    const innermost = [...never].filter(([o]) => !outer.has(o));
    const cut = Math.min(...innermost.map(([, at]) => at.end));
    const problems: ConfigProblem[] = [];
    for (const [o, at] of innermost) {
      let message: string;
      if (o.char === '[' || o.char === '{') {
        const around: Array<{ char: string; line: number; col: number }> = [];
        for (let p = o.parent; p; p = p.parent) if (never.has(p)) around.unshift({ char: p.char, ...this.lines.linePos(p.offset) });
        message = `${o.char === '[' ? 'this "[" is never closed: a flow list needs its "]"' : 'this "{" is never closed: a flow mapping needs its "}"'}${enclosingNote(around)}`;
      } else {
        // The open quote took every closing bracket after it, so the ones around it are not named.
        const q = o.char === '"' ? `'"'` : `"'"`;
        const rest = text.slice(at.end).trim() === '' ? ' (until then the rest of the file is part of the string)' : '';
        message = `this ${q} is never closed: a quoted string needs its closing ${q}${rest}`;
      }
      // Past the first cut yaml misreads the structure, so the path it gives there is no guide.
      problems.push({ file: this.file, ...this.lines.linePos(o.offset), path: o.offset < cut ? at.path : '(yaml)', message });
    }
    return { problems, cut };
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
      case 'type':
        return this.add(path, `must be ${String(p.type).split(',').map((t) => TYPE_WORDS[t] ?? t).join(' or ')}${got}`);
      case 'minProperties': {
        const keys = Object.keys((e.parentSchema as { properties?: object }).properties ?? {});
        return this.add(path, keys.length > 0 ? `needs at least one of: ${keys.join(', ')}` : 'must not be empty');
      }
      case 'minItems':
        return this.add(path, Number(p.limit) === 1 ? 'must not be an empty list' : `must have at least ${String(p.limit)} items`);
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
        if (propertyName !== undefined) return this.add([...path, propertyName], `key ${message}`, true);
        return this.add(path, `${message}${got}`);
      }
      default:
        if (propertyName !== undefined) return this.add([...path, propertyName], `key ${e.message ?? 'is invalid'}`, true);
        return this.add(path, e.message ?? 'is invalid');
    }
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);

/** Why `text` is not an address or CIDR block, for the message. */
function cidrProblem(text: string): string {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const family = isIPv4(address) ? 4 : isIPv6(address) ? 6 : 0;
  if (family === 0) return `${quote(text)} is not an IP address or CIDR block (e.g. 10.0.0.15, 10.1.0.0/16, fd00:8::/64)`;
  if (address.includes('%')) return `${quote(text)}: a zone (%) is not allowed in a source address`;
  return `${quote(text)}: the prefix after "/" must be 0-${family === 4 ? 32 : 128} for IPv${family}`;
}

function duration(ctx: Context, path: PathSeg[], value: unknown, fallback: string): number {
  if (typeof value !== 'string') return parseDuration(fallback)!;
  const ms = parseDuration(value);
  if (ms === null) {
    // The schema already reported a malformed duration; this one is well-formed but too long.
    if (/^[0-9]{1,10}(ms|s|m|h)$/.test(value)) ctx.add(path, `must be at most 24 days (${MAX_TIMER_MS}ms), not ${JSON.stringify(value)}`);
    return parseDuration(fallback)!;
  }
  return ms;
}

function cidrs(ctx: Context, path: PathSeg[], value: unknown): Cidr[] {
  const out: Cidr[] = [];
  const list = asList(value);
  list.forEach((item, i) => {
    if (typeof item !== 'string') return;
    const c = parseCidr(item);
    const p = Array.isArray(value) ? [...path, i] : path;
    if (c) out.push(c);
    else ctx.add(p, cidrProblem(item));
  });
  return out;
}

function readPem(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): string | null {
  if (typeof value !== 'string') return null;
  if (value.includes('-----BEGIN')) return value;
  const file = isAbsolute(value) ? value : join(baseDir, value);
  try {
    // A device or a huge file (/dev/zero, /dev/stdin) would hang or exhaust memory.
    const st = statSync(file);
    if (!st.isFile()) {
      ctx.add(path, `${file} is not a regular file`);
      return null;
    }
    if (st.size > MAX_FILE_BYTES) {
      ctx.add(path, `${file} is larger than ${MAX_FILE_BYTES} bytes: not a PEM file`);
      return null;
    }
    ctx.files.add(file);
    const pem = readFileSync(file, 'utf8');
    // Node ignores a CA file without PEM blocks, which would surface only as a failed handshake.
    if (!pem.includes('-----BEGIN')) {
      ctx.add(path, `${file} holds no PEM block ("-----BEGIN ...")`);
      return null;
    }
    return pem;
  } catch (err) {
    ctx.add(path, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    return null;
  }
}

function upstreamTls(ctx: Context, path: PathSeg[], value: unknown, host: string, baseDir: string): UpstreamTls | null {
  if (value === undefined || value === false) return null;
  const o = isObj(value) ? value : {};
  const servername = typeof o.servername === 'string' ? o.servername : host;
  const tls: UpstreamTls = Object.freeze({
    servername,
    ca: readPem(ctx, [...path, 'ca'], o.ca, baseDir),
    cert: readPem(ctx, [...path, 'cert'], o.cert, baseDir),
    key: readPem(ctx, [...path, 'key'], o.key, baseDir),
    verify: o.verify !== false,
  });
  if ((o.cert === undefined) !== (o.key === undefined)) {
    ctx.add(path, 'cert and key must be given together');
  }
  try {
    createSecureContext({ ca: tls.ca ?? undefined, cert: tls.cert ?? undefined, key: tls.key ?? undefined });
  } catch (err) {
    ctx.add(path, `unusable TLS material: ${(err as Error).message}`);
  }
  return tls;
}

/** OpenSSL's reason without Node's prefix, for a config message. */
function opensslReason(err: unknown): string {
  const e = err as { message?: string; code?: string };
  return `${oneLine(String(e.message ?? err))}${e.code ? ` (${e.code})` : ''}`;
}

/** The certificates of a PEM bundle, or why it is not one. */
function certificatesIn(pem: string): X509Certificate[] | string {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (!blocks) return 'holds no certificate ("-----BEGIN CERTIFICATE-----")';
  try {
    return blocks.map((b) => new X509Certificate(b));
  } catch (err) {
    return `is not a valid certificate: ${opensslReason(err)}`;
  }
}

/** `accept.tls`: the binding's certificate and key (checked to work together), client CAs, ALPN. */
/**
 * A server's `cert` and `key` (files or inline PEM): read, the certificate parsed, and the two
 * checked to work together, or null with the problem at `cert` (OpenSSL's reason included).
 */
function serverPair(ctx: Context, path: PathSeg[], value: Record<string, unknown>, baseDir: string): { cert: string; key: string; notAfter: number } | null {
  const cert = readPem(ctx, [...path, 'cert'], value.cert, baseDir);
  const key = readPem(ctx, [...path, 'key'], value.key, baseDir);
  if (cert === null || key === null) return null;
  const chain = certificatesIn(cert);
  if (typeof chain === 'string') {
    ctx.add([...path, 'cert'], `the certificate ${chain}`);
    return null;
  }
  try {
    createSecureContext({ cert, key, minVersion: 'TLSv1.2' });
  } catch (err) {
    ctx.add([...path, 'cert'], `unusable with its key: ${opensslReason(err)}`);
    return null;
  }
  return { cert, key, notAfter: Date.parse(chain[0].validTo) };
}

function acceptTls(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): AcceptTls | null {
  if (!isObj(value)) return null;
  const pair = serverPair(ctx, path, value, baseDir);
  const clientCa = value.clientCa === undefined ? null : readPem(ctx, [...path, 'clientCa'], value.clientCa, baseDir);
  if (pair === null || (value.clientCa !== undefined && clientCa === null)) return null;
  if (clientCa !== null) {
    const cas = certificatesIn(clientCa);
    if (typeof cas === 'string') {
      ctx.add([...path, 'clientCa'], `the client CA ${cas}`);
      return null;
    }
  }
  if (value.clientCert !== undefined && clientCa === null) ctx.add([...path, 'clientCert'], 'needs clientCa: the CA client certificates are verified against', true);
  const clientCert = clientCa === null ? 'none' : value.clientCert === 'optional' ? 'optional' : 'required';
  const alpn = Array.isArray(value.alpn) ? value.alpn.filter((a): a is string => typeof a === 'string') : [];
  return Object.freeze({ cert: pair.cert, key: pair.key, clientCa, clientCert, alpn: Object.freeze(alpn), notAfter: pair.notAfter });
}

/** `admin.token` bounds: long enough not to be guessed, short enough for one request header. */
const MIN_TOKEN_CHARS = 16;
const MAX_TOKEN_CHARS = 1024;

/**
 * `admin.token`: the string itself, or `{ file }` read without its trailing newline (`echo` and
 * most editors add one; a Kubernetes Secret from `--from-literal` has none). The file is one of
 * the config's files, so editing it reloads. null when absent or unusable (the problem is added).
 */
function adminToken(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): string | null {
  let token: string;
  let where = 'the token';
  if (typeof value === 'string') {
    token = value;
  } else if (isObj(value) && typeof value.file === 'string') {
    const file = isAbsolute(value.file) ? value.file : join(baseDir, value.file);
    const text = readTokenFile(ctx, [...path, 'file'], file);
    if (text === null) return null;
    token = text.replace(/\r?\n$/, '');
    where = `the token in ${file}`;
    if (token.length === 0) {
      ctx.add([...path, 'file'], `${file} is empty: it must hold the token`);
      return null;
    }
    if (token.length < MIN_TOKEN_CHARS || token.length > MAX_TOKEN_CHARS) {
      ctx.add([...path, 'file'], `${where} is ${token.length} characters long; it must have ${MIN_TOKEN_CHARS} to ${MAX_TOKEN_CHARS}`);
      return null;
    }
    path = [...path, 'file'];
  } else {
    return null;
  }
  // The schema bounds an inline token's length; a client sends either kind in a header.
  if (token.length < MIN_TOKEN_CHARS || token.length > MAX_TOKEN_CHARS) return null;
  if (!/^[\x21-\x7e]+$/.test(token)) {
    ctx.add(path, `${where} must be printable ASCII without spaces or line breaks: clients send it in an HTTP header`);
    return null;
  }
  return token;
}

function readTokenFile(ctx: Context, path: PathSeg[], file: string): string | null {
  try {
    const st = statSync(file);
    if (!st.isFile()) {
      ctx.add(path, `${file} is not a regular file`);
      return null;
    }
    ctx.files.add(file);
    // The token plus a line break; anything larger is not a token file (and a device is refused above).
    if (st.size > MAX_TOKEN_CHARS + 2) {
      ctx.add(path, `${file} is ${st.size} bytes: a token has at most ${MAX_TOKEN_CHARS} characters`);
      return null;
    }
    return readFileSync(file, 'utf8');
  } catch (err) {
    ctx.add(path, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    return null;
  }
}

/** `admin.tls`: the endpoint's certificate and key, checked to work together (TLS 1.2 or later). */
function adminTls(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): AdminTls | null {
  if (!isObj(value)) return null;
  const pair = serverPair(ctx, path, value, baseDir);
  return pair ? Object.freeze({ cert: pair.cert, key: pair.key }) : null;
}

function acceptConfig(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): AcceptConfig {
  const o = isObj(value) ? value : {};
  const pp = isObj(o.proxyProtocol) ? o.proxyProtocol : null;
  return Object.freeze({
    tls: acceptTls(ctx, [...path, 'tls'], o.tls, baseDir),
    proxyProtocol: pp ? Object.freeze({ from: Object.freeze(cidrs(ctx, [...path, 'proxyProtocol', 'from'], pp.from)) }) : null,
  });
}

const CERT_FIELDS = ['cn', 'ou', 'o', 'dns', 'uri', 'email'] as const;

function certificateMatches(value: unknown): CertificateMatch[] {
  return asList(value).filter(isObj).map((m) => {
    const field = (k: string): string | null => (typeof m[k] === 'string' ? (m[k] as string) : null);
    return Object.freeze(Object.fromEntries(CERT_FIELDS.map((k) => [k, field(k)])) as unknown as CertificateMatch);
  });
}

function destination(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): Destination | null {
  let host: string;
  let port: number;
  let tls: UpstreamTls | null = null;
  let proxyProtocol: 1 | 2 | null = null;
  if (typeof value === 'string') {
    const hp = parseHostPort(value);
    if (!hp) {
      ctx.add(path, `${quote(value)}: ${hostPortProblem(value) ?? 'not host:port'}`);
      return null;
    }
    ({ host, port } = hp);
  } else if (isObj(value) && typeof value.host === 'string' && typeof value.port === 'number') {
    host = value.host.startsWith('[') && value.host.endsWith(']') ? value.host.slice(1, -1) : value.host;
    port = value.port;
    if (!isHost(host)) {
      ctx.add([...path, 'host'], `${quote(value.host)} is not a host name or IP address`);
      return null;
    }
    tls = upstreamTls(ctx, [...path, 'tls'], value.tls, host, baseDir);
    proxyProtocol = value.proxyProtocol === 'v1' ? 1 : value.proxyProtocol === 'v2' ? 2 : null;
  } else {
    return null;
  }
  return Object.freeze({ host, port, tls, proxyProtocol, label: hostPortLabel(host, port) });
}

function destinations(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): Destination[] {
  if (Array.isArray(value)) {
    return value.map((v, i) => destination(ctx, [...path, i], v, baseDir)).filter((d): d is Destination => d !== null);
  }
  const d = value === undefined ? null : destination(ctx, path, value, baseDir);
  return d ? [d] : [];
}

function bindSpec(ctx: Context, path: PathSeg[], value: unknown, table: InterfaceTable): BindSpec {
  if (value === undefined || value === 'internal') return Object.freeze({ kind: 'internal' });
  if (value === 'all') return Object.freeze({ kind: 'all' });
  // Any other single string was refused by the schema; reporting it again as a list entry would repeat it.
  if (!Array.isArray(value)) return Object.freeze({ kind: 'list', interfaces: Object.freeze([]), addresses: Object.freeze([]) });
  const interfaces: string[] = [];
  const addresses: string[] = [];
  asList(value).forEach((item, i) => {
    if (typeof item !== 'string') return;
    if (item === 'internal' || item === 'all') ctx.add([...path, i], `"${item}" cannot be part of a list: write bind: ${item}`);
    else if (isIP(item)) addresses.push(item);
    else if (table[item]) interfaces.push(item);
    else ctx.add([...path, i], `${quote(item)} is neither an IP address nor an interface of this host (interfaces: ${Object.keys(table).join(', ') || 'none'})`);
  });
  return Object.freeze({ kind: 'list', interfaces: Object.freeze(interfaces), addresses: Object.freeze(addresses) });
}

/** The owner of a listening endpoint that `address:port` would collide with, if any. */
function clashWith(endpoints: ReadonlyMap<string, string>, address: string, port: number): string | undefined {
  for (const [key, owner] of endpoints) {
    const cut = key.lastIndexOf('|');
    const a = key.slice(0, cut);
    if (Number(key.slice(cut + 1)) === port && (a === address || WILDCARDS.has(a) || WILDCARDS.has(address))) {
      return `${owner} on ${a}`;
    }
  }
  return undefined;
}

function normalize(data: unknown, ctx: Context, options: ParseOptions): GatewayConfig | null {
  if (!isObj(data)) return null;
  const baseDir = options.baseDir ?? process.cwd();
  const table = options.interfaces ?? networkInterfaces();
  const defaults = isObj(data.defaults) ? data.defaults : {};
  const tags: Record<string, 'internal' | 'external'> = {};
  if (isObj(data.interfaces)) {
    for (const [k, v] of Object.entries(data.interfaces)) if (v === 'internal' || v === 'external') tags[k] = v;
  }

  let admin: GatewayConfig['admin'] = null;
  const adminListen = isObj(data.admin) && typeof data.admin.listen === 'string' ? data.admin.listen : DEFAULTS.adminListen;
  if (adminListen !== 'off') {
    const hp = parseHostPort(adminListen, 0);
    const problem = hp ? (isIP(hp.host) === 0 && hp.host !== 'localhost' ? `${quote(hp.host)} is not an IP address or localhost` : null) : hostPortProblem(adminListen, 0);
    if (problem) ctx.add(['admin', 'listen'], `${quote(adminListen)}: ${problem} (or "off" to disable)`);
    const o = isObj(data.admin) ? data.admin : {};
    const token = adminToken(ctx, ['admin', 'token'], o.token, baseDir);
    const tls = adminTls(ctx, ['admin', 'tls'], o.tls, baseDir);
    if (!problem) admin = Object.freeze({ ...hp!, ...(token ? { token } : {}), ...(tls ? { tls } : {}) });
  }

  const users: User[] = [];
  const userNames = new Set<string>();
  if (isObj(data.users)) {
    for (const [name, u] of Object.entries(data.users)) {
      userNames.add(name);
      if (isObj(u)) {
        users.push(Object.freeze({
          name,
          sources: Object.freeze(cidrs(ctx, ['users', name, 'sources'], u.sources)),
          certificates: Object.freeze(certificateMatches(u.certificates)),
        }));
      }
    }
  }

  const dConnect = duration(ctx, ['defaults', 'connectTimeout'], defaults.connectTimeout, DEFAULTS.connectTimeout);
  const dIdle = duration(ctx, ['defaults', 'idleTimeout'], defaults.idleTimeout, DEFAULTS.idleTimeout);
  const dMax = typeof defaults.maxConnections === 'number' ? defaults.maxConnections : DEFAULTS.maxConnections;
  const dHandshake = duration(ctx, ['defaults', 'handshakeTimeout'], defaults.handshakeTimeout, DEFAULTS.handshakeTimeout);

  const services: ServiceConfig[] = [];
  const names = new Map<string, number>();
  const endpoints = new Map<string, string>();
  asList(data.services).forEach((s, si) => {
    if (!isObj(s)) return;
    const path: PathSeg[] = ['services', si];
    const name = typeof s.name === 'string' ? s.name : `#${si}`;
    if (typeof s.name === 'string') {
      if (names.has(s.name)) ctx.add([...path, 'name'], `duplicate service name "${s.name}" (first at services[${names.get(s.name)}])`);
      else names.set(s.name, si);
    }
    const port = typeof s.port === 'number' ? s.port : 0;
    const bind = bindSpec(ctx, [...path, 'bind'], s.bind, table);
    const intercept = asList(s.intercept).filter((p): p is number => typeof p === 'number');

    const addresses = resolveBind(bind, tags, table);
    const ports: Array<[number, PathSeg[]]> = [[port, [...path, 'port']], ...intercept.map((p, i): [number, PathSeg[]] => [p, [...path, 'intercept', i]])];
    for (const [p, where] of ports) {
      if (p === 0) continue;
      const clash = addresses.map((a) => clashWith(endpoints, a, p)).find((c) => c !== undefined);
      if (clash) ctx.add(where, `port ${p} is already used by ${clash}`);
      for (const address of addresses) endpoints.set(`${address}|${p}`, `service "${name}"`);
    }

    const accept = acceptConfig(ctx, [...path, 'accept'], s.accept, baseDir);
    const acceptsTls = isObj(s.accept) && s.accept.tls !== undefined;
    const mappings: MappingRule[] = [];
    asList(s.mappings).forEach((m, mi) => {
      if (!isObj(m)) return;
      const mpath: PathSeg[] = [...path, 'mappings', mi];
      const user = typeof m.user === 'string' ? m.user : null;
      if (user !== null && !userNames.has(user)) {
        ctx.add([...mpath, 'user'], `unknown user "${user}" (${userNames.size ? `users defines: ${[...userNames].join(', ')}` : 'no users are defined'})`);
      }
      if (m.sni !== undefined && !acceptsTls) ctx.add([...mpath, 'sni'], 'matches only on a binding that accepts TLS: add accept.tls to the service', true);
      const action = m.action === 'reject' ? 'reject' : 'forward';
      if (action === 'reject' && m.destination !== undefined) ctx.add([...mpath, 'destination'], 'a mapping with action: reject takes no destination', true);
      // An unknown action was reported by the schema; guessing "forward" would add a second, misleading problem.
      const knownAction = m.action === undefined || m.action === 'forward' || m.action === 'reject';
      if (knownAction && action === 'forward' && m.destination === undefined) ctx.add(mpath, 'needs a destination (or action: reject)');
      mappings.push(Object.freeze({
        index: mi,
        user,
        sources: m.source === undefined ? null : Object.freeze(cidrs(ctx, [...mpath, 'source'], m.source)),
        sni: m.sni === undefined ? null : Object.freeze(asList(m.sni).filter((n): n is string => typeof n === 'string').map((n) => n.toLowerCase().replace(/\.$/, ''))),
        action,
        destinations: Object.freeze(destinations(ctx, [...mpath, 'destination'], m.destination, baseDir)),
      }));
    });

    services.push(Object.freeze({
      name,
      port,
      bind,
      intercept: Object.freeze(intercept),
      accept,
      handshakeTimeoutMs: s.handshakeTimeout === undefined ? dHandshake : duration(ctx, [...path, 'handshakeTimeout'], s.handshakeTimeout, DEFAULTS.handshakeTimeout),
      destinations: Object.freeze(destinations(ctx, [...path, 'destination'], s.destination, baseDir)),
      mappings: Object.freeze(mappings),
      connectTimeoutMs: s.connectTimeout === undefined ? dConnect : duration(ctx, [...path, 'connectTimeout'], s.connectTimeout, DEFAULTS.connectTimeout),
      idleTimeoutMs: s.idleTimeout === undefined ? dIdle : duration(ctx, [...path, 'idleTimeout'], s.idleTimeout, DEFAULTS.idleTimeout),
      maxConnections: typeof s.maxConnections === 'number' ? s.maxConnections : dMax,
    }));
  });

  const workers = data.workers === 'auto' ? 'auto' : typeof data.workers === 'number' ? data.workers : 1;
  return Object.freeze({
    file: ctx.file,
    interfaces: Object.freeze(tags),
    admin,
    events: isObj(data.log) && typeof data.log.events === 'string' ? data.log.events : DEFAULTS.events,
    shutdownGraceMs: duration(ctx, ['shutdownGrace'], data.shutdownGrace, DEFAULTS.shutdownGrace),
    interfacePollMs: duration(ctx, ['interfacePoll'], data.interfacePoll, DEFAULTS.interfacePoll),
    files: Object.freeze([...ctx.files].sort()),
    workers,
    users: Object.freeze(users),
    services: Object.freeze(services),
  });
}
