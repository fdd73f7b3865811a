import type { Socket } from 'node:net';
import type { ServiceConfig } from '../config/types';
import type { DisconnectReason } from '../events/events';
import type { FrontContext } from '../front/stage';
import type { RelayOwner } from '../relay/relay';

/** A running relay, whichever protocol runs it: the connection can only end it. */
export interface Relaying {
  abort(reason: string): void;
}

/** The connection, as a protocol's own relay sees it. */
export interface ProtocolOwner extends RelayOwner {
  /** The connection's id, for logs. */
  readonly id: string;
  /**
   * Adds bytes a side channel of the connection moved (an FTP data channel) to its totals: its
   * ClientDisconnect and the service's byte metrics count them with the control connection's.
   */
  countSideBytes(fromClient: number, toClient: number): void;
}

/**
 * What a protocol adds to the plain TCP pipeline (see DESIGN.md: after-dial hooks, a relay that
 * reads the stream). Chosen by the service's `protocol`, built once per service config; plain TCP
 * has none, and keeps the hand-written fast path.
 */
export interface ProtocolHandler {
  /**
   * The upstream is connected and relaying starts right after this returns: a protocol may
   * answer the client first (SOCKS's success reply).
   */
  connected?(client: Socket, upstream: Socket, ctx: FrontContext | null): void;
  /**
   * The connection is refused or its upstream could not be reached: the protocol gives the client
   * its last word (SOCKS's error reply), then closes the socket itself (flushing that reply first,
   * and destroying it within a bounded time). Without this hook the socket is destroyed.
   */
  refused?(client: Socket, reason: DisconnectReason, error: string | null, ctx: FrontContext | null): void;
  /** Runs the connection instead of the plain relay (FTP's control channel, with its data channels). */
  relay?(client: Socket, upstream: Socket, config: ServiceConfig, owner: ProtocolOwner): Relaying;
}

/** How long a socket ended with a last reply may take to flush it before it is destroyed. */
const END_FLUSH_MS = 2000;

function destroyLater(this: Socket): void {
  this.destroy();
}

/**
 * Writes a last reply and closes the socket gracefully (FIN after the reply, so the client reads
 * it rather than a reset); destroyed anyway after a short while if the peer does not read.
 */
export function endWith(socket: Socket, reply: Buffer): void {
  socket.end(reply);
  // Whatever the client still sends is read and dropped: unread bytes would turn our close into a reset.
  socket.resume();
  const timer = setTimeout(destroyLater.bind(socket), END_FLUSH_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
