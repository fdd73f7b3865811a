import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { isIPv4, isIPv6 } from 'node:net';
import { parseCidr, type Cidr } from '../cidr';
import { quote, type Context, type PathSeg } from '../context';
import { MAX_TIMER_MS, parseDuration } from '../parse-values';
import { MAX_FILE_BYTES } from '../read';

/** Value normalizers shared by every section: durations, CIDR lists, PEM material from files. */

export const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
export const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);

/** Why `text` is not an address or CIDR block, for the message. */
function cidrProblem(text: string): string {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const family = isIPv4(address) ? 4 : isIPv6(address) ? 6 : 0;
  if (family === 0) return `${quote(text)} is not an IP address or CIDR block (e.g. 10.0.0.15, 10.1.0.0/16, fd00:8::/64)`;
  if (address.includes('%')) return `${quote(text)}: a zone (%) is not allowed in a source address`;
  return `${quote(text)}: the prefix after "/" must be 0-${family === 4 ? 32 : 128} for IPv${family}`;
}

export function duration(ctx: Context, path: PathSeg[], value: unknown, fallback: string): number {
  if (typeof value !== 'string') return parseDuration(fallback)!;
  const ms = parseDuration(value);
  if (ms === null) {
    // The schema already reported a malformed duration; this one is well-formed but too long.
    if (/^[0-9]{1,10}(ms|s|m|h)$/.test(value)) ctx.add(path, `must be at most 24 days (${MAX_TIMER_MS}ms), not ${JSON.stringify(value)}`);
    return parseDuration(fallback)!;
  }
  return ms;
}

export function cidrs(ctx: Context, path: PathSeg[], value: unknown): Cidr[] {
  const out: Cidr[] = [];
  const list = asList(value);
  list.forEach((item, i) => {
    if (typeof item !== 'string') return;
    const c = parseCidr(item);
    const p = Array.isArray(value) ? [...path, i] : path;
    if (c) out.push(c);
    else ctx.add(p, cidrProblem(item));
  });
  return out;
}

export function readPem(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): string | null {
  if (typeof value !== 'string') return null;
  if (value.includes('-----BEGIN')) return value;
  const file = isAbsolute(value) ? value : join(baseDir, value);
  try {
    // A device or a huge file (/dev/zero, /dev/stdin) would hang or exhaust memory.
    const st = statSync(file);
    if (!st.isFile()) {
      ctx.add(path, `${file} is not a regular file`);
      return null;
    }
    if (st.size > MAX_FILE_BYTES) {
      ctx.add(path, `${file} is larger than ${MAX_FILE_BYTES} bytes: not a PEM file`);
      return null;
    }
    ctx.files.add(file);
    const pem = readFileSync(file, 'utf8');
    // Node ignores a CA file without PEM blocks, which would surface only as a failed handshake.
    if (!pem.includes('-----BEGIN')) {
      ctx.add(path, `${file} holds no PEM block ("-----BEGIN ...")`);
      return null;
    }
    return pem;
  } catch (err) {
    ctx.add(path, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    return null;
  }
}
