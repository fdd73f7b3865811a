import type { Schedule } from '../config/types';

/**
 * When a schedule is open, decided on the wall clock of its zone.
 *
 * A schedule is compiled once (per frozen schedule object) into a week of minutes, Sunday 00:00
 * first, so deciding is one lookup by the zone's local (day, minute). Local time comes from Intl,
 * never from "UTC plus an offset" arithmetic: Intl knows every rule change of tzdata, and the
 * wall clock is what a window is written in.
 *
 * What wall-clock comparison means around a DST change, on purpose:
 * - Spring forward (e.g. Europe/Berlin 02:00 → 03:00): minutes in the gap never happen. A window
 *   from 02:30 opens at 03:00, the first wall-clock minute at or after 02:30 that exists; a
 *   window lying wholly inside the gap (02:00–02:30) does not open that day.
 * - Fall back (e.g. 03:00 → 02:00): the repeated hour happens twice, and so does every window in
 *   it. A window 02:00–02:30 is open 02:00–02:30 summer time, closed for 30 minutes, and open
 *   again 02:00–02:30 standard time; `nextChange` reports each of those four instants. Likewise a
 *   window from 02:45 opens at 02:45 summer time, closes when the clock goes back to 02:00, and
 *   opens again at 02:45 standard time; one from 01:00 to 03:00 stays open three real hours.
 */

const MINUTE_MS = 60_000;
const DAY_MINUTES = 1440;
const WEEK_MINUTES = 7 * DAY_MINUTES;
/** How far `nextChange` looks: a week and a day, so every weekly window is seen even across a DST change. */
const HORIZON_MINUTES = 8 * DAY_MINUTES;
/**
 * The longest step `nextChange` takes without looking at the clock. It assumes a zone changes its
 * UTC offset at most once within a step, which holds for tzdata: changes are months apart.
 */
const MAX_STEP_MINUTES = DAY_MINUTES;
/**
 * Safety bound on `nextChange`'s loop. A step ends at a state change (which returns), at a day's
 * length, or at an offset change, so 8 days take about 10 steps; 64 is never reached.
 */
const MAX_STEPS = 64;

const WEEKDAYS: Readonly<Record<string, number>> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };

/** A zone's local weekday (0 = Sunday … 6 = Saturday) and minutes after local 00:00 (0–1439). */
export interface WallClock {
  readonly day: number;
  readonly minute: number;
}

/** Whether Intl knows `name` as a time zone (IANA names such as `Europe/Berlin`, and `UTC`). */
export function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch (err) {
    if (err instanceof RangeError) return false;
    throw err;
  }
}

// Building a DateTimeFormat costs far more than using one; zones come from the config, so this stays small.
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timezone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timezone);
  if (formatter === undefined) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      hourCycle: 'h23',
      weekday: 'short',
      hour: 'numeric',
      minute: 'numeric',
    });
    formatters.set(timezone, formatter);
  }
  return formatter;
}

/**
 * The wall clock of `timezone` at instant `now` (ms since the epoch), to the minute.
 * Throws RangeError for a zone Intl does not know or an invalid instant.
 */
export function wallClock(timezone: string, now: number): WallClock {
  const parts = formatterFor(timezone).formatToParts(now);
  let day: number | undefined;
  let hour = Number.NaN;
  let minute = Number.NaN;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    if (part.type === 'weekday') day = WEEKDAYS[part.value];
    // Some engines print midnight as hour 24 even with h23 (old V8 with hour12: false did).
    else if (part.type === 'hour') hour = Number(part.value) % 24;
    else if (part.type === 'minute') minute = Number(part.value);
  }
  if (day === undefined || !(hour >= 0 && hour < 24) || !(minute >= 0 && minute < 60)) {
    throw new RangeError(`cannot read the wall clock of ${timezone}: ${JSON.stringify(parts)}`);
  }
  return { day, minute: hour * 60 + minute };
}

/** A schedule compiled to a week of wall-clock minutes, with the memo of `isOpen`. */
interface Compiled {
  readonly timezone: string;
  /** 1 where open, per minute of the week (Sunday 00:00 = 0). */
  readonly week: Uint8Array;
  /** Minutes of the week whose state differs from the minute before (cyclically), ascending; empty: constant. */
  readonly changes: Int32Array;
  /** The UTC minute (`floor(now / 60000)`) `lastOpen` was computed for; NaN: none yet. */
  lastMinute: number;
  lastOpen: boolean;
}

// Keyed by the schedule object: normalized configs are frozen, and a reload brings new objects.
const compiledSchedules = new WeakMap<Schedule, Compiled>();

function compile(schedule: Schedule): Compiled {
  const cached = compiledSchedules.get(schedule);
  if (cached !== undefined) return cached;
  // Built now so an unknown zone throws here, whether or not the state ever needs the clock.
  formatterFor(schedule.timezone);
  const week = new Uint8Array(WEEK_MINUTES);
  for (const window of schedule.windows) {
    const length = window.to > window.from ? window.to - window.from : window.to + DAY_MINUTES - window.from;
    for (const day of window.days) {
      const start = day * DAY_MINUTES + window.from;
      for (let i = 0; i < length; i++) week[(start + i) % WEEK_MINUTES] = 1;
    }
  }
  const changes: number[] = [];
  for (let m = 0; m < WEEK_MINUTES; m++) {
    if (week[m] !== week[(m + WEEK_MINUTES - 1) % WEEK_MINUTES]) changes.push(m);
  }
  const compiled: Compiled = {
    timezone: schedule.timezone,
    week,
    changes: Int32Array.from(changes),
    lastMinute: Number.NaN,
    lastOpen: false,
  };
  compiledSchedules.set(schedule, compiled);
  return compiled;
}

function weekMinuteAt(compiled: Compiled, utcMinute: number): number {
  const clock = wallClock(compiled.timezone, utcMinute * MINUTE_MS);
  return clock.day * DAY_MINUTES + clock.minute;
}

/** Minutes from week minute `from` to the next minute of the week at which the wall-clock state changes. */
function untilWallChange(changes: Int32Array, from: number): number {
  let lo = 0;
  let hi = changes.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (changes[mid] <= from) lo = mid + 1;
    else hi = mid;
  }
  const next = lo < changes.length ? changes[lo] : changes[0] + WEEK_MINUTES;
  return next - from;
}

/**
 * Wall minute of the week minus UTC minute, modulo a week: constant while the zone's UTC offset is,
 * so it tells where the wall clock stops running in step with real time.
 */
function drift(weekMinute: number, utcMinute: number): number {
  return (((weekMinute - utcMinute) % WEEK_MINUTES) + WEEK_MINUTES) % WEEK_MINUTES;
}

/**
 * Whether `schedule` is open at instant `now` (ms since the epoch): some window holds the zone's
 * local (day, minute). A window crossing midnight is open on its start day from `from`, and on
 * the following day before `to`. Cheap on the hot path: the answer is remembered per schedule for
 * the current UTC minute, within which it cannot change (every zone's offset is whole minutes).
 * Throws RangeError if Intl does not know the schedule's zone.
 */
export function isOpen(schedule: Schedule, now: number): boolean {
  const compiled = compile(schedule);
  const utcMinute = Math.floor(now / MINUTE_MS);
  if (utcMinute !== compiled.lastMinute) {
    compiled.lastOpen = compiled.changes.length === 0
      ? compiled.week[0] === 1
      : compiled.week[weekMinuteAt(compiled, utcMinute)] === 1;
    compiled.lastMinute = utcMinute;
  }
  return compiled.lastOpen;
}

/**
 * The first instant after `now` (ms since the epoch, on a whole minute) at which `isOpen` changes,
 * or null when it does not change within the next 8 days (always open, never open, no windows).
 * Exact across DST changes, consistent with `isOpen` minute by minute (see the module comment).
 *
 * It steps from one wall-clock change of the compiled week to the next, advancing real time by as
 * many minutes. Where the zone's offset changes within a step the wall clock jumps, so a step is
 * cut at the first minute of the new offset (binary search at minute granularity), and the state
 * there is checked before going on from the wall-clock time it jumped to.
 */
export function nextChange(schedule: Schedule, now: number): number | null {
  const compiled = compile(schedule);
  if (compiled.changes.length === 0) return null;
  const { week, changes } = compiled;
  const start = Math.floor(now / MINUTE_MS);
  const end = start + HORIZON_MINUTES;
  let t = start;
  let wm = weekMinuteAt(compiled, t);
  const open = week[wm];
  for (let steps = 0; steps < MAX_STEPS && t < end; steps++) {
    const d = drift(wm, t);
    let next = t + Math.min(untilWallChange(changes, wm), MAX_STEP_MINUTES);
    let nextWm = weekMinuteAt(compiled, next);
    if (drift(nextWm, next) !== d) {
      // The offset changed in (t, next]: find its first minute; before it the wall clock ran in step.
      let lo = t;
      while (next - lo > 1) {
        const mid = lo + Math.floor((next - lo) / 2);
        const midWm = weekMinuteAt(compiled, mid);
        if (drift(midWm, mid) === d) lo = mid;
        else {
          next = mid;
          nextWm = midWm;
        }
      }
    }
    if (next > end) return null;
    if (week[nextWm] !== open) return next * MINUTE_MS;
    t = next;
    wm = nextWm;
  }
  return null;
}
