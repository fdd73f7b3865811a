import { isIPv4, isIPv6 } from 'node:net';

/**
 * An address block. IPv4 blocks keep one 32-bit word, IPv6 blocks four; matching is a few
 * integer compares, with no allocation per connection.
 */
export interface Cidr {
  readonly family: 4 | 6;
  /** Network address, masked, as 32-bit words (1 for IPv4, 4 for IPv6). */
  readonly words: readonly number[];
  readonly prefix: number;
  /** Canonical text, e.g. `10.1.0.0/16`. */
  readonly text: string;
}

function ipv4Word(address: string): number {
  const p = address.split('.');
  return ((+p[0] << 24) | (+p[1] << 16) | (+p[2] << 8) | +p[3]) >>> 0;
}

/** The four 32-bit words of an IPv6 address (zone ignored; dotted IPv4 tails accepted). */
export function ipv6Words(address: string): number[] {
  let text = address;
  const pct = text.indexOf('%');
  if (pct >= 0) text = text.slice(0, pct);
  const groups: number[] = [];
  const dotted = text.lastIndexOf(':') < text.lastIndexOf('.');
  let tail: number[] = [];
  if (dotted) {
    const cut = text.lastIndexOf(':');
    const v4 = ipv4Word(text.slice(cut + 1));
    tail = [v4 >>> 16, v4 & 0xffff];
    text = text.slice(0, cut + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const [head, rest] = text.split('::');
  const parse = (s: string | undefined): number[] => (s ? s.split(':').filter((g) => g !== '').map((g) => parseInt(g, 16)) : []);
  const h = parse(head);
  const r = parse(rest);
  const fill = 8 - h.length - r.length - tail.length;
  groups.push(...h);
  if (rest !== undefined) for (let i = 0; i < fill; i++) groups.push(0);
  groups.push(...r, ...tail);
  const words: number[] = [];
  for (let i = 0; i < 8; i += 2) words.push(((groups[i] << 16) | groups[i + 1]) >>> 0);
  return words;
}

function mask(prefix: number): number {
  return prefix <= 0 ? 0 : prefix >= 32 ? 0xffffffff : (0xffffffff << (32 - prefix)) >>> 0;
}

export function ipv4Text(word: number): string {
  return `${word >>> 24}.${(word >>> 16) & 0xff}.${(word >>> 8) & 0xff}.${word & 0xff}`;
}

/** RFC 5952 text: lower-case hex, the longest run of two or more zero groups as `::`. */
export function ipv6Text(words: readonly number[]): string {
  const groups: number[] = [];
  for (const w of words) groups.push(w >>> 16, w & 0xffff);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (g: number[]): string => g.map((x) => x.toString(16)).join(':');
  return best < 0 ? hex(groups) : `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLen))}`;
}

/** True when IPv6 words hold an IPv4-mapped address (`::ffff:a.b.c.d`). */
export function isMapped(words: readonly number[]): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff;
}

/**
 * Parses `10.0.0.0/8`, `10.0.0.15`, `fd00:8::/64` or `::1`; returns null when malformed.
 * Host bits below the prefix are ignored (`10.1.2.3/16` is `10.1.0.0/16`, as iptables reads it).
 * An IPv4-mapped block (`::ffff:10.0.0.0/104`) becomes the IPv4 block it maps (`10.0.0.0/8`),
 * because {@link parseClientAddress} unwraps mapped clients to IPv4.
 */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? null : text.slice(slash + 1);
  const family = isIPv4(address) ? 4 : isIPv6(address) && !address.includes('%') ? 6 : 0;
  if (family === 0) return null;
  const max = family === 4 ? 32 : 128;
  if (prefixText !== null && !/^[0-9]{1,3}$/.test(prefixText)) return null;
  const prefix = prefixText === null ? max : Number(prefixText);
  if (prefix > max) return null;
  const raw = family === 4 ? [ipv4Word(address)] : ipv6Words(address);
  if (family === 6 && prefix >= 96 && isMapped(raw)) {
    const v4 = (raw[3] & mask(prefix - 96)) >>> 0;
    return Object.freeze({ family: 4, words: Object.freeze([v4]), prefix: prefix - 96, text: `${ipv4Text(v4)}/${prefix - 96}` });
  }
  const words = raw.map((w, i) => (w & mask(prefix - 32 * i)) >>> 0);
  const canonical = family === 4 ? ipv4Text(words[0]) : ipv6Text(words);
  return Object.freeze({ family, words: Object.freeze(words), prefix, text: `${canonical}/${prefix}` });
}

/**
 * A client address, parsed once per connection. IPv4-mapped IPv6 (`::ffff:10.0.0.15`) is
 * treated as the IPv4 address it carries, so IPv4 rules match clients of dual-stack listeners.
 */
export interface ClientAddress {
  readonly family: 4 | 6;
  readonly words: readonly number[];
  /** The address as rules see it (mapped IPv6 unwrapped). */
  readonly text: string;
}

/** Dotted-quad IPv4 to a 32-bit word in one pass, or -1: the per-connection fast path. */
function dottedQuad(s: string, from: number): number {
  let word = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return -1;
    } else if (c === 46 && digits > 0 && dots < 3) {
      word = word * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return word * 256 + part;
}

/**
 * An address as comparisons and lookups need it: a zone (`%eth1`) dropped, IPv4-mapped IPv6
 * unwrapped, IPv6 in RFC 5952 form; null when it is not an IP address.
 */
export function canonicalAddress(address: string | undefined): string | null {
  if (address === undefined) return null;
  const zone = address.indexOf('%');
  const bare = zone < 0 ? address : address.slice(0, zone);
  if (isIPv4(bare)) return bare;
  if (!isIPv6(bare)) return null;
  const words = ipv6Words(bare);
  return isMapped(words) ? ipv4Text(words[3]) : ipv6Text(words);
}

export function parseClientAddress(address: string): ClientAddress | null {
  const quad = dottedQuad(address, 0);
  if (quad >= 0) return { family: 4, words: [quad], text: address };
  if (address.length > 7 && address.slice(0, 7).toLowerCase() === '::ffff:') {
    const mapped = dottedQuad(address, 7);
    if (mapped >= 0) return { family: 4, words: [mapped], text: address.slice(7) };
  }
  if (!isIPv6(address)) return null;
  const words = ipv6Words(address);
  // The hex spelling of a mapped address (::ffff:a00:f) is the same IPv4 client.
  if (isMapped(words)) return { family: 4, words: [words[3]], text: ipv4Text(words[3]) };
  return { family: 6, words, text: address };
}

export function cidrContains(cidr: Cidr, client: ClientAddress): boolean {
  if (cidr.family !== client.family) return false;
  const words = cidr.words;
  for (let i = 0, bits = cidr.prefix; bits > 0; i++, bits -= 32) {
    if (((client.words[i] & mask(bits)) >>> 0) !== words[i]) return false;
  }
  return true;
}

export function anyContains(cidrs: readonly Cidr[], client: ClientAddress): boolean {
  for (let i = 0; i < cidrs.length; i++) if (cidrContains(cidrs[i], client)) return true;
  return false;
}
