/**
 * Every error mapgate raises: one base class with a stable `code`, and coded subclasses.
 * Callers branch on `code` or `instanceof`, never on a message.
 */
export class MapgateError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** One problem in a config file, located at `file:line:col`. */
export interface ConfigProblem {
  file: string;
  line: number;
  col: number;
  /** Dotted path into the document, e.g. `services[0].port`; `(root)` for the document itself. */
  path: string;
  message: string;
}

export function formatProblem(p: ConfigProblem): string {
  // Line 0: a problem of a `-L` tunnel, which has no place in a file: named by its argument.
  if (p.line === 0) return `${p.file}: ${p.message}`;
  return `${p.file}:${p.line}:${p.col}: ${p.path}: ${p.message}`;
}

/** A config file that cannot be used. Carries every problem found, not just the first. */
export class ConfigError extends MapgateError {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super('MAPGATE_ERR_CONFIG', problems.map(formatProblem).join('\n'));
    this.problems = problems;
  }
  get file(): string { return this.problems[0]?.file ?? ''; }
  get line(): number { return this.problems[0]?.line ?? 0; }
  get col(): number { return this.problems[0]?.col ?? 0; }
  get path(): string { return this.problems[0]?.path ?? ''; }
}

/** One line per problem: a config error's `file:line:col` lines, else the error's message. */
export function problemLines(err: Error): string[] {
  return err instanceof ConfigError ? err.problems.map(formatProblem) : [err.message];
}

/** The answer to a refused reload (`POST /reload`, `mapgate reload`). */
export function refusedReloadMessage(problems: readonly string[]): string {
  return `reload refused; the running config stays in force:\n${problems.join('\n')}`;
}

/** A listener that could not bind. Names the service, address and port. */
export class BindError extends MapgateError {
  readonly service: string;
  readonly address: string;
  readonly port: number;
  /** The system's error code (`EADDRINUSE`, `EADDRNOTAVAIL`, ...), or null. */
  readonly systemCode: string | null;
  constructor(service: string, address: string, port: number, cause: NodeJS.ErrnoException) {
    const where = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
    super('MAPGATE_ERR_BIND',
      `service "${service}": cannot listen on ${where}: ${cause.code ?? 'error'} (${cause.message})`,
      { cause });
    this.service = service;
    this.address = address;
    this.port = port;
    this.systemCode = cause.code ?? null;
  }
}

export class ConnectTimeoutError extends MapgateError {
  constructor(destination: string, ms: number) {
    super('MAPGATE_ERR_CONNECT_TIMEOUT', `connect to ${destination} timed out after ${ms} ms`);
  }
}

export class IdleTimeoutError extends MapgateError {
  constructor(ms: number) {
    super('MAPGATE_ERR_IDLE_TIMEOUT', `no traffic for ${ms} ms`);
  }
}
