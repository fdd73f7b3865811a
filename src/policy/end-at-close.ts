import type { Schedule } from '../config/types';
import { isOpen, nextChange } from './schedule';

/** A connection whose mapping says `endAtClose`: the schedule it was routed under, by name. */
export interface Scheduled {
  /** The schedule of the mapping that routed it, when that mapping ends its connections at close. */
  readonly endsWith: Schedule | null;
  abort(reason: 'schedule'): void;
}

/** Timers re-check at least this often, so a clock stepped by NTP (or a test) is noticed. */
const MAX_WAIT_MS = 60_000;

/**
 * Closes connections (reason `schedule`) when the schedule of the mapping that routed them
 * closes. A connection follows the schedule of that name in the config in force: a reload that
 * moves a window moves the close with it. One timer, set for the next change of any schedule
 * that some mapping ends its connections by.
 */
export class ScheduleCloser {
  private timer: NodeJS.Timeout | null = null;
  private schedules: Readonly<Record<string, Schedule>> = {};
  private watched: Schedule[] = [];

  constructor(
    private readonly now: () => number,
    private readonly open: Iterable<Scheduled>,
  ) {}

  /**
   * The config in force: its schedules, and which of them a mapping ends connections by (by name:
   * a config that came over IPC holds copies, and every name a mapping gives is in `schedules`).
   */
  follow(schedules: Readonly<Record<string, Schedule>>, watched: readonly Schedule[]): void {
    this.schedules = schedules;
    this.watched = [...new Set(watched.map((s) => s.name))].map((n) => schedules[n]);
    this.check();
  }

  /** Closes what must close now and sets the timer for the next change; returns how many it closed. */
  check(): number {
    const now = this.now();
    let closed = 0;
    // What the timer waits for: the config's schedules, and any a reload removed that open connections still follow.
    const pending = new Set(this.watched);
    for (const c of [...this.open]) {
      const old = c.endsWith;
      if (old === null) continue;
      const schedule = this.schedules[old.name] ?? old;
      if (!isOpen(schedule, now)) {
        c.abort('schedule');
        closed++;
      } else {
        pending.add(schedule);
      }
    }
    this.arm(now, pending);
    return closed;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(now: number, schedules: ReadonlySet<Schedule>): void {
    this.stop();
    if (schedules.size === 0) return;
    let next = now + MAX_WAIT_MS;
    for (const s of schedules) {
      const at = nextChange(s, now);
      if (at !== null && at < next) next = at;
    }
    this.timer = setTimeout(() => this.check(), Math.max(0, next - now));
    this.timer.unref();
  }
}
