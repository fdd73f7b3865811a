import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors';

/** Larger files are refused before parsing. */
export const MAX_FILE_BYTES = 4 * 1024 * 1024;

/**
 * The text of a config file, or a {@link ConfigError} saying why there is none: unreadable, too
 * large, or not UTF-8 (with the line and column of the first bad byte).
 */
export function readConfigText(file: string): string {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'is a directory, not a file' : e.code === 'EACCES' ? 'permission denied' : e.code ?? 'error';
    throw new ConfigError([{ file, line: 1, col: 1, path: '(file)', message: `cannot read the config file: ${why}${e.code && why !== e.code ? ` (${e.code})` : ''}` }]);
  }
  if (buf.length > MAX_FILE_BYTES) {
    throw new ConfigError([{ file, line: 1, col: 1, path: '(file)', message: `the file is ${buf.length} bytes; at most ${MAX_FILE_BYTES} are read` }]);
  }
  const bad = firstInvalidUtf8(buf);
  if (bad >= 0) {
    let lineStart = buf.lastIndexOf(0x0a, bad - 1) + 1;
    if (bad === 0) lineStart = 0;
    let line = 1;
    for (let i = buf.indexOf(0x0a); i >= 0 && i < lineStart; i = buf.indexOf(0x0a, i + 1)) line++;
    const col = buf.subarray(lineStart, bad).toString('utf8').length + 1;
    const byte = buf[bad].toString(16).padStart(2, '0');
    throw new ConfigError([{ file, line, col, path: '(file)', message: `not valid UTF-8 (byte 0x${byte}): save the file as UTF-8` }]);
  }
  return buf.toString('utf8');
}

/** Offset of the first byte that does not belong to a well-formed UTF-8 sequence, or -1. */
function firstInvalidUtf8(buf: Buffer): number {
  for (let i = 0; i < buf.length; ) {
    const b = buf[i];
    if (b < 0x80) { i++; continue; }
    let n: number;
    let min: number;
    if (b >= 0xc2 && b <= 0xdf) { n = 1; min = 0x80; }
    else if (b >= 0xe0 && b <= 0xef) { n = 2; min = 0x800; }
    else if (b >= 0xf0 && b <= 0xf4) { n = 3; min = 0x10000; }
    else return i;
    let cp = b & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const c = buf[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
    if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return i;
    i += n + 1;
  }
  return -1;
}
