import type { Socket } from 'node:net';
import { parseClientAddress, type ClientAddress } from '../config/cidr';
import type { ServiceConfig } from '../config/types';
import type { DisconnectReason } from '../events/events';
import type { FrontContext } from '../front/stage';
import { endWith, type ProtocolHandler } from './protocol';

/** SOCKS5 reply codes (RFC 1928 §6). */
export const REP = Object.freeze({
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05,
  TTL_EXPIRED: 0x06,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
});

/** SOCKS4 reply codes: the request granted, or rejected or failed (the one code there is for every failure). */
export const SOCKS4_GRANTED = 0x5a;
export const SOCKS4_REJECTED = 0x5b;

/**
 * A SOCKS5 reply: `VER REP RSV ATYP BND.ADDR BND.PORT`, with the bound address as IPv4 (ATYP 1,
 * 4 bytes) or IPv6 (ATYP 4, 16 bytes); none: IPv4 zeros, the 10-byte reply every client reads.
 */
export function socks5Reply(code: number, bound: ClientAddress | null = null, port = 0): Buffer {
  const v6 = bound !== null && bound.family === 6;
  // From Node's pool (one per connection, on the success path): cheaper than a zeroed buffer of its own.
  const b = Buffer.allocUnsafe(v6 ? 22 : 10).fill(0);
  b[0] = 5;
  b[1] = code;
  b[3] = v6 ? 4 : 1;
  if (bound !== null) for (let i = 0; i < bound.words.length; i++) b.writeUInt32BE(bound.words[i], 4 + 4 * i);
  b.writeUInt16BE(port, v6 ? 20 : 8);
  return b;
}

/** A SOCKS4 reply: `VN=0 CD DSTPORT DSTIP`; an IPv6 (or no) bound address goes as zeros, which SOCKS4 has no room for. */
export function socks4Reply(code: number, bound: ClientAddress | null = null, port = 0): Buffer {
  const b = Buffer.alloc(8);
  b[1] = code;
  if (bound !== null && bound.family === 4) {
    b.writeUInt16BE(port, 2);
    b.writeUInt32BE(bound.words[0], 4);
  }
  return b;
}

/** Error codes of a dial that never reached the host (no address for the name, no route to it). */
const HOST_UNREACHABLE = new Set(['EHOSTUNREACH', 'EHOSTDOWN', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EAI_NODATA', 'EAI_FAIL']);

/** The SOCKS5 reply code that says why a connection was refused or its dial failed. */
export function socks5ReplyCode(reason: DisconnectReason, error: string | null): number {
  switch (reason) {
    case 'rejected':
    case 'no-route':
    case 'limit':
      return REP.NOT_ALLOWED;
    case 'connect-timeout':
      return REP.TTL_EXPIRED;
    case 'connect-failed':
      if (error === 'ECONNREFUSED') return REP.CONNECTION_REFUSED;
      if (error === 'ENETUNREACH') return REP.NETWORK_UNREACHABLE;
      // The kernel's own SYN retries ran out before our connectTimeout: a timeout all the same.
      if (error === 'ETIMEDOUT') return REP.TTL_EXPIRED;
      if (error !== null && HOST_UNREACHABLE.has(error)) return REP.HOST_UNREACHABLE;
      return REP.GENERAL_FAILURE;
    default:
      return REP.GENERAL_FAILURE;
  }
}

/** The address and port the gateway's upstream socket is bound to: what a success reply names. */
function boundOf(upstream: Socket): { address: ClientAddress | null; port: number } {
  const text = upstream.localAddress;
  return { address: text === undefined ? null : parseClientAddress(text), port: upstream.localPort ?? 0 };
}

function onConnected(client: Socket, upstream: Socket, ctx: FrontContext | null): void {
  const target = ctx?.target;
  if (!target) return;
  const bound = boundOf(upstream);
  client.write(target.version === 5 ? socks5Reply(REP.SUCCEEDED, bound.address, bound.port) : socks4Reply(SOCKS4_GRANTED, bound.address, bound.port));
}

function onRefused(client: Socket, reason: DisconnectReason, error: string | null, ctx: FrontContext | null): void {
  const target = ctx?.target;
  // The handshake did not finish (a limit met at accept): the client is owed no reply.
  if (!target) {
    client.destroy();
    return;
  }
  endWith(client, target.version === 5 ? socks5Reply(socks5ReplyCode(reason, error)) : socks4Reply(SOCKS4_REJECTED));
}

const HANDLER: ProtocolHandler = Object.freeze({ connected: onConnected, refused: onRefused });

/**
 * What a `protocol: socks` service adds after its handshake stage (`SocksHandshake`): the reply
 * to the client's request once the upstream is connected (SOCKS5 `0x00` or SOCKS4 `0x5A`, naming
 * the gateway's bound address), or the error reply before the close: `0x02` refused by the
 * mappings or a limit, `0x05` refused by the host, `0x04` host unreachable (no address, no route
 * to it), `0x03` network unreachable, `0x06` connect timeout, `0x01` anything else; SOCKS4 has
 * only `0x5B`. The relay is the plain one. Shared by every config: it keeps no state.
 */
export function socksProtocol(_config: ServiceConfig): ProtocolHandler {
  return HANDLER;
}
