import type * as net from 'node:net';
import { connect, readUntilClose } from './net';

/** SOCKS5 greeting offering `methods` (0x00 none, 0x02 username/password). */
export function greeting(...methods: number[]): Buffer {
  return Buffer.from([5, methods.length, ...methods]);
}

/** RFC 1929 username/password message. */
export function login(user: string, password: string): Buffer {
  const u = Buffer.from(user);
  const p = Buffer.from(password);
  return Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]);
}

function port16(port: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(port);
  return b;
}

/** SOCKS5 request for a dotted IPv4 address (`cmd` 1 CONNECT, 2 BIND, 3 UDP ASSOCIATE). */
export function request4(ip: string, port: number, cmd = 1): Buffer {
  return Buffer.concat([Buffer.from([5, cmd, 0, 1, ...ip.split('.').map(Number)]), port16(port)]);
}

/** SOCKS5 request for an IPv6 address given as 16 bytes. */
export function request6(bytes: number[], port: number, cmd = 1): Buffer {
  return Buffer.concat([Buffer.from([5, cmd, 0, 4, ...bytes]), port16(port)]);
}

/** SOCKS5 request for a domain name (ATYP 3). */
export function requestName(name: string | Buffer, port: number, cmd = 1): Buffer {
  const n = Buffer.from(name);
  return Buffer.concat([Buffer.from([5, cmd, 0, 3, n.length]), n, port16(port)]);
}

/** SOCKS4 CONNECT to a dotted IPv4 address, with a user id. */
export function socks4(ip: string, port: number, user = 'u', cmd = 1): Buffer {
  return Buffer.concat([Buffer.from([4, cmd]), port16(port), Buffer.from(ip.split('.').map(Number)), Buffer.from(user), Buffer.from([0])]);
}

/** SOCKS4a CONNECT to a host name (DSTIP 0.0.0.1). */
export function socks4a(host: string | Buffer, port: number, user = 'u'): Buffer {
  return Buffer.concat([socks4('0.0.0.1', port, user), Buffer.from(host), Buffer.from([0])]);
}

/** The SOCKS5 success/error reply's fields. */
export function parseReply5(b: Buffer): { rep: number; atyp: number; length: number } {
  return { rep: b[1], atyp: b[3], length: b.length };
}

/**
 * Connects (from `localAddress` if given), sends `data` (one write, or one per item
 * with `gapMs` between), then collects everything until the gateway closes the socket.
 * `end`: half-close after sending (default true). `ms`: from connected to closed.
 */
export async function exchange(port: number, data: Buffer | Buffer[], options: { localAddress?: string; end?: boolean; gapMs?: number } = {}): Promise<{ data: Buffer; error: string | null; ms: number }> {
  // Binding a source address costs a port search per connection (about 3 ms in gVisor): only when asked.
  const s = await connect(port, '127.0.0.1', (options.localAddress ? { localAddress: options.localAddress } : {}) as net.NetConnectOpts);
  const started = Date.now();
  s.setNoDelay(true);
  const result = readUntilClose(s);
  const parts = Array.isArray(data) ? data : [data];
  for (let i = 0; i < parts.length; i++) {
    if (i > 0 && options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs));
    if (!s.destroyed) s.write(parts[i]);
  }
  if (options.end !== false && !s.destroyed) s.end();
  const r = await result;
  return { ...r, ms: Date.now() - started };
}

/** Resolves once `n` bytes arrived on `s` (those bytes; the rest stays for the next call). */
export function readBytes(s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      if (got.length < n) return;
      s.off('data', onData);
      s.off('close', onClose);
      s.pause();
      if (got.length > n) s.unshift(got.subarray(n));
      resolve(got.subarray(0, n));
    };
    const onClose = (): void => reject(new Error(`closed after ${got.length} of ${n} bytes: ${got.toString('hex')}`));
    s.on('data', onData);
    s.once('close', onClose);
    s.resume();
  });
}
