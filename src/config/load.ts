import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import Ajv, { type ValidateFunction } from 'ajv';
import { LineCounter, parseDocument, isScalar } from 'yaml';
import { ConfigError, type ConfigProblem } from '../errors';
import { Context, dedupe, MAX_DEPTH, oneLine } from './context';
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

export const SCHEMA_PATH = join(__dirname, '..', '..', 'schema', 'mappings.schema.json');

let validator: ValidateFunction | undefined;

function schemaValidator(): ValidateFunction {
  if (!validator) {
    const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, verbose: true });
    validator = ajv.compile(JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')));
  }
  return validator;
}

/** Options for {@link parseConfig} and {@link loadConfigFile}. */
export type ParseOptions = NormalizeOptions;

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
  const ctx = new Context(file, doc, lineCounter, problems);
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

  const validate = schemaValidator();
  if (!validate(data)) for (const e of validate.errors ?? []) ctx.schemaProblem(e, data);

  const config = normalize(data, ctx, options);
  if (problems.length > 0 || !config) fail();
  return config!;
}
