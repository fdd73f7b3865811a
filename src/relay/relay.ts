import type { OnReadOpts, Socket } from 'node:net';
import { copyOut, drop, isLanding, landingBuffer, ownedBuffer, readBuffer, readNext, READ_BUFFER_BYTES, recycle, TLS_READ_BYTES } from './read-buffer';

/** Idle progress samples per idle period: the timeout's precision is 1/IDLE_CHECKS of it. */
const IDLE_CHECKS = 8;

/** How a relay ended: which side closed first, an idle timeout, or an abort. */
export type RelayEnd = 'client-closed' | 'upstream-closed' | 'idle-timeout';

export interface RelayResult {
  readonly end: RelayEnd | string;
  /** Code of the error that ended it, if one did (`ECONNRESET`, ...). */
  readonly error: string | null;
}

/** Whoever runs a relay hears, exactly once, how it ended. */
export interface RelayOwner {
  relayDone(result: RelayResult): void;
}

/** Each socket of a relay points at it, so the handlers below can be shared, not per-connection closures. */
const RELAY = Symbol('mapgate.relay');
type RelaySocket = Socket & { [RELAY]?: Relay };

/**
 * Copies bytes both ways between two connected sockets until both are closed.
 *
 * - Backpressure: a chunk whose write returns false pauses the reader until the writer's
 *   'drain', so a slow reader on either side never makes memory grow. (Hand-written rather than
 *   `pipe()`, whose dozen closures and listeners per direction cost time and memory per
 *   connection; the handlers here are module functions shared by every relay.)
 * - Half-close: both sockets have `allowHalfOpen`; a FIN from one side ends the other's
 *   writable side and the opposite direction keeps flowing.
 * - An error on either side destroys both at once; a clean close lets the other side flush
 *   what it still has to write, then closes it (`destroySoon`).
 * - Idle: no byte moving in either direction, on either leg, for `idleTimeoutMs` (0 = never)
 *   destroys both. Progress is sampled from the sockets' byte counters IDLE_CHECKS times per
 *   period, so a timeout fires within idleTimeoutMs × (1 + 1/IDLE_CHECKS) of the last byte, and
 *   the per-chunk path carries no timer work. (Node's socket.setTimeout is not used: it skips
 *   its first expiry while a write is pending, so a peer that vanished mid-write would be kept
 *   for twice the timeout.)
 * - Upstream reads: an upstream dialled with `UPSTREAM_READ` / `UPSTREAM_TLS_READ` (`onread`) is
 *   read into reused buffers and written to the client without a Buffer allocated per chunk;
 *   any other upstream is read through 'data'. Byte counters are the same either way.
 *
 * Knows nothing of config; tells its owner exactly once, when both sockets are closed.
 */
export class Relay {
  private reason: string | null = null;
  private error: string | null = null;
  private open = 2;
  private done = false;
  private moved = 0;
  private lastMoved = 0;
  /** An upstream read buffer that a write queued to the client may still reference; spare again once the queue is empty. */
  held: Buffer | null = null;
  /** The owned buffer the upstream reads into next (null: the landing buffer); given up when the relay ends. */
  reading: Buffer | null = null;

  constructor(
    readonly client: Socket,
    readonly upstream: Socket,
    private readonly idleTimeoutMs: number,
    private readonly owner: RelayOwner,
  ) {
    (client as RelaySocket)[RELAY] = this;
    (upstream as RelaySocket)[RELAY] = this;
    client.on('error', onClientError);
    upstream.on('error', onUpstreamError);
    client.on('end', onClientEnd);
    upstream.on('end', onUpstreamEnd);
    client.on('close', onClientClose);
    upstream.on('close', onUpstreamClose);
    client.on('data', onClientData);
    upstream.on('data', onUpstreamData);
    client.on('drain', onClientDrain);
    upstream.on('drain', onUpstreamDrain);
    if (idleTimeoutMs > 0) {
      this.lastMoved = Date.now();
      IdleSweep.add(this);
    }
    // A TLS client that closed its side right after the handshake has already emitted 'end' (the
    // TLS layer reads on its own, paused or not): forward that FIN now, as the listener would have.
    if (client.readableEnded) onClientEnd.call(client);
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

  /** Records why the relay ends; the first reason wins. */
  settle(reason: string, error: string | null): void {
    if (this.reason === null) {
      this.reason = reason;
      this.error = error;
    }
  }

  get idleMs(): number { return this.idleTimeoutMs; }

  /** Samples progress; ends the relay once nothing has moved for the idle timeout. */
  checkIdle(): void {
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
  }

  /** One socket closed: the other flushes what it still has to write, then closes (a stuck flush times out as idle). */
  socketClosed(other: Socket): void {
    if (!other.destroyed) other.destroySoon();
    if (--this.open > 0 || this.done) return;
    this.done = true;
    if (this.idleTimeoutMs > 0) IdleSweep.delete(this);
    // Both sockets are closed: the buffers they held go to the collector, counted back.
    if (this.reading !== null) drop(this.reading);
    if (this.held !== null) drop(this.held);
    this.reading = this.held = null;
    this.owner.relayDone({ end: this.reason ?? 'client-closed', error: this.error });
  }
}

/**
 * One timer per idle-timeout value, shared by every relay with that timeout, instead of a timer
 * per connection: each tick samples every relay of its group. A group's timer exists only while
 * the group has relays.
 */
const IdleSweep = {
  groups: new Map<number, { relays: Set<Relay>; timer: NodeJS.Timeout }>(),

  add(relay: Relay): void {
    const ms = relay.idleMs;
    let g = this.groups.get(ms);
    if (!g) {
      const relays = new Set<Relay>();
      const timer = setInterval(sweep, Math.max(1, Math.floor(ms / IDLE_CHECKS)), relays);
      // Connections keep the process alive by themselves; the sweep must not.
      timer.unref();
      g = { relays, timer };
      this.groups.set(ms, g);
    }
    g.relays.add(relay);
  },

  delete(relay: Relay): void {
    const g = this.groups.get(relay.idleMs);
    if (!g) return;
    g.relays.delete(relay);
    if (g.relays.size === 0) {
      clearInterval(g.timer);
      this.groups.delete(relay.idleMs);
    }
  },
};

function sweep(relays: Set<Relay>): void {
  for (const relay of relays) relay.checkIdle();
}

function onClientData(this: RelaySocket, chunk: Buffer): void {
  const { upstream } = this[RELAY]!;
  if (!upstream.destroyed && !upstream.write(chunk)) this.pause();
}

function onUpstreamData(this: RelaySocket, chunk: Buffer): void {
  const { client } = this[RELAY]!;
  if (!client.destroyed && !client.write(chunk)) this.pause();
}

/**
 * The upstream's read callback (`onread`): its bytes go to the client without a Buffer allocated
 * per chunk (see read-buffer.ts for which buffer it is safe to read into next). Until a relay
 * reads the socket, or when something else does (FTP's control channel), the bytes are pushed as
 * a copy and the socket is a stream like any other: 'data', pause()/resume(), 'end'.
 *
 * `readBytes` is the most one read delivers: a read of that size says more is waiting.
 */
function relayRead(up: RelaySocket, nread: number, buf: Buffer, readBytes: number): boolean {
  const relay = up[RELAY];
  // Bytes pushed earlier and not yet emitted go first: behind them, push too, so order is kept.
  // An owned buffer is left to the collector here, not recycled: push runs 'data' listeners, and
  // one that writes an empty chunk to a TLS upstream makes Node's TLS layer read (and call us) again.
  if (relay === undefined || up.readableLength > 0) {
    const copy = copyOut(buf, nread);
    if (relay !== undefined && relay.reading === buf) {
      drop(buf);
      relay.reading = null;
    }
    readNext(landingBuffer());
    return up.push(copy);
  }
  const { client } = relay;
  if (client.destroyed) {
    readNext(buf);
    return true;
  }
  const more = nread === readBytes;
  const landing = isLanding(buf);
  const ok = client.write(landing ? copyOut(buf, nread) : nread === buf.length ? buf : buf.subarray(0, nread));
  let next: Buffer;
  if (client.writableLength === 0) {
    // Every write so far has reached the kernel: no buffer of ours is referenced.
    if (relay.held !== null) {
      recycle(relay.held);
      relay.held = null;
    }
    if (more) next = landing ? ownedBuffer(readBytes) : buf;
    else {
      if (!landing) recycle(buf);
      next = landingBuffer();
    }
  } else {
    // Still queued, maybe these very bytes: the buffer is that write's until the queue empties.
    if (!landing) {
      if (relay.held !== null) drop(relay.held);
      relay.held = buf;
    }
    next = more ? ownedBuffer(readBytes) : landingBuffer();
  }
  relay.reading = isLanding(next) ? null : next;
  readNext(next);
  if (!ok) up.pause();
  return true;
}

function onUpstreamRead(this: RelaySocket, nread: number, buf: Buffer): boolean {
  return relayRead(this, nread, buf, READ_BUFFER_BYTES);
}

function onUpstreamTlsRead(this: RelaySocket, nread: number, buf: Buffer): boolean {
  return relayRead(this, nread, buf, TLS_READ_BYTES);
}

/** `onread` for a TCP upstream socket that a relay will read. */
export const UPSTREAM_READ: OnReadOpts = Object.freeze({ buffer: readBuffer, callback: onUpstreamRead as OnReadOpts['callback'] });

/** `onread` for a TLS upstream socket (`tls.connect` without `socket`) that a relay will read. */
export const UPSTREAM_TLS_READ: OnReadOpts = Object.freeze({ buffer: readBuffer, callback: onUpstreamTlsRead as OnReadOpts['callback'] });

function onClientDrain(this: RelaySocket): void {
  const relay = this[RELAY]!;
  if (relay.held !== null && this.writableLength === 0) {
    recycle(relay.held);
    relay.held = null;
  }
  relay.upstream.resume();
}

function onUpstreamDrain(this: RelaySocket): void {
  this[RELAY]!.client.resume();
}

// A FIN is forwarded as a FIN: the other direction keeps flowing (half-close).
function onClientEnd(this: RelaySocket): void {
  const relay = this[RELAY]!;
  relay.settle('client-closed', null);
  if (!relay.upstream.destroyed) relay.upstream.end();
}

function onUpstreamEnd(this: RelaySocket): void {
  const relay = this[RELAY]!;
  relay.settle('upstream-closed', null);
  if (!relay.client.destroyed) relay.client.end();
}

function onClientError(this: RelaySocket, err: NodeJS.ErrnoException): void {
  const relay = this[RELAY]!;
  relay.settle('client-closed', err.code ?? 'EUNKNOWN');
  relay.upstream.destroy();
}

function onUpstreamError(this: RelaySocket, err: NodeJS.ErrnoException): void {
  const relay = this[RELAY]!;
  relay.settle('upstream-closed', err.code ?? 'EUNKNOWN');
  relay.client.destroy();
}

function onClientClose(this: RelaySocket): void {
  const relay = this[RELAY]!;
  relay.settle('client-closed', null);
  relay.socketClosed(relay.upstream);
}

function onUpstreamClose(this: RelaySocket): void {
  const relay = this[RELAY]!;
  relay.settle('upstream-closed', null);
  relay.socketClosed(relay.client);
}
