import { isTimeZone } from '../../policy/schedule';
import { quote, type Context } from '../context';
import type { Schedule, ScheduleWindow } from '../types';
import { asList, isObj } from './values';

const DAYS: Record<string, number> = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };

/** `HH:MM` → minutes after 00:00; the schema checked the form. */
function minutes(text: unknown): number {
  if (typeof text !== 'string') return 0;
  return Number(text.slice(0, 2)) * 60 + Number(text.slice(3, 5));
}

/**
 * `schedules`: each with its zone (checked to exist: an unknown one would otherwise fail every
 * lookup at run time) and its windows; a window whose `from` and `to` are the same has no length.
 */
export function schedulesConfig(ctx: Context, value: unknown): Record<string, Schedule> {
  const out: Record<string, Schedule> = {};
  if (!isObj(value)) return out;
  for (const [name, s] of Object.entries(value)) {
    if (!isObj(s)) continue;
    const timezone = typeof s.timezone === 'string' ? s.timezone : 'UTC';
    if (!isTimeZone(timezone)) {
      ctx.add(['schedules', name, 'timezone'], `${quote(timezone)} is not a time zone this system knows (an IANA name such as Europe/Berlin, America/New_York or UTC)`);
    }
    const windows: ScheduleWindow[] = [];
    asList(s.windows).forEach((w, i) => {
      if (!isObj(w)) return;
      const from = minutes(w.from);
      const to = minutes(w.to);
      if (from === to) {
        ctx.add(['schedules', name, 'windows', i], `from and to are both ${String(w.from)}: a window needs a length (a whole day is "00:00" to "24:00")`);
      }
      const days = asList(w.days).filter((d): d is string => typeof d === 'string' && Object.hasOwn(DAYS, d)).map((d) => DAYS[d]);
      windows.push(Object.freeze({ days: Object.freeze([...new Set(days)].sort()), from, to }));
    });
    out[name] = Object.freeze({ name, timezone, windows: Object.freeze(windows) });
  }
  return Object.freeze(out);
}
