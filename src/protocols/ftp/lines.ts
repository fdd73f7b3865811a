/** The longest control-channel line accepted, terminator included (bytes). */
export const MAX_LINE_BYTES = 8192;

const LF = 0x0a;

/**
 * Cuts a byte stream into lines whatever its TCP segments: a line split across reads is joined,
 * several lines in one read come out one by one. A line ends at LF (RFC 959 says CRLF; a bare LF
 * is tolerated, as vsftpd and OpenBSD's ftp-proxy do); each line keeps its terminator, so lines
 * passed on unchanged are the bytes that came in. Holds at most one unfinished line of at most
 * `maxBytes`: a longer one makes {@link push} return false, and the stream must be closed.
 */
export class LineSplitter {
  /** The unfinished line, in the pieces it came in (joined once, when its LF arrives). */
  private pieces: Buffer[] = [];
  private held = 0;

  constructor(private readonly maxBytes = MAX_LINE_BYTES) {}

  /** Appends the complete lines of `chunk` to `out`; false when a line is longer than the bound. */
  push(chunk: Buffer, out: Buffer[]): boolean {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(LF, start);
      if (nl < 0) break;
      if (this.held + nl + 1 - start > this.maxBytes) return false;
      const piece = chunk.subarray(start, nl + 1);
      out.push(this.held > 0 ? this.take(piece) : piece);
      start = nl + 1;
    }
    if (start < chunk.length) {
      this.pieces.push(chunk.subarray(start));
      this.held += chunk.length - start;
      // Already as long as a whole line may be, and still no LF: it can only be too long.
      if (this.held >= this.maxBytes) return false;
    }
    return true;
  }

  /** The unterminated rest at the end of the stream, or null; the splitter is empty afterwards. */
  rest(): Buffer | null {
    return this.held > 0 ? this.take(null) : null;
  }

  private take(last: Buffer | null): Buffer {
    if (last) this.pieces.push(last);
    const line = this.pieces.length === 1 ? this.pieces[0] : Buffer.concat(this.pieces);
    this.pieces = [];
    this.held = 0;
    return line;
  }
}

/** A line's text without its terminator (CRLF or LF), as latin1 so every byte survives a rewrite. */
export function lineText(line: Buffer): string {
  let end = line.length;
  if (end > 0 && line[end - 1] === LF) end--;
  if (end > 0 && line[end - 1] === 0x0d) end--;
  return line.toString('latin1', 0, end);
}

/** The terminator a line came with: `\r\n`, `\n`, or '' for the unterminated rest of a stream. */
export function lineEnd(line: Buffer): string {
  const n = line.length;
  if (n === 0 || line[n - 1] !== LF) return '';
  return n > 1 && line[n - 2] === 0x0d ? '\r\n' : '\n';
}
