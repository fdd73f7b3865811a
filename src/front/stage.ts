import type { Socket } from 'node:net';
import type { ClientAddress } from '../config/cidr';
import type { PeerCertificate } from '../route/identify';

/** An address and port, as a connection's context holds them. */
export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/** What a TLS binding learnt from the client's handshake. */
export interface TlsInfo {
  /** The server name the client asked for (SNI), lower case, or null. */
  readonly sni: string | null;
  /** The ALPN protocol negotiated, or null. */
  readonly alpn: string | null;
  /** The client certificate's fields, when it sent one that verified; else null. */
  readonly certificate: PeerCertificate | null;
}

/** Where a SOCKS client asked to be connected. */
export interface SocksTarget {
  /** The name or address as the client sent it (lower case); an IP literal sent as a name is an address. */
  readonly host: string;
  /** The address `host` is, or the one the gateway resolved it to (for a mapping's address blocks); null if unknown. */
  readonly address: ClientAddress | null;
  readonly port: number;
  /** `host:port` (`[v6]:port`), as events and /status show it. */
  readonly label: string;
  /** The SOCKS version the client spoke (4 covers 4a), for the reply. */
  readonly version: 4 | 5;
}

/** What the front stages of one connection fill in, for routing, events, limits and status. */
export interface FrontContext {
  /** The client as the gateway believes it: the socket's peer, or what a trusted PROXY header says. */
  client: Endpoint;
  /**
   * The gateway address the client connected to, when a PROXY header's destination says it; null:
   * the socket's own, read only if something needs it (a PROXY header to the upstream), since
   * reading it is a syscall (getsockname) per connection.
   */
  local: Endpoint | null;
  tls: TlsInfo | null;
  /** SOCKS: the destination the client asked for; null on other services. */
  target: SocksTarget | null;
  /** SOCKS: the user whose password the client gave (checked); null when it logged in as nobody. */
  login: string | null;
}

/** Why a front stage refused a connection: the ClientDisconnect reason and the error code behind it. */
export interface FrontRefusal {
  readonly reason: 'tls-failed' | 'proxy-protocol' | 'socks' | 'auth-failed';
  readonly code: string;
  /** A last reply to write to the client before closing (a SOCKS error reply); absent: the socket is destroyed. */
  readonly reply?: Buffer;
}

/**
 * One job done on a client's connection before it is routed: read a PROXY header, terminate TLS.
 * Built once per service config and shared by its connections. A stage may read the client's
 * bytes (handing back what it over-read with `unshift`), replace the socket (TLS) and fill the
 * context; it calls `done` exactly once, unless the socket is destroyed first (the handshake
 * deadline, the client leaving), after which a late `done` is ignored.
 */
export interface FrontStage {
  /** What the stage does, for the metrics of a handshake that times out in it. */
  readonly kind: 'proxy-protocol' | 'tls' | 'socks';
  run(socket: Socket, ctx: FrontContext, done: (refusal: FrontRefusal | null, socket: Socket) => void): void;
}
