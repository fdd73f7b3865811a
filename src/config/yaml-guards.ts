import { LineCounter, Parser, isAlias, isMap, isNode, isScalar, isSeq, type Node as YamlNode, type YAMLError } from 'yaml';
import type { ConfigProblem } from '../errors';
import { MAX_DEPTH, pathText, type Context, type PathSeg } from './context';

/**
 * Guards between the text and yaml's composer: absurd nesting, alias bombs, keys that are not
 * names, and brackets or quotes that are never closed, each refused with its position. All
 * iterative, so no input can exhaust the stack.
 */

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
export function nestingProblem(text: string): { line: number; col: number } | null {
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
export function checkStructure(ctx: Context): void {
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

/**
 * Every flow collection (`[`, `{`) and quoted scalar (`"`, `'`) of the document, keyed by
 * its start offset and that character, with its path and where yaml's composer stopped
 * reading it (`range[1]`: for an unclosed one, where yaml's error about it is). Iterative
 * and linear, like checkStructure.
 */
function openerIndex(ctx: Context): Map<string, { path: string; end: number }> {
  type F = { node: unknown; parent: F | null; seg: PathSeg | null; named: boolean };
  const found = new Map<string, { frame: F; end: number }>();
  const stack: F[] = [{ node: ctx.doc.contents, parent: null, seg: null, named: true }];
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
export function unclosedProblems(ctx: Context, text: string, errors: readonly YAMLError[]): { problems: ConfigProblem[]; cut: number } {
  const flagged = new Set(errors.filter((e) => e.code === 'MISSING_CHAR' || e.code === 'BAD_INDENT').map((e) => e.pos[0]));
  if (flagged.size === 0) return { problems: [], cut: Infinity };
  const { open, stray } = unclosedInCst(text);
  const lastStray = new Map<string, number>();
  for (const s of stray) lastStray.set(s.char, Math.max(s.offset, lastStray.get(s.char) ?? -1));
  const index = open.length > 0 ? openerIndex(ctx) : new Map<string, { path: string; end: number }>();
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
      for (let p = o.parent; p; p = p.parent) if (never.has(p)) around.unshift({ char: p.char, ...ctx.lines.linePos(p.offset) });
      message = `${o.char === '[' ? 'this "[" is never closed: a flow list needs its "]"' : 'this "{" is never closed: a flow mapping needs its "}"'}${enclosingNote(around)}`;
    } else {
      // The open quote took every closing bracket after it, so the ones around it are not named.
      const q = o.char === '"' ? `'"'` : `"'"`;
      const rest = text.slice(at.end).trim() === '' ? ' (until then the rest of the file is part of the string)' : '';
      message = `this ${q} is never closed: a quoted string needs its closing ${q}${rest}`;
    }
    // Past the first cut yaml misreads the structure, so the path it gives there is no guide.
    problems.push({ file: ctx.file, ...ctx.lines.linePos(o.offset), path: o.offset < cut ? at.path : '(yaml)', message });
  }
  return { problems, cut };
}
