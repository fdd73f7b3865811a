import { readdirSync, readFileSync } from 'node:fs';

/** Above this share of the soft limit, descriptors count as nearly exhausted. */
const HIGH_WATER = 0.9;

/** The soft limit on open files, from /proc (Linux); null where unknown. */
export function fdLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Descriptors open in this process; Infinity when none is left even to count them; null where /proc is absent. */
export function fdCount(): number | null {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EMFILE' || code === 'ENFILE' ? Infinity : null;
  }
}

/**
 * Watches for descriptor exhaustion. When every descriptor is taken, libuv accepts pending
 * connections and closes them at once (its "EMFILE trick") without telling Node, so exhaustion
 * is invisible from the accept path; this polls the count instead, and reports each crossing
 * of the high-water mark, down and back up.
 */
export class FdMonitor {
  private timer: NodeJS.Timeout | null = null;
  private high = false;

  constructor(
    private readonly intervalMs: number,
    private readonly report: (state: 'exhausted' | 'recovered', open: number, limit: number) => void,
  ) {}

  private limit: number | null = null;

  start(): void {
    // Read once: with every descriptor taken, /proc/self/limits could not be opened.
    this.limit = fdLimit();
    if (this.limit === null || fdCount() === null || this.intervalMs <= 0) return;
    this.timer = setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
  }

  /** Samples now; exposed so an EMFILE seen elsewhere can trigger a report at once. */
  check(): void {
    const open = fdCount();
    const limit = this.limit;
    if (open === null || limit === null) return;
    const high = open >= limit * HIGH_WATER;
    if (high !== this.high) {
      this.high = high;
      this.report(high ? 'exhausted' : 'recovered', Math.min(open, limit), limit);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
