import type { Cidr } from './cidr';

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
  /** Send a PROXY protocol header (v1 or v2) first, naming the client as the gateway believes it. */
  readonly proxyProtocol: 1 | 2 | null;
  /** `host:port` (`[v6]:port`), as events and logs show it. */
  readonly label: string;
}

/**
 * Fields a verified client certificate must all carry for the entry to match (ghostunnel's
 * `--allow-cn`, `--allow-ou`, ...): each exact, case-sensitive; null means "any".
 */
export interface CertificateMatch {
  readonly cn: string | null;
  readonly ou: string | null;
  readonly o: string | null;
  /** Subject alternative names. */
  readonly dns: string | null;
  readonly uri: string | null;
  readonly email: string | null;
}

export interface User {
  readonly name: string;
  readonly sources: readonly Cidr[];
  /** MAC addresses (lower case, `aa:bb:cc:dd:ee:ff`) the client's IPv4 address resolves to in the kernel's neighbour table. */
  readonly macs: readonly string[];
  /** A salted scrypt hash as `mapgate passwd` prints it (`scrypt:…`), for SOCKS logins; null: none. */
  readonly password: string | null;
  /** Alternatives: a verified client certificate matching any one makes the client this user. */
  readonly certificates: readonly CertificateMatch[];
}

/** TLS on a binding: the gateway terminates the client's TLS. PEM material already read. */
export interface AcceptTls {
  readonly cert: string;
  readonly key: string;
  /** CA bundle client certificates are verified against; null: no client certificates asked for. */
  readonly clientCa: string | null;
  /** `required`: a client without a valid certificate is refused; `optional`: one without any is let in. */
  readonly clientCert: 'required' | 'optional' | 'none';
  /** ALPN protocols offered, in order of preference; empty: no ALPN. */
  readonly alpn: readonly string[];
  /** The certificate's notAfter, in ms since the epoch. */
  readonly notAfter: number;
}

/** What a binding accepts in front of the client's own bytes. */
export interface AcceptConfig {
  readonly tls: AcceptTls | null;
  /** Load balancers allowed to send a PROXY header; null: no header expected. */
  readonly proxyProtocol: { readonly from: readonly Cidr[] } | null;
}

/**
 * One window of a schedule, in its zone's wall-clock time: it opens on each of `days` at `from`
 * and closes at `to` the same day, or the next day when `to` is not after `from`.
 */
export interface ScheduleWindow {
  /** Days it opens on: 0 = Sunday … 6 = Saturday. */
  readonly days: readonly number[];
  /** Minutes after 00:00 (0–1439). */
  readonly from: number;
  /** Minutes after 00:00 (1–1440; 1440 is the end of the day); at or before `from`: on the next day. */
  readonly to: number;
}

/** `schedules.NAME`: when mappings that name it match. */
export interface Schedule {
  readonly name: string;
  /** IANA zone name (`Europe/Berlin`), checked to exist. */
  readonly timezone: string;
  readonly windows: readonly ScheduleWindow[];
}

/** New connections per client address: `count` per `perMs`, as a token bucket of `count` tokens. */
export interface RateLimit {
  readonly count: number;
  readonly perMs: number;
  /** As written (`20/s`), for messages and /status. */
  readonly text: string;
}

/** What one client may take of a service; null: no such limit. */
export interface Limits {
  /** Open connections per client address (as the gateway believes it). */
  readonly perSource: number | null;
  /** Open connections per identified user. */
  readonly perUser: number | null;
  readonly rate: RateLimit | null;
}

/**
 * A destination a SOCKS client may ask for (a mapping's `to`): a host pattern (`*`, `*.corp.example`,
 * `db.corp.example`) or an address block, and a port (null: any).
 */
export interface TargetPattern {
  /** `*` (any), `*.suffix` (one or more labels under it) or an exact name, lower case; null when `cidr` is given. */
  readonly host: string | null;
  /** An address block; it also matches a name the gateway resolved into it. */
  readonly cidr: Cidr | null;
  readonly port: number | null;
  /** As written, for messages and /status. */
  readonly text: string;
}

/** The protocol a service speaks with its clients. */
export type ServiceProtocol = 'tcp' | 'ftp' | 'socks';

/** `ftp:` of a `protocol: ftp` service: its data channels. */
export interface FtpSettings {
  /** Ports the gateway listens on for data connections; null: any free port. */
  readonly passivePorts: { readonly from: number; readonly to: number } | null;
  /** Let a PASV reply name another host than the server's own address (servers behind NAT). */
  readonly allowForeignPassive: boolean;
  /** A data listener nobody connected to closes after this. */
  readonly dataTimeoutMs: number;
  /** Data channels (listening or open) one control connection may have at once. */
  readonly maxDataChannels: number;
}

/** `socks:` of a `protocol: socks` service. */
export interface SocksSettings {
  /** `password`: SOCKS5 username/password (RFC 1929) against users' `password`; `none`: no login. */
  readonly auth: 'password' | 'none';
}

export interface MappingRule {
  /** Position in the service's `mappings`, for logs. */
  readonly index: number;
  readonly user: string | null;
  readonly sources: readonly Cidr[] | null;
  /** TLS server names (SNI) this rule matches, lower case; `*.example.com` matches one label. */
  readonly sni: readonly string[] | null;
  /** Matches only while this schedule is open; null: always. */
  readonly schedule: Schedule | null;
  /** Open connections it routed close (reason `schedule`) when its schedule closes. */
  readonly endAtClose: boolean;
  /** SOCKS: the requested destinations it matches; null on other services. */
  readonly to: readonly TargetPattern[] | null;
  readonly action: 'forward' | 'reject';
  /** Candidates tried in order; empty when `action` is `reject`, and on a SOCKS mapping that forwards where the client asked. */
  readonly destinations: readonly Destination[];
}

/** `internal`, `all`, or a list of interface names and literal addresses. */
export type BindSpec =
  | { readonly kind: 'internal' }
  | { readonly kind: 'all' }
  | { readonly kind: 'list'; readonly interfaces: readonly string[]; readonly addresses: readonly string[] };

export interface ServiceConfig {
  readonly name: string;
  /** Operators' tags: shown and filtered by, never in metrics' labels but `mapgate_service_info`'s. */
  readonly tags: readonly string[];
  /** Operators' free text; null when none. */
  readonly comment: string | null;
  readonly protocol: ServiceProtocol;
  /**
   * `port: auto`: the gateway picks the port (the same on every address) and keeps it across
   * reloads; `port` is 0 until it has (see listen/auto-ports.ts), then that port.
   */
  readonly autoPort: boolean;
  /** Set when `protocol` is `ftp`. */
  readonly ftp: FtpSettings | null;
  /** Set when `protocol` is `socks`. */
  readonly socks: SocksSettings | null;
  readonly port: number;
  readonly bind: BindSpec;
  readonly intercept: readonly number[];
  readonly accept: AcceptConfig;
  /** Every front stage of a connection together (PROXY header, TLS handshake) must finish within this. */
  readonly handshakeTimeoutMs: number;
  /** The default mapping; empty means no default (unmatched clients get `no-route`). */
  readonly destinations: readonly Destination[];
  readonly mappings: readonly MappingRule[];
  readonly connectTimeoutMs: number;
  /** 0 disables the idle timeout. */
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  readonly limits: Limits;
}

/** The admin endpoint's HTTPS material, PEM already read (checked to work together). */
export interface AdminTls {
  readonly cert: string;
  readonly key: string;
}

/** `admin`: where the endpoint listens and how it is protected. */
export interface AdminConfig {
  readonly host: string;
  readonly port: number;
  /**
   * The bearer token every path but `/healthz` and `/readyz` requires (inline, or read from
   * `token: { file }` without its trailing newline); absent: no token asked for.
   */
  readonly token?: string;
  /** Serve HTTPS with this certificate; absent: plain HTTP. */
  readonly tls?: AdminTls;
}

export interface GatewayConfig {
  /** The file this came from, for messages; `<inline>` for configs built in code. */
  readonly file: string;
  readonly interfaces: Readonly<Record<string, 'internal' | 'external'>>;
  /** null when `admin.listen: off`. */
  readonly admin: AdminConfig | null;
  /** `stdout`, `stderr`, `off` or a file path. */
  readonly events: string;
  readonly shutdownGraceMs: number;
  /** How often interface addresses are re-read (ms); 0: only on reload. */
  readonly interfacePollMs: number;
  /** Other files the config read (TLS certificates, keys, CAs, the admin token), absolute: a change to one reloads. */
  readonly files: readonly string[];
  readonly workers: number | 'auto';
  readonly users: readonly User[];
  /** By name; mappings hold the one they name. */
  readonly schedules: Readonly<Record<string, Schedule>>;
  readonly services: readonly ServiceConfig[];
}
