import type { Socket } from 'node:net';

/** Idle progress samples per idle period: the timeout's precision is 1/IDLE_CHECKS of it. */
const IDLE_CHECKS = 8;

/** How a relay ended: which side closed first, an idle timeout, or an abort. */
export type RelayEnd = 'client-closed' | 'upstream-closed' | 'idle-timeout';

export interface RelayResult {
  readonly end: RelayEnd | string;
  /** Code of the error that ended it, if one did (`ECONNRESET`, ...). */
  readonly error: string | null;
}

/**
 * Copies bytes both ways between two connected sockets until both are closed.
 *
 * - Backpressure: a chunk whose write returns false pauses the reader until the writer's
 *   'drain', so a slow reader on either side never makes memory grow. (Hand-written rather than
 *   `pipe()`: four handlers per relay instead of pipe's dozen closures per direction.)
 * - Half-close: both sockets have `allowHalfOpen`; a FIN from one side ends the other's
 *   writable side and the opposite direction keeps flowing.
 * - An error on either side destroys both at once; a clean close lets the other side flush
 *   what it still has to write, then closes it (`destroySoon`).
 * - Idle: no byte in either direction for `idleTimeoutMs` (0 = never) destroys both. Every
 *   byte crosses the client socket, so its timer alone sees all traffic.
 *
 * Knows nothing of config; calls `onDone` exactly once, when both sockets are closed.
 */
export class Relay {
  private reason: string | null = null;
  private error: string | null = null;
  private open = 2;
  private done = false;
  private idleTimer: NodeJS.Timeout | null = null;
  private moved = 0;
  private lastMoved = 0;

  constructor(
    readonly client: Socket,
    readonly upstream: Socket,
    private readonly idleTimeoutMs: number,
    private readonly onDone: (result: RelayResult) => void,
  ) {
    client.on('error', this.onClientError);
    upstream.on('error', this.onUpstreamError);
    client.once('end', this.onClientEnd);
    upstream.once('end', this.onUpstreamEnd);
    client.once('close', this.onClientClose);
    upstream.once('close', this.onUpstreamClose);
    if (idleTimeoutMs > 0) {
      this.lastMoved = Date.now();
      this.idleTimer = setInterval(this.onIdleCheck, Math.max(1, Math.floor(idleTimeoutMs / IDLE_CHECKS)));
    }
    client.on('data', this.onClientData);
    upstream.on('data', this.onUpstreamData);
    client.on('drain', this.onClientDrain);
    upstream.on('drain', this.onUpstreamDrain);
    client.resume();
  }

  /** Ends the relay now, both sockets destroyed, with `reason`. */
  abort(reason: string): void {
    // The gateway's decision is the reason, even after one side had half-closed.
    if (!this.done && !this.client.destroyed) {
      this.reason = reason;
      this.error = null;
    }
    this.client.destroy();
    this.upstream.destroy();
  }

  private settle(reason: string, error: string | null): void {
    if (this.reason === null) {
      this.reason = reason;
      this.error = error;
    }
  }

  private readonly onClientData = (chunk: Buffer): void => {
    const upstream = this.upstream;
    if (!upstream.destroyed && !upstream.write(chunk)) this.client.pause();
  };
  private readonly onUpstreamData = (chunk: Buffer): void => {
    const client = this.client;
    if (!client.destroyed && !client.write(chunk)) this.upstream.pause();
  };
  private readonly onClientDrain = (): void => { this.upstream.resume(); };
  private readonly onUpstreamDrain = (): void => { this.client.resume(); };

  // A FIN is forwarded as a FIN: the other direction keeps flowing (half-close).
  private readonly onClientEnd = (): void => {
    this.settle('client-closed', null);
    if (!this.upstream.destroyed) this.upstream.end();
  };
  private readonly onUpstreamEnd = (): void => {
    this.settle('upstream-closed', null);
    if (!this.client.destroyed) this.client.end();
  };

  private readonly onClientError = (err: NodeJS.ErrnoException): void => {
    this.settle('client-closed', err.code ?? 'EUNKNOWN');
    this.upstream.destroy();
  };

  private readonly onUpstreamError = (err: NodeJS.ErrnoException): void => {
    this.settle('upstream-closed', err.code ?? 'EUNKNOWN');
    this.client.destroy();
  };

  private readonly onIdleCheck = (): void => {
    const { client, upstream } = this;
    // Bytes taken from each socket, and bytes each socket handed to the kernel.
    const moved = client.bytesRead + upstream.bytesRead
      + client.bytesWritten - client.writableLength + upstream.bytesWritten - upstream.writableLength;
    const now = Date.now();
    if (moved !== this.moved) {
      this.moved = moved;
      this.lastMoved = now;
    } else if (now - this.lastMoved >= this.idleTimeoutMs) {
      this.abort('idle-timeout');
    }
  };

  private readonly onClientClose = (): void => {
    this.settle('client-closed', null);
    this.finishSoon(this.upstream);
    this.closed();
  };

  private readonly onUpstreamClose = (): void => {
    this.settle('upstream-closed', null);
    this.finishSoon(this.client);
    this.closed();
  };

  /** The peer is gone: flush what `socket` still has to write, then close it; a stuck flush times out (idle). */
  private finishSoon(socket: Socket): void {
    if (!socket.destroyed) socket.destroySoon();
  }

  private closed(): void {
    if (--this.open > 0 || this.done) return;
    this.done = true;
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.onDone({ end: this.reason ?? 'client-closed', error: this.error });
  }
}
