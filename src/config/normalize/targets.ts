import { isIP } from 'node:net';
import { parseCidr } from '../cidr';
import { quote, type Context, type PathSeg } from '../context';
import type { TargetPattern } from '../types';
import { asList } from './values';

const NAME = /^(\*|(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*)$/;

/**
 * One `to` entry of a SOCKS mapping: `*`, a host name, `*.suffix`, an address or address block
 * (IPv6 in brackets when a port follows), each with an optional `:port`. Null when malformed.
 */
export function parseTarget(text: string): TargetPattern | null {
  let hostText = text;
  let port: number | null = null;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return null;
    hostText = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!/^:[0-9]{1,5}$/.test(rest)) return null;
      port = Number(rest.slice(1));
    }
    if (!hostText.includes(':')) return null;
  } else if (text.indexOf(':') === text.lastIndexOf(':') && text.includes(':')) {
    // One colon: host:port. More than one without brackets: an IPv6 address or block, no port.
    const colon = text.indexOf(':');
    hostText = text.slice(0, colon);
    if (!/^[0-9]{1,5}$/.test(text.slice(colon + 1))) return null;
    port = Number(text.slice(colon + 1));
  }
  if (port !== null && (port < 1 || port > 65535)) return null;
  const slash = hostText.indexOf('/');
  if (isIP(slash < 0 ? hostText : hostText.slice(0, slash)) !== 0) {
    const cidr = parseCidr(hostText);
    return cidr ? Object.freeze({ host: null, cidr, port, text }) : null;
  }
  const host = hostText.toLowerCase().replace(/\.$/, '');
  if (!NAME.test(host)) return null;
  return Object.freeze({ host, cidr: null, port, text });
}

/** A mapping's `to`: every entry parsed, each malformed one reported where it is. */
export function targetsConfig(ctx: Context, path: PathSeg[], value: unknown): TargetPattern[] {
  const out: TargetPattern[] = [];
  asList(value).forEach((item, i) => {
    if (typeof item !== 'string') return;
    const t = parseTarget(item);
    if (t) out.push(t);
    else ctx.add(Array.isArray(value) ? [...path, i] : path, `${quote(item)} is not a destination pattern: write *, a host name, *.domain, an address or CIDR block, each with an optional :port (e.g. "*.corp.example:443", "10.0.0.0/8", "[fd00::/8]:22")`);
  });
  return out;
}
