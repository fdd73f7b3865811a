import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { isIP } from 'node:net';
import { quote, type Context, type PathSeg } from '../context';
import { DEFAULTS } from '../defaults';
import { hostPortProblem, parseHostPort } from '../parse-values';
import type { AdminConfig } from '../types';
import { adminTls } from './tls';
import { isObj } from './values';

/** `admin.token` bounds: long enough not to be guessed, short enough for one request header. */
const MIN_TOKEN_CHARS = 16;

const MAX_TOKEN_CHARS = 1024;

/**
 * `admin.token`: the string itself, or `{ file }` read without its trailing newline (`echo` and
 * most editors add one; a Kubernetes Secret from `--from-literal` has none). The file is one of
 * the config's files, so editing it reloads. null when absent or unusable (the problem is added).
 */
function adminToken(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): string | null {
  let token: string;
  let where = 'the token';
  if (typeof value === 'string') {
    token = value;
  } else if (isObj(value) && typeof value.file === 'string') {
    const file = isAbsolute(value.file) ? value.file : join(baseDir, value.file);
    const text = readTokenFile(ctx, [...path, 'file'], file);
    if (text === null) return null;
    token = text.replace(/\r?\n$/, '');
    where = `the token in ${file}`;
    if (token.length === 0) {
      ctx.add([...path, 'file'], `${file} is empty: it must hold the token`);
      return null;
    }
    if (token.length < MIN_TOKEN_CHARS || token.length > MAX_TOKEN_CHARS) {
      ctx.add([...path, 'file'], `${where} is ${token.length} characters long; it must have ${MIN_TOKEN_CHARS} to ${MAX_TOKEN_CHARS}`);
      return null;
    }
    path = [...path, 'file'];
  } else {
    return null;
  }
  // The schema bounds an inline token's length; a client sends either kind in a header.
  if (token.length < MIN_TOKEN_CHARS || token.length > MAX_TOKEN_CHARS) return null;
  if (!/^[\x21-\x7e]+$/.test(token)) {
    ctx.add(path, `${where} must be printable ASCII without spaces or line breaks: clients send it in an HTTP header`);
    return null;
  }
  return token;
}

function readTokenFile(ctx: Context, path: PathSeg[], file: string): string | null {
  try {
    const st = statSync(file);
    if (!st.isFile()) {
      ctx.add(path, `${file} is not a regular file`);
      return null;
    }
    ctx.files.add(file);
    // The token plus a line break; anything larger is not a token file (and a device is refused above).
    if (st.size > MAX_TOKEN_CHARS + 2) {
      ctx.add(path, `${file} is ${st.size} bytes: a token has at most ${MAX_TOKEN_CHARS} characters`);
      return null;
    }
    return readFileSync(file, 'utf8');
  } catch (err) {
    ctx.add(path, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    return null;
  }
}

/** `admin`: where the endpoint listens (or `off`), its token and TLS. */
export function adminConfig(ctx: Context, value: unknown, baseDir: string): AdminConfig | null {
  const o = isObj(value) ? value : {};
  const listen = typeof o.listen === 'string' ? o.listen : DEFAULTS.adminListen;
  if (listen === 'off') return null;
  const hp = parseHostPort(listen, 0);
  const problem = hp ? (isIP(hp.host) === 0 && hp.host !== 'localhost' ? `${quote(hp.host)} is not an IP address or localhost` : null) : hostPortProblem(listen, 0);
  if (problem) ctx.add(['admin', 'listen'], `${quote(listen)}: ${problem} (or "off" to disable)`);
  const token = adminToken(ctx, ['admin', 'token'], o.token, baseDir);
  const tls = adminTls(ctx, ['admin', 'tls'], o.tls, baseDir);
  return problem ? null : Object.freeze({ ...hp!, ...(token ? { token } : {}), ...(tls ? { tls } : {}) });
}
