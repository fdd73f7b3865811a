import { isIPv4, isIPv6 } from 'node:net';
import { ipv4Text, ipv6Text, ipv6Words, isMapped } from '../config/cidr';

/**
 * The PROXY protocol header, versions 1 and 2 (HAProxy's `doc/proxy-protocol.txt`): parsing what
 * a trusted load balancer sends in front of a connection, and writing it in front of an upstream
 * connection. Pure functions over buffers; the front stage and the dialer do the I/O.
 */

/** An address:port as the header carries it. */
export interface HeaderAddress {
  readonly address: string;
  readonly port: number;
}

export interface ProxyHeader {
  readonly version: 1 | 2;
  /**
   * `proxy`: the header names the original connection. `local`: v2 LOCAL (health checks) or v1
   * `UNKNOWN`, or an address family the gateway does not route by (AF_UNIX, AF_UNSPEC): the
   * socket's own address stays the client.
   */
  readonly command: 'proxy' | 'local';
  readonly source: HeaderAddress | null;
  readonly destination: HeaderAddress | null;
}

export type ParseResult =
  | { readonly state: 'more' }
  | { readonly state: 'invalid'; readonly why: string }
  | { readonly state: 'done'; readonly header: ProxyHeader; readonly length: number };

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** The v2 signature: `\r\n\r\n\0\r\nQUIT\n`. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** A v1 line is at most 107 bytes, CRLF included. */
export const V1_MAX = 107;
const V2_FIXED = 16;

const MORE: ParseResult = { state: 'more' };

/** Whether `buf` (possibly incomplete) can still be the beginning of `prefix`. */
function startsLike(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return buf.subarray(0, n).equals(prefix.subarray(0, n));
}

/**
 * Parses a PROXY header at the start of `buf`. `more`: not whole yet (read on); `invalid`: this
 * is not a header, or a malformed one (never guessed at: close the connection); `done`: the
 * header, and how many bytes of `buf` it took (the rest is the client's data).
 */
export function parseProxyHeader(buf: Buffer): ParseResult {
  if (buf.length === 0) return MORE;
  if (startsLike(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? MORE : parseV1(buf);
  if (startsLike(buf, V2_SIGNATURE)) return buf.length < V2_FIXED ? MORE : parseV2(buf);
  return { state: 'invalid', why: 'no PROXY protocol header' };
}

function parseV1(buf: Buffer): ParseResult {
  const end = buf.subarray(0, V1_MAX).indexOf('\r\n', 0, 'latin1');
  if (end < 0) return buf.length >= V1_MAX ? { state: 'invalid', why: `v1 header longer than ${V1_MAX} bytes` } : MORE;
  const fields = buf.subarray(V1_PREFIX.length, end).toString('latin1').split(' ');
  const length = end + 2;
  if (fields[0] === 'UNKNOWN') return { state: 'done', header: { version: 1, command: 'local', source: null, destination: null }, length };
  if (fields.length !== 5 || (fields[0] !== 'TCP4' && fields[0] !== 'TCP6')) return { state: 'invalid', why: 'malformed v1 header' };
  const isFamily = fields[0] === 'TCP4' ? isIPv4 : isIPv6;
  const [, src, dst, sport, dport] = fields;
  const ports = [sport, dport].map(v1Port);
  if (!isFamily(src) || !isFamily(dst) || ports.includes(null)) return { state: 'invalid', why: 'malformed v1 header' };
  return { state: 'done', header: { version: 1, command: 'proxy', source: { address: src, port: ports[0]! }, destination: { address: dst, port: ports[1]! } }, length };
}

/** A v1 port: decimal, no sign, no leading zero, 0–65535. */
function v1Port(text: string): number | null {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text)) return null;
  const n = Number(text);
  return n <= 65535 ? n : null;
}

function parseV2(buf: Buffer): ParseResult {
  const verCmd = buf[12];
  if (verCmd >> 4 !== 2) return { state: 'invalid', why: `v2 header with version ${verCmd >> 4}` };
  const command = verCmd & 0x0f;
  if (command > 1) return { state: 'invalid', why: `v2 header with command ${command}` };
  const family = buf[13] >> 4;
  const transport = buf[13] & 0x0f;
  const len = buf.readUInt16BE(14);
  const length = V2_FIXED + len;
  if (buf.length < length) return MORE;
  // LOCAL (health checks), AF_UNSPEC, AF_UNIX: the socket's own address stays the client. Any
  // TLVs after the addresses are skipped by the length.
  const local: ParseResult = { state: 'done', header: { version: 2, command: 'local', source: null, destination: null }, length };
  if (command === 0 || family === 0 || family === 3) return local;
  if (transport !== 1) return { state: 'invalid', why: 'v2 header for a datagram or unknown transport' };
  const body = buf.subarray(V2_FIXED, length);
  if (family === 1) {
    if (len < 12) return { state: 'invalid', why: 'v2 header too short for IPv4 addresses' };
    return done2(length, ipv4(body, 0), ipv4(body, 4), body.readUInt16BE(8), body.readUInt16BE(10));
  }
  if (family === 2) {
    if (len < 36) return { state: 'invalid', why: 'v2 header too short for IPv6 addresses' };
    return done2(length, ipv6(body, 0), ipv6(body, 16), body.readUInt16BE(32), body.readUInt16BE(34));
  }
  return { state: 'invalid', why: `v2 header with address family ${family}` };
}

function done2(length: number, src: string, dst: string, sport: number, dport: number): ParseResult {
  return { state: 'done', header: { version: 2, command: 'proxy', source: { address: src, port: sport }, destination: { address: dst, port: dport } }, length };
}

function ipv4(b: Buffer, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

function ipv6(b: Buffer, at: number): string {
  const words = [b.readUInt32BE(at), b.readUInt32BE(at + 4), b.readUInt32BE(at + 8), b.readUInt32BE(at + 12)];
  // Spelled the way Node prints socket addresses, so `::ffff:10.0.0.1` and `::1` read as usual.
  return isMapped(words) ? `::ffff:${ipv4Text(words[3])}` : ipv6Text(words);
}

/**
 * The header to send in front of an upstream connection: `source` is the client as the gateway
 * believes it, `destination` the gateway address it connected to. Mixed families (an IPv4 client
 * of an IPv6 listener) are sent as IPv6, IPv4-mapped, as HAProxy does.
 */
export function encodeProxyHeader(version: 1 | 2, source: HeaderAddress, destination: HeaderAddress): Buffer {
  // A link-local address's zone (`fe80::1%eth0`) means nothing to the receiver: neither format has room for it.
  let src = stripZone(source.address);
  let dst = stripZone(destination.address);
  const v4 = isIPv4(src) && isIPv4(dst);
  if (!v4) {
    if (isIPv4(src)) src = `::ffff:${src}`;
    if (isIPv4(dst)) dst = `::ffff:${dst}`;
  }
  if (!(v4 || (isIPv6(src) && isIPv6(dst)))) {
    return version === 1 ? Buffer.from('PROXY UNKNOWN\r\n', 'latin1') : Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  }
  if (version === 1) {
    return Buffer.from(`PROXY ${v4 ? 'TCP4' : 'TCP6'} ${src} ${dst} ${source.port} ${destination.port}\r\n`, 'latin1');
  }
  const addrLen = v4 ? 12 : 36;
  const out = Buffer.alloc(V2_FIXED + addrLen);
  V2_SIGNATURE.copy(out, 0);
  out[12] = 0x21;
  out[13] = v4 ? 0x11 : 0x21;
  out.writeUInt16BE(addrLen, 14);
  if (v4) {
    writeIpv4(out, 16, src);
    writeIpv4(out, 20, dst);
    out.writeUInt16BE(source.port, 24);
    out.writeUInt16BE(destination.port, 26);
  } else {
    writeIpv6(out, 16, src);
    writeIpv6(out, 32, dst);
    out.writeUInt16BE(source.port, 48);
    out.writeUInt16BE(destination.port, 50);
  }
  return out;
}

function stripZone(a: string): string {
  const pct = a.indexOf('%');
  return pct < 0 ? a : a.slice(0, pct);
}

function writeIpv4(out: Buffer, at: number, address: string): void {
  address.split('.').forEach((p, i) => { out[at + i] = Number(p); });
}

function writeIpv6(out: Buffer, at: number, address: string): void {
  ipv6Words(address).forEach((w, i) => out.writeUInt32BE(w, at + 4 * i));
}
