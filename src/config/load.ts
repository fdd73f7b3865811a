import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import { networkInterfaces } from 'node:os';
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { LineCounter, parseDocument, isMap, isPair, isScalar, type Document, type Node as YamlNode } from 'yaml';
import { ConfigError, type ConfigProblem } from '../errors';
import { parseCidr, type Cidr } from '../route/cidr';
import { resolveBind, WILDCARDS, type InterfaceTable } from '../listen/interfaces';
import { hostPortLabel, isHost, parseDuration, parseHostPort } from './parse-values';
import type { BindSpec, Destination, GatewayConfig, MappingRule, ServiceConfig, UpstreamTls, User } from './types';

export const DEFAULTS = Object.freeze({
  adminListen: '127.0.0.1:9464',
  events: 'stdout',
  connectTimeout: '5s',
  idleTimeout: '30m',
  maxConnections: 256,
  shutdownGrace: '10s',
});

/** Aliases beyond this many are refused: a "billion laughs" document cannot expand. */
const MAX_ALIAS_COUNT = 100;
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
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${seg}` : seg;
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
  let text: string;
  try {
    const buf = readFileSync(file);
    if (buf.length > MAX_FILE_BYTES) {
      throw new ConfigError([{ file, line: 1, col: 1, path: '(root)', message: `file is larger than ${MAX_FILE_BYTES} bytes` }]);
    }
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const e = err as NodeJS.ErrnoException;
    const message = e.code ? `cannot read file: ${e.code}` : 'file is not valid UTF-8';
    throw new ConfigError([{ file, line: 1, col: 1, path: '(root)', message }]);
  }
  return parseConfig(text, file, { baseDir: dirname(resolve(file)), ...options });
}

/** Parses config text. Throws {@link ConfigError} listing every problem with its line and column. */
export function parseConfig(text: string, file = '<inline>', options: ParseOptions = {}): GatewayConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, strict: true });
  const problems: ConfigProblem[] = [];
  const at = (offset: number): { line: number; col: number } => lineCounter.linePos(offset);

  if (doc.errors.length > 0) {
    for (const e of doc.errors) problems.push({ file, ...at(e.pos[0]), path: '(yaml)', message: oneLine(e.message) });
    throw new ConfigError(problems);
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    problems.push({ file, line: 1, col: 1, path: '(yaml)', message: oneLine((err as Error).message) });
    throw new ConfigError(problems);
  }

  const ctx = new Context(file, doc, lineCounter, problems);
  const validate = schemaValidator();
  if (!validate(data)) for (const e of validate.errors ?? []) ctx.schemaProblem(e);

  const config = normalize(data, ctx, options);
  if (problems.length > 0 || !config) {
    problems.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigError(dedupe(problems));
  }
  return config;
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

/** Where a problem is and how to word it. */
class Context {
  constructor(
    readonly file: string,
    readonly doc: Document,
    readonly lines: LineCounter,
    readonly problems: ConfigProblem[],
  ) {}

  /** Position of the node at `path`, or of its nearest existing ancestor. */
  position(path: readonly PathSeg[], key = false): { line: number; col: number } {
    for (let n = path.length; n >= 0; n--) {
      const parent = n > 0 ? this.doc.getIn(path.slice(0, n - 1), true) : undefined;
      if (key && n === path.length && isMap(parent)) {
        const pair = parent.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(path[n - 1]));
        const k = pair?.key as YamlNode | undefined;
        if (k?.range) return this.lines.linePos(k.range[0]);
      }
      const node = n === 0 ? this.doc.contents : (this.doc.getIn(path.slice(0, n), true) as YamlNode | undefined);
      if (node && (node as YamlNode).range) return this.lines.linePos((node as YamlNode).range![0]);
    }
    return { line: 1, col: 1 };
  }

  add(path: readonly PathSeg[], message: string, key = false): void {
    this.problems.push({ file: this.file, ...this.position(path, key), path: pathText(path), message });
  }

  schemaProblem(e: ErrorObject): void {
    const path: PathSeg[] = e.instancePath
      .split('/')
      .slice(1)
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
      .map((s) => (/^[0-9]+$/.test(s) ? Number(s) : s));
    const propertyName = (e as ErrorObject & { propertyName?: string }).propertyName;
    switch (e.keyword) {
      case 'additionalProperties': {
        const name = String((e.params as { additionalProperty: string }).additionalProperty);
        const allowed = Object.keys((e.parentSchema as { properties?: object }).properties ?? {});
        return this.add([...path, name], allowed.length ? `unknown key (expected one of: ${allowed.join(', ')})` : 'unknown key', true);
      }
      case 'required':
        return this.add(path, `missing required key "${(e.params as { missingProperty: string }).missingProperty}"`);
      case 'enum':
        return this.add(path, `must be one of: ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`);
      case 'type':
        return this.add(path, `must be ${String((e.params as { type: string | string[] }).type).split(',').join(' or ')}`);
      case 'propertyNames':
        return;
      case 'pattern': {
        const ref = Object.keys(PATTERN_HINTS).find((k) => e.schemaPath.includes(`/definitions/${k}/`));
        let message = ref ? PATTERN_HINTS[ref] : `must match ${String((e.params as { pattern: string }).pattern)}`;
        if (e.schemaPath.includes('/bind/')) message = 'must be "internal", "all" or a list of interface names and addresses';
        if (e.schemaPath.includes('/workers/')) message = 'must be a number or "auto"';
        if (propertyName !== undefined) return this.add([...path, propertyName], `key ${message}`, true);
        return this.add(path, message);
      }
      default:
        if (propertyName !== undefined) return this.add([...path, propertyName], `key ${e.message ?? 'is invalid'}`, true);
        return this.add(path, e.message ?? 'is invalid');
    }
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);

function duration(ctx: Context, path: PathSeg[], value: unknown, fallback: string): number {
  if (typeof value !== 'string') return parseDuration(fallback)!;
  const ms = parseDuration(value);
  if (ms === null) {
    // The schema already reported a malformed duration; this one is well-formed but too long.
    if (/^[0-9]{1,10}(ms|s|m|h)$/.test(value)) ctx.add(path, 'must be at most 24 days');
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
    else ctx.add(p, `"${item}" is not an IP address or CIDR block`);
  });
  return out;
}

function readPem(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): string | null {
  if (typeof value !== 'string') return null;
  if (value.includes('-----BEGIN')) return value;
  const file = isAbsolute(value) ? value : join(baseDir, value);
  try {
    return readFileSync(file, 'utf8');
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

function destination(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): Destination | null {
  let host: string;
  let port: number;
  let tls: UpstreamTls | null = null;
  if (typeof value === 'string') {
    const hp = parseHostPort(value);
    if (!hp) {
      ctx.add(path, `"${value}" is not host:port (IPv6 as [addr]:port, port 1-65535)`);
      return null;
    }
    ({ host, port } = hp);
  } else if (isObj(value) && typeof value.host === 'string' && typeof value.port === 'number') {
    host = value.host.startsWith('[') && value.host.endsWith(']') ? value.host.slice(1, -1) : value.host;
    port = value.port;
    if (!isHost(host)) {
      ctx.add([...path, 'host'], `"${value.host}" is not a host name or IP address`);
      return null;
    }
    tls = upstreamTls(ctx, [...path, 'tls'], value.tls, host, baseDir);
  } else {
    return null;
  }
  return Object.freeze({ host, port, tls, label: hostPortLabel(host, port) });
}

function destinations(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): Destination[] {
  if (Array.isArray(value)) {
    return value.map((v, i) => destination(ctx, [...path, i], v, baseDir)).filter((d): d is Destination => d !== null);
  }
  const d = value === undefined ? null : destination(ctx, path, value, baseDir);
  return d ? [d] : [];
}

function bindSpec(ctx: Context, path: PathSeg[], value: unknown, table: InterfaceTable): BindSpec {
  if (value === undefined || value === 'internal') return { kind: 'internal' };
  if (value === 'all') return { kind: 'all' };
  const interfaces: string[] = [];
  const addresses: string[] = [];
  asList(value).forEach((item, i) => {
    if (typeof item !== 'string') return;
    if (item === 'internal' || item === 'all') ctx.add([...path, i], `"${item}" cannot be part of a list`);
    else if (isIP(item)) addresses.push(item);
    else if (table[item]) interfaces.push(item);
    else ctx.add([...path, i], `"${item}" is neither an IP address nor an interface of this host`);
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
    if (!hp || isIP(hp.host) === 0 && hp.host !== 'localhost') ctx.add(['admin', 'listen'], `"${adminListen}" is not address:port or "off"`);
    else admin = Object.freeze(hp);
  }

  const users: User[] = [];
  const userNames = new Set<string>();
  if (isObj(data.users)) {
    for (const [name, u] of Object.entries(data.users)) {
      userNames.add(name);
      if (isObj(u)) users.push(Object.freeze({ name, sources: Object.freeze(cidrs(ctx, ['users', name, 'sources'], u.sources)) }));
    }
  }

  const dConnect = duration(ctx, ['defaults', 'connectTimeout'], defaults.connectTimeout, DEFAULTS.connectTimeout);
  const dIdle = duration(ctx, ['defaults', 'idleTimeout'], defaults.idleTimeout, DEFAULTS.idleTimeout);
  const dMax = typeof defaults.maxConnections === 'number' ? defaults.maxConnections : DEFAULTS.maxConnections;

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

    const mappings: MappingRule[] = [];
    asList(s.mappings).forEach((m, mi) => {
      if (!isObj(m)) return;
      const mpath: PathSeg[] = [...path, 'mappings', mi];
      const user = typeof m.user === 'string' ? m.user : null;
      if (user !== null && !userNames.has(user)) ctx.add([...mpath, 'user'], `unknown user "${user}" (not in users)`);
      const action = m.action === 'reject' ? 'reject' : 'forward';
      if (action === 'reject' && m.destination !== undefined) ctx.add([...mpath, 'destination'], 'a reject mapping takes no destination');
      if (action === 'forward' && m.destination === undefined) ctx.add(mpath, 'needs a destination, or action: reject');
      mappings.push(Object.freeze({
        index: mi,
        user,
        sources: m.source === undefined ? null : Object.freeze(cidrs(ctx, [...mpath, 'source'], m.source)),
        action,
        destinations: Object.freeze(destinations(ctx, [...mpath, 'destination'], m.destination, baseDir)),
      }));
    });

    services.push(Object.freeze({
      name,
      port,
      bind,
      intercept: Object.freeze(intercept),
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
    workers,
    users: Object.freeze(users),
    services: Object.freeze(services),
  });
}
