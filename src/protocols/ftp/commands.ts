import { isIPv4, isIPv6 } from 'node:net';
import { canonicalAddress } from '../../config/cidr';
import { lineText } from './lines';

/**
 * The FTP grammar the gateway needs, as pure functions: command verbs (RFC 959), reply codes and
 * multi-line replies (RFC 959 §4.2), the addresses of PORT and 227 (RFC 959), EPRT and 229
 * (RFC 2428). Parsers return null for anything malformed; nothing here touches a socket.
 */

/** The data-channel checks compare addresses in one spelling. */
export { canonicalAddress };

/** Whether two addresses are the same host (`::ffff:10.0.0.1` is `10.0.0.1`; IPv6 spellings compared canonically). */
export function sameAddress(a: string | undefined, b: string | undefined): boolean {
  const x = canonicalAddress(a);
  return x !== null && x === canonicalAddress(b);
}

/** A command line: its verb in upper case and its argument, as latin1 text. */
export interface Command {
  readonly verb: string;
  readonly arg: string;
}

const IAC = 0xff;
const DM = 0xf2;

/**
 * The verb and argument of a client's line. Telnet sequences before the verb are skipped: clients
 * send `IAC IP IAC DM` ahead of ABOR (RFC 959 §4.1.3), the DM possibly as urgent data that the
 * socket drops, leaving the rest in line.
 */
export function parseCommand(line: Buffer): Command {
  let text = lineText(line);
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === IAC && i + 1 < text.length) i += 2;
    else if (c === DM || c === IAC) i++;
    else break;
  }
  if (i > 0) text = text.slice(i);
  const sp = text.indexOf(' ');
  return sp < 0 ? { verb: text.toUpperCase(), arg: '' } : { verb: text.slice(0, sp).toUpperCase(), arg: text.slice(sp + 1) };
}

/**
 * Follows a server's replies line by line. A reply is one line `ddd text`, or a multi-line one
 * from `ddd-text` to the next line that starts with the same `ddd ` (lines in between are text,
 * whatever they start with): only that last line carries a 227's or 229's address.
 */
export class ReplyReader {
  private open: string | null = null;

  /** Whether the last line read left a multi-line reply open. */
  get inside(): boolean { return this.open !== null; }

  /** The reply code when `text` ends a reply, else null (a first or continuation line, or no reply at all). */
  final(text: string): string | null {
    const code = replyCode(text);
    if (this.open !== null) {
      if (code !== this.open || text.charCodeAt(3) === 0x2d) return null;
      this.open = null;
      return code;
    }
    if (code === null) return null;
    if (text.charCodeAt(3) === 0x2d) {
      this.open = code;
      return null;
    }
    return code;
  }
}

/** `ddd` when a line starts with three digits followed by a space, a hyphen or nothing; else null. */
function replyCode(text: string): string | null {
  if (!/^[1-5]\d\d(?:[ -]|$)/.test(text)) return null;
  return text.slice(0, 3);
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Where a host-port sits in a line, so that it can be replaced and the rest of the text kept. */
export interface Found<T> {
  readonly value: T;
  readonly start: number;
  readonly end: number;
}

function octets(parts: readonly string[]): number[] | null {
  const n = parts.map(Number);
  return n.every((x) => x <= 255) ? n : null;
}

/** `h1,h2,h3,h4,p1,p2` (PORT's argument and the numbers of a 227) as an IPv4 host and a port. */
function hostPortOf(n: readonly number[]): HostPort {
  return { host: `${n[0]}.${n[1]}.${n[2]}.${n[3]}`, port: n[4] * 256 + n[5] };
}

/** PORT's argument, `h1,h2,h3,h4,p1,p2`; null if malformed. */
export function parsePortArg(arg: string): HostPort | null {
  const m = /^\s*(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})\s*$/.exec(arg);
  const n = m && octets(m.slice(1));
  return n ? hostPortOf(n) : null;
}

/** `h1,h2,h3,h4,p1,p2` for an IPv4 address and a port (PORT's argument, a 227's numbers). */
export function formatHostPort(host: string, port: number): string {
  return `${host.split('.').join(',')},${port >> 8},${port & 0xff}`;
}

/**
 * The address of a 227 reply: the first `h1,h2,h3,h4,p1,p2` in its text, in parentheses or not
 * (RFC 959 leaves the format open; some servers write `227 =h1,...`), as nf_conntrack_ftp reads it.
 */
export function findPasvAddress(text: string): Found<HostPort> | null {
  const re = /(?<!\d)(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})(?!\d)/g;
  re.lastIndex = 4;
  const m = re.exec(text);
  const n = m && octets(m.slice(1));
  return n ? { value: hostPortOf(n), start: m!.index, end: m!.index + m![0].length } : null;
}

/** The port of a 229 reply, `(<d><d><d>port<d>)` with any printable non-digit delimiter (RFC 2428 §3). */
export function findEpsvPort(text: string): Found<number> | null {
  const m = /\(([!-/:-~])\1\1(\d{1,5})\1\)/.exec(text);
  if (!m) return null;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return null;
  const start = m.index + 4;
  return { value: port, start, end: start + m[2].length };
}

/** EPRT's argument, `<d>1<d>ipv4<d>port<d>` or `<d>2<d>ipv6<d>port<d>` (RFC 2428 §2). */
export type EprtArg = (HostPort & { readonly family: 4 | 6 }) | 'unsupported-family' | null;

export function parseEprtArg(arg: string): EprtArg {
  const text = arg.trim();
  const d = text.charAt(0);
  if (!/^[!-~]$/.test(d)) return null;
  const parts = text.split(d);
  if (parts.length !== 5 || parts[0] !== '' || parts[4] !== '') return null;
  const [, proto, host, portText] = parts;
  if (!/^\d{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port < 1 || port > 65535) return null;
  if (proto === '1') return isIPv4(host) ? { family: 4, host, port } : null;
  if (proto === '2') return isIPv6(host) && !host.includes('%') ? { family: 6, host, port } : null;
  return /^\d+$/.test(proto) ? 'unsupported-family' : null;
}

/** EPRT's argument for an address of either family. */
export function formatEprtArg(host: string, port: number): string {
  return isIPv4(host) ? `|1|${host}|${port}|` : `|2|${host}|${port}|`;
}

/** `text` with `[start, end)` replaced by `by`. */
export function splice(text: string, at: Found<unknown>, by: string): string {
  return text.slice(0, at.start) + by + text.slice(at.end);
}
