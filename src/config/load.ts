import { dirname, join, resolve } from 'node:path';
import type { ValidateFunction } from 'ajv';
import { LineCounter, parseDocument, isScalar } from 'yaml';
import { PACKAGE_ROOT } from '../paths';
import { ConfigError, type ConfigProblem } from '../errors';
import { Context, dedupe, MAX_DEPTH, oneLine, pathText, type PathSeg } from './context';
import { normalize, type NormalizeOptions } from './normalize';
import { readConfigText } from './read';
import type { GatewayConfig } from './types';
import { checkStructure, nestingProblem, unclosedProblems } from './yaml-guards';

/**
 * Config loading: text → YAML (with positions, behind the guards of yaml-guards.ts) → the JSON
 * schema → normalize (frozen, typed). Every problem is collected with its file:line:col and
 * thrown at once as a {@link ConfigError}.
 */

export { DEFAULTS } from './defaults';

/**
 * yaml's own alias limit, a backstop behind checkStructure's (which bounds the expanded size
 * and says where): references to one anchor times the aliases inside it.
 */
const MAX_ALIAS_COUNT = 1000;

export const SCHEMA_PATH = join(PACKAGE_ROOT, 'schema', 'mappings.schema.json');

/** The schema's validator, generated from it by `npm run build` (schema/build-validator.js). */
export const VALIDATOR_PATH = join(PACKAGE_ROOT, 'schema', 'mappings.validate.js');

let validator: ValidateFunction | undefined;

function schemaValidator(): ValidateFunction {
  if (!validator) {
    try {
      // A literal path (VALIDATOR_PATH, from this file's place in src/ or dist/config/), so the
      // bundled dist/cli.js carries the validator inside it.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      validator = require('../../schema/mappings.validate.js') as ValidateFunction;
    } catch (err) {
      throw new Error(`${VALIDATOR_PATH} is missing or broken (npm run build generates it): ${(err as Error).message}`);
    }
  }
  return validator;
}

/**
 * A service that comes from somewhere other than the file (a `mapgate run -L` tunnel), as YAML
 * would give it. `spec` names its origin (`-L 8143:imap.corp.example:143`) in problems.
 */
export interface ExtraService {
  readonly spec: string;
  readonly service: Readonly<Record<string, unknown>>;
}

/** Options for {@link parseConfig} and {@link loadConfigFile}. */
export interface ParseOptions extends NormalizeOptions {
  /**
   * Services appended to the document's `services` before the schema: they are validated with
   * the file's (duplicate names, two services on one address:port). A problem in one is reported
   * against its `spec` with line and col 0, since it has no place in the file.
   */
  extraServices?: readonly ExtraService[];
}

/**
 * A {@link Context} that also knows the services appended after the file's own: a problem at
 * `services[i]` for one of those names its `spec`, not the position of the file's `services`.
 */
class AppendedContext extends Context {
  private first = Infinity;
  private specs: readonly string[] = [];

  /** The document's services end at `first`; `specs` name the ones after it, in order. */
  appended(first: number, specs: readonly string[]): void {
    this.first = first;
    this.specs = specs;
  }

  override add(path: readonly PathSeg[], message: string, key = false): void {
    const i = path[0] === 'services' && typeof path[1] === 'number' ? path[1] - this.first : -1;
    if (i < 0 || i >= this.specs.length) return super.add(path, message, key);
    this.problems.push({ file: this.specs[i], line: 0, col: 0, path: pathText(path.slice(2)), message });
  }
}

/** Reads and parses a config file. Throws {@link ConfigError} listing every problem. */
export function loadConfigFile(file: string, options: ParseOptions = {}): GatewayConfig {
  return parseConfig(readConfigText(file), file, { baseDir: dirname(resolve(file)), ...options });
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
  const ctx = new AppendedContext(file, doc, lineCounter, problems);
  const fail = (): never => {
    problems.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigError(dedupe(problems));
  };

  if (doc.errors.length > 0) {
    const unclosed = unclosedProblems(ctx, text, doc.errors);
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

  const extra = options.extraServices ?? [];
  // Appended only to a list: any other `services` is the file's own problem, which the schema reports.
  if (extra.length > 0 && data !== null && typeof data === 'object' && Array.isArray((data as { services?: unknown }).services)) {
    const services = (data as { services: unknown[] }).services;
    ctx.appended(services.length, extra.map((e) => e.spec));
    services.push(...extra.map((e) => structuredClone(e.service)));
  }

  const validate = schemaValidator();
  if (!validate(data)) for (const e of validate.errors ?? []) ctx.schemaProblem(e, data);

  const config = normalize(data, ctx, options);
  if (problems.length > 0 || !config) fail();
  return config!;
}
