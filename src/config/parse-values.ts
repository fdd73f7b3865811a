import { isIP } from 'node:net';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** Longest delay a Node timer honours. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** `250ms`, `5s`, `15m`, `1h` → milliseconds; null when malformed or beyond a timer's range. */
export function parseDuration(text: string): number | null {
  const m = /^([0-9]{1,10})(ms|s|m|h)$/.exec(text);
  if (!m) return null;
  const ms = Number(m[1]) * UNIT_MS[m[2]];
  return ms <= MAX_TIMER_MS ? ms : null;
}

const HOSTNAME = /^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/** True for a DNS name or an IP address literal (IPv6 without brackets). */
export function isHost(host: string): boolean {
  return isIP(host) !== 0 || HOSTNAME.test(host);
}

/** `host:port` or `[v6]:port` → parts; null when malformed. */
export function parseHostPort(text: string, minPort = 1): { host: string; port: number } | null {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return null;
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (isIP(host) !== 6) return null;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon <= 0 || text.indexOf(':') !== colon) return null;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (!isHost(host)) return null;
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port < minPort || port > 65535) return null;
  return { host, port };
}

/** `host:port` with IPv6 literals bracketed. */
export function hostPortLabel(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Why `text` is not a valid `host:port` (the reason {@link parseHostPort} returns null), worded
 * for the person editing the file; null when it is valid.
 */
export function hostPortProblem(text: string, minPort = 1): string | null {
  if (parseHostPort(text, minPort)) return null;
  const range = `${minPort}-65535`;
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return '"[" without "]": write an IPv6 address as [addr]:port, e.g. [::1]:443';
    host = text.slice(1, close);
    if (isIP(host) !== 6) return `"${host}" in brackets is not an IPv6 address`;
    if (text[close + 1] !== ':') return 'no port after "]": write [addr]:port, e.g. [::1]:443';
    portText = text.slice(close + 2);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return 'no port: write host:port, e.g. mail.example.com:143';
    if (colon === 0) return 'no host before ":": write host:port, e.g. mail.example.com:143';
    if (text.indexOf(':') !== colon) {
      return 'an IPv6 address needs brackets and a port: write [addr]:port, e.g. [::1]:443';
    }
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (!isHost(host)) return `"${host}" is not a host name or IP address`;
  }
  if (portText === '') return `no port after ":" (port ${range})`;
  if (!/^[0-9]+$/.test(portText)) return `port "${portText}" is not a number (port ${range})`;
  return `port ${portText} is out of range (port ${range})`;
}
