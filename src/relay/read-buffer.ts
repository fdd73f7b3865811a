/**
 * Read buffers for upstream sockets read with `onread` (`net.connect`, `tls.connect`): Node reads
 * into a buffer we hand it instead of allocating a Buffer per chunk.
 *
 * Node asks for the buffer of a socket's *next* read right after the callback of the previous one
 * returns (and once when the handle is created), not when that read happens: an idle socket holds
 * the buffer it was given until data arrives, maybe hours later. So a buffer that several sockets
 * hold must never be referenced by a pending write once a callback has returned, and a buffer a
 * pending write references must be held by no socket. Hence two kinds:
 *
 * - the landing buffer, one per process, held by every socket that waits for data: what is read
 *   into it is copied out before the callback returns, so an idle connection costs no buffer;
 * - owned buffers, each held by one socket at a time, once a read filled what one read can
 *   deliver (more is waiting and the next read follows at once): written from without a copy, and
 *   read into again only if the writer's queue was empty after the write, i.e. nothing still
 *   references them. Back to a small spare list when the socket goes idle again.
 *
 * The read callback tells the buffer function what to hand out (`readNext`): Node calls the two
 * back to back (lib/internal/stream_base_commons.js, onStreamRead), with no other JavaScript between.
 */

/** What one TCP read delivers at most, as Node's own reads: 64 KiB. Size of the landing buffer. */
export const READ_BUFFER_BYTES = 64 * 1024;

/** What one TLS read delivers at most: Node's TLS layer hands over one 16 KiB record per callback. */
export const TLS_READ_BYTES = 16 * 1024;

/** Free owned buffers kept per size for reuse: at most 8 × (64 + 16) KiB per process. */
const SPARE_MAX = 8;

/**
 * Owned buffers out at once, process-wide. A socket whose last read filled its buffer and then
 * went quiet (a burst of exactly 64 KiB to an echo service) keeps its owned buffer until its next
 * read: without a bound, enough such connections would hold 64 KiB each. At the bound, reads go
 * to the landing buffer and are copied, as without onread: at most 16 MiB held, whatever the
 * connections do.
 */
export const MAX_LENT = 256;
let lent = 0;

const landing = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
const spare = new Map<number, Buffer[]>([[READ_BUFFER_BYTES, []], [TLS_READ_BYTES, []]]);
let next: Buffer = landing;

/** True for the process's landing buffer: what was read into it must be copied out now. */
export function isLanding(buf: Uint8Array): boolean {
  return buf === landing;
}

/** The landing buffer, for a socket that waits for data. */
export function landingBuffer(): Buffer {
  return landing;
}

/** A buffer of `bytes` for one socket alone (a spare one, or a new one); the landing buffer when {@link MAX_LENT} are out. */
export function ownedBuffer(bytes: number): Buffer {
  if (lent >= MAX_LENT) return landing;
  lent++;
  return spare.get(bytes)?.pop() ?? Buffer.allocUnsafeSlow(bytes);
}

/** Gives back an owned buffer that nothing references any more. */
export function recycle(buf: Buffer): void {
  lent--;
  const list = spare.get(buf.length);
  if (list !== undefined && list.length < SPARE_MAX) list.push(buf);
}

/** Gives up an owned buffer to the garbage collector: something may still reference it (a write, a pushed chunk). */
export function drop(buf: Buffer): void {
  if (buf !== landing) lent--;
}

/** Owned buffers out now (held by sockets or by pending writes). */
export function lentBuffers(): number {
  return lent;
}

/** Called last by the read callback: the buffer Node reads into next on that socket. */
export function readNext(buf: Buffer): void {
  next = buf;
}

/** The `onread.buffer` function: what the callback chose, else (a new handle) the landing buffer. */
export function readBuffer(): Buffer {
  const buf = next;
  next = landing;
  return buf;
}

/** Copies the first `n` bytes of `buf` into a Buffer of their own. */
export function copyOut(buf: Uint8Array, n: number): Buffer {
  const copy = Buffer.allocUnsafe(n);
  copy.set(n === buf.length ? buf : buf.subarray(0, n));
  return copy;
}
