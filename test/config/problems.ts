import { parseConfig, type ParseOptions } from '../../src/config/load';
import { ConfigError, formatProblem } from '../../src/errors';

/** The formatted problems (`file:line:col: path: message`) of an invalid config; fails the test if it parses. */
export function configProblems(yaml: string, file: string, options: ParseOptions = {}): string[] {
  try {
    parseConfig(yaml, file, options);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map(formatProblem);
  }
  throw new Error(`expected a ConfigError for:\n${yaml}`);
}
