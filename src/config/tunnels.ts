import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { MapgateError } from '../errors';
import type { InterfaceTable } from './bind';
import type { ExtraService } from './load';
import { hostPortLabel, isHost } from './parse-values';

/**
 * `mapgate run -L [tcp|ftp|socks/][listen-address:]listen-port:host:port` (Tectia's one-line
 * local tunnel) as plain service objects, as YAML would give them: the config pipeline (schema,
 * normalize, cross-field checks) validates them together with the file, and a problem in one is
 * reported against its `-L` argument (see `extraServices` in load.ts).
 */

/** The forms `-L` takes, as the usage error shows them. */
export const TUNNEL_FORM = '[tcp|ftp|socks/][listen-address:]listen-port:host:port';
const TCP_EXAMPLE = '-L 8143:imap.corp.example:143';
const SOCKS_FORM = 'socks/[listen-address:]listen-port';
const SOCKS_EXAMPLE = '-L socks/1080';

export type TunnelProtocol = 'tcp' | 'ftp' | 'socks';

/** One parsed `-L` value. */
export interface TunnelSpec {
  readonly protocol: TunnelProtocol;
  /**
   * The listen address as written (IPv6 without brackets; `localhost`: loopback, whatever `-g`
   * says), or null: loopback, or the internal interfaces with `-g`.
   */
  readonly listenAddress: string | null;
  readonly listenPort: number;
  /** `host:port` (IPv6 bracketed) the tunnel forwards to; null for socks. */
  readonly destination: string | null;
}

export interface TunnelOptions {
  /** `-g`: a tunnel without a listen address listens on the internal interfaces, not loopback only. */
  readonly gateway?: boolean;
  /** The host's interfaces, to know whether it has `::1`; default `os.networkInterfaces()`. */
  readonly interfaces?: InterfaceTable;
}

/** A `-L` value that cannot be a tunnel; `mapgate` exits 2 with its message. */
export class TunnelSpecError extends MapgateError {
  constructor(message: string) {
    super('MAPGATE_ERR_TUNNEL_SPEC', message);
  }
}

function fail(value: string, reason: string, socks = false): never {
  const form = socks ? `${SOCKS_FORM} (e.g. ${SOCKS_EXAMPLE})` : `${TUNNEL_FORM} (e.g. ${TCP_EXAMPLE})`;
  throw new TunnelSpecError(`-L ${value}: ${reason}: expected ${form}`);
}

/** Splits at `:` outside `[...]`; a bracketed part keeps its brackets. Null when a bracket is unbalanced. */
function splitParts(text: string): string[] | null {
  const parts: string[] = [];
  let cur = '';
  let inBracket = false;
  for (const ch of text) {
    if (ch === '[') {
      if (inBracket || cur !== '') return null;
      inBracket = true;
    } else if (ch === ']') {
      if (!inBracket) return null;
      inBracket = false;
    } else if (ch === ':' && !inBracket) {
      parts.push(cur);
      cur = '';
      continue;
    } else if (!inBracket && cur.endsWith(']')) {
      return null;
    }
    cur += ch;
  }
  if (inBracket) return null;
  parts.push(cur);
  return parts;
}

function portOf(value: string, text: string, what: string, socks: boolean): number {
  if (text === '') fail(value, `missing ${what}`, socks);
  if (!/^[0-9]+$/.test(text)) fail(value, `${what} "${text}" is not a number`, socks);
  const port = Number(text);
  if (port < 1 || port > 65535) fail(value, `${what} ${text} is out of range (1-65535)`, socks);
  return port;
}

function listenAddressOf(value: string, text: string, socks: boolean): string | null {
  if (text === '') fail(value, 'empty listen address (leave it out, with its ":", for loopback)', socks);
  if (text === 'localhost') return text;
  if (text.startsWith('[')) {
    const inner = text.slice(1, -1);
    if (isIP(inner) !== 6) fail(value, `listen address ${text} is not an IPv6 address`, socks);
    return inner;
  }
  if (isIP(text) !== 4) fail(value, `listen address "${text}" is not an IP address (an IPv6 one in brackets: [::1])`, socks);
  return text;
}

function destinationOf(value: string, host: string, portText: string): string {
  if (host === '') fail(value, 'missing host');
  let bare = host;
  if (host.startsWith('[')) {
    bare = host.slice(1, -1);
    if (isIP(bare) !== 6) fail(value, `${host} is not an IPv6 address`);
  } else if (!isHost(host)) {
    fail(value, `"${host}" is not a host name or IP address`);
  }
  return hostPortLabel(bare, portOf(value, portText, 'port', false));
}

/** Parses one `-L` value. Throws {@link TunnelSpecError} naming what is wrong and the expected form. */
export function parseTunnelSpec(value: string): TunnelSpec {
  let protocol: TunnelProtocol = 'tcp';
  let rest = value;
  const slash = value.indexOf('/');
  if (slash >= 0) {
    const p = value.slice(0, slash);
    if (p.includes(':')) fail(value, '"/" belongs after a protocol only (tcp/, ftp/ or socks/ first)');
    if (p !== 'tcp' && p !== 'ftp' && p !== 'socks') fail(value, `unknown protocol "${p}" (tcp, ftp or socks)`);
    protocol = p;
    rest = value.slice(slash + 1);
  }
  const socks = protocol === 'socks';
  if (rest === '') fail(value, 'missing listen-port', socks);
  const parts = splitParts(rest);
  if (!parts) fail(value, 'unbalanced "[" or "]": write an IPv6 address as [addr]', socks);
  if (socks) {
    if (parts.length > 2) fail(value, 'socks/ takes no host:port: the SOCKS client names its destination', true);
    const address = parts.length === 2 ? parts.shift()! : null;
    const port = parts[0];
    return Object.freeze({
      protocol,
      listenAddress: address === null ? null : listenAddressOf(value, address, true),
      listenPort: portOf(value, port, 'listen-port', true),
      destination: null,
    });
  }
  if (parts.length < 3) fail(value, parts.length === 1 ? 'missing host:port' : 'missing port');
  if (parts.length > 4) fail(value, 'too many ":" (an IPv6 address needs brackets: [::1])');
  const address = parts.length === 4 ? parts.shift()! : null;
  const [listenPort, host, port] = parts;
  return Object.freeze({
    protocol,
    listenAddress: address === null ? null : listenAddressOf(value, address, false),
    listenPort: portOf(value, listenPort, 'listen-port', false),
    destination: destinationOf(value, host, port),
  });
}

function isLoopback(address: string): boolean {
  return address === 'localhost' || address === '::1' || (isIP(address) === 4 && address.startsWith('127.'));
}

/**
 * Where a tunnel without a listen address listens: 127.0.0.1, and ::1 when the host has it
 * (an IPv6-less host would fail to bind it). Named addresses, not the loopback interface: an
 * address an operator added to `lo` (an anycast service address) is not local-only.
 */
function loopbackBind(table: InterfaceTable): string[] {
  const hasV6 = Object.values(table).some((infos) => infos?.some((i) => i.family === 'IPv6' && i.address === '::1'));
  return hasV6 ? ['127.0.0.1', '::1'] : ['127.0.0.1'];
}

/**
 * Parses every `-L` value into services to append to the config's: named `L<port>` (a second
 * tunnel on the same port, on another address, `L<port>-2`), with a `comment` naming the
 * argument. A SOCKS tunnel is `auth: none` with `to: ["*"]` — an open proxy for whoever can
 * reach it — so it listens on loopback only: `-g`, or a listen address other than loopback,
 * is refused. Throws {@link TunnelSpecError}.
 */
export function parseTunnels(values: readonly string[], options: TunnelOptions = {}): ExtraService[] {
  const table = options.interfaces ?? networkInterfaces();
  const names = new Map<number, number>();
  return values.map((value) => {
    const t = parseTunnelSpec(value);
    if (t.protocol === 'socks' && t.listenAddress !== null && !isLoopback(t.listenAddress)) {
      throw new TunnelSpecError(`-L ${value}: a SOCKS tunnel (no login, any destination) listens on loopback only: on ${t.listenAddress} it would be an open proxy. For a SOCKS service other hosts may use, write one in the config file with users or mappings by source`);
    }
    if (t.protocol === 'socks' && t.listenAddress === null && options.gateway) {
      throw new TunnelSpecError(`-L ${value}: -g would make this SOCKS tunnel (no login, any destination) an open proxy for the internal networks; it listens on loopback only. For a SOCKS service other hosts may use, write one in the config file with users or mappings by source`);
    }
    const seen = (names.get(t.listenPort) ?? 0) + 1;
    names.set(t.listenPort, seen);
    const service: Record<string, unknown> = {
      name: seen === 1 ? `L${t.listenPort}` : `L${t.listenPort}-${seen}`,
      comment: `-L ${value}`,
      port: t.listenPort,
      bind: t.listenAddress === 'localhost' || (t.listenAddress === null && !options.gateway) ? loopbackBind(table)
        : t.listenAddress === null ? 'internal' : [t.listenAddress],
    };
    if (t.protocol === 'tcp') service.destination = t.destination;
    if (t.protocol === 'ftp') Object.assign(service, { protocol: 'ftp', destination: t.destination });
    if (t.protocol === 'socks') Object.assign(service, { protocol: 'socks', socks: { auth: 'none' }, mappings: [{ to: ['*'] }] });
    return { spec: `-L ${value}`, service };
  });
}
