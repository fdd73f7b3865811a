import type { Cidr } from '../route/cidr';

/** TLS settings of an upstream leg, with PEM material already read. */
export interface UpstreamTls {
  /** SNI and the name the certificate must carry. */
  readonly servername: string;
  readonly ca: string | null;
  readonly cert: string | null;
  readonly key: string | null;
  /** false only when the mapping says `verify: false`. */
  readonly verify: boolean;
}

export interface Destination {
  readonly host: string;
  readonly port: number;
  readonly tls: UpstreamTls | null;
  /** `host:port` (`[v6]:port`), as events and logs show it. */
  readonly label: string;
}

export interface User {
  readonly name: string;
  readonly sources: readonly Cidr[];
}

export interface MappingRule {
  /** Position in the service's `mappings`, for logs. */
  readonly index: number;
  readonly user: string | null;
  readonly sources: readonly Cidr[] | null;
  readonly action: 'forward' | 'reject';
  /** Candidates tried in order; empty when `action` is `reject`. */
  readonly destinations: readonly Destination[];
}

/** `internal`, `all`, or a list of interface names and literal addresses. */
export type BindSpec =
  | { readonly kind: 'internal' }
  | { readonly kind: 'all' }
  | { readonly kind: 'list'; readonly interfaces: readonly string[]; readonly addresses: readonly string[] };

export interface ServiceConfig {
  readonly name: string;
  readonly port: number;
  readonly bind: BindSpec;
  readonly intercept: readonly number[];
  /** The default mapping; empty means no default (unmatched clients get `no-route`). */
  readonly destinations: readonly Destination[];
  readonly mappings: readonly MappingRule[];
  readonly connectTimeoutMs: number;
  /** 0 disables the idle timeout. */
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
}

export interface GatewayConfig {
  /** The file this came from, for messages; `<inline>` for configs built in code. */
  readonly file: string;
  readonly interfaces: Readonly<Record<string, 'internal' | 'external'>>;
  /** null when `admin.listen: off`. */
  readonly admin: { readonly host: string; readonly port: number } | null;
  /** `stdout`, `stderr`, `off` or a file path. */
  readonly events: string;
  readonly shutdownGraceMs: number;
  readonly workers: number | 'auto';
  readonly users: readonly User[];
  readonly services: readonly ServiceConfig[];
}
