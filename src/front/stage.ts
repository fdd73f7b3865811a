import type { Socket } from 'node:net';
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

/** What the front stages of one connection fill in, for routing, events, limits and status. */
export interface FrontContext {
  /** The client as the gateway believes it: the socket's peer, or what a trusted PROXY header says. */
  client: Endpoint;
  /** The gateway address the client connected to (a PROXY header's destination, when it gives one). */
  local: Endpoint;
  tls: TlsInfo | null;
}

/** Why a front stage refused a connection: the ClientDisconnect reason and the error code behind it. */
export interface FrontRefusal {
  readonly reason: 'tls-failed' | 'proxy-protocol';
  readonly code: string;
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
  readonly kind: 'proxy-protocol' | 'tls';
  run(socket: Socket, ctx: FrontContext, done: (refusal: FrontRefusal | null, socket: Socket) => void): void;
}
