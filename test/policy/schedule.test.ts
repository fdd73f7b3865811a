import type { Schedule, ScheduleWindow } from '../../src/config/types';
import { isOpen, isTimeZone, nextChange, wallClock } from '../../src/policy/schedule';
import { prng } from '../helpers/prng';

const SUN = 0, MON = 1, TUE = 2, WED = 3, THU = 4, FRI = 5, SAT = 6;
const WEEKDAYS = [MON, TUE, WED, THU, FRI];
const EVERY_DAY = [SUN, MON, TUE, WED, THU, FRI, SAT];
const MINUTE = 60_000;

/** `HH:MM` as minutes after 00:00. */
function hm(text: string): number {
  const [h, m] = text.split(':').map(Number);
  return h * 60 + m;
}

function win(days: number[], from: string, to: string | number): ScheduleWindow {
  return { days, from: hm(from), to: typeof to === 'number' ? to : hm(to) };
}

function schedule(timezone: string, windows: ScheduleWindow[]): Schedule {
  return Object.freeze({ name: 'test', timezone, windows: Object.freeze(windows) });
}

/** An instant from an ISO string that carries its offset (or Z). */
function at(iso: string): number {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new Error(`bad instant ${iso}`);
  return ms;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** Asserts isOpen at each instant, one schedule object in order, so a stale memo would show. */
function expectStates(s: Schedule, cases: Array<[string, boolean]>): void {
  const got = cases.map(([when]) => [when, isOpen(s, at(when))]);
  expect(got).toEqual(cases);
}

/** Follows nextChange from `start` `count` times; returns the instants as ISO strings. */
function changesFrom(s: Schedule, start: string, count: number): Array<string | null> {
  const out: Array<string | null> = [];
  let t: number | null = at(start);
  for (let i = 0; i < count && t !== null; i++) {
    t = nextChange(s, t);
    out.push(iso(t));
  }
  return out;
}


afterEach(() => jest.restoreAllMocks());

describe('isTimeZone', () => {
  test.each([
    ['Europe/Berlin', true],
    ['America/New_York', true],
    ['UTC', true],
    ['Asia/Kathmandu', true],
    ['Mars/Olympus', false],
    ['', false],
    ['Europe/Berlin ', false],
  ])('%j → %s', (name, expected) => {
    expect(isTimeZone(name)).toBe(expected);
  });
});

describe('wallClock', () => {
  test.each([
    ['UTC', '2026-01-01T00:00:00Z', THU, '00:00'],
    ['UTC', '2026-01-03T23:59:59.999Z', SAT, '23:59'],
    ['Europe/Berlin', '2026-01-03T23:30:00Z', SUN, '00:30'],
    ['Europe/Berlin', '2026-07-15T06:00:00Z', WED, '08:00'],
    ['America/New_York', '2026-01-01T04:59:00Z', WED, '23:59'],
    ['Asia/Kolkata', '2026-01-01T18:30:00Z', FRI, '00:00'],
    ['Asia/Kathmandu', '2026-01-01T00:00:00Z', THU, '05:45'],
  ])('%s at %s is day %i, %s', (zone, when, day, time) => {
    expect(wallClock(zone, at(when))).toEqual({ day, minute: hm(time) });
  });

  test('reads an hour printed as "24" as midnight', () => {
    jest.spyOn(Intl.DateTimeFormat.prototype, 'formatToParts').mockReturnValueOnce([
      { type: 'weekday', value: 'Mon' },
      { type: 'literal', value: ' ' },
      { type: 'hour', value: '24' },
      { type: 'literal', value: ':' },
      { type: 'minute', value: '07' },
    ]);
    expect(wallClock('UTC', at('2026-01-05T00:07:00Z'))).toEqual({ day: MON, minute: 7 });
  });

  test('throws RangeError for an unknown zone', () => {
    expect(() => wallClock('Mars/Olympus', 0)).toThrow(RangeError);
  });

  test('builds one formatter per zone', () => {
    const Original = Intl.DateTimeFormat;
    const built = jest.spyOn(Intl, 'DateTimeFormat').mockImplementation(
      (...args: ConstructorParameters<typeof Intl.DateTimeFormat>) => new Original(...args),
    );
    wallClock('Pacific/Chatham', at('2026-01-01T00:00:00Z'));
    wallClock('Pacific/Chatham', at('2026-06-01T00:00:00Z'));
    wallClock('Pacific/Chatham', at('2026-06-01T00:01:00Z'));
    expect(built).toHaveBeenCalledTimes(1);
  });
});

describe('isOpen and nextChange', () => {
  test('UTC, weekdays 09:00–17:00', () => {
    const s = schedule('UTC', [win(WEEKDAYS, '09:00', '17:00')]);
    expectStates(s, [
      ['2026-01-05T08:59:59.999Z', false],
      ['2026-01-05T09:00:00Z', true],
      ['2026-01-05T16:59:00Z', true],
      ['2026-01-05T17:00:00Z', false],
      ['2026-01-10T12:00:00Z', false],
    ]);
    expect(changesFrom(s, '2026-01-05T08:00:00Z', 3)).toEqual([
      '2026-01-05T09:00:00.000Z', '2026-01-05T17:00:00.000Z', '2026-01-06T09:00:00.000Z',
    ]);
    // Friday evening: next is Monday morning.
    expect(iso(nextChange(s, at('2026-01-09T17:00:00Z')))).toBe('2026-01-12T09:00:00.000Z');
  });

  test('nextChange is strictly after now, on a whole minute', () => {
    const s = schedule('UTC', [win(WEEKDAYS, '09:00', '17:00')]);
    expect(iso(nextChange(s, at('2026-01-05T08:59:59.999Z')))).toBe('2026-01-05T09:00:00.000Z');
    expect(iso(nextChange(s, at('2026-01-05T09:00:00Z')))).toBe('2026-01-05T17:00:00.000Z');
    expect(iso(nextChange(s, at('2026-01-05T12:34:56.789Z')))).toBe('2026-01-05T17:00:00.000Z');
  });

  test('Europe/Berlin weekdays 08:00–18:00, winter and summer', () => {
    const s = schedule('Europe/Berlin', [win(WEEKDAYS, '08:00', '18:00')]);
    expectStates(s, [
      ['2026-01-14T07:59:00+01:00', false],
      ['2026-01-14T08:00:00+01:00', true],
      ['2026-01-14T12:00:00+01:00', true],
      ['2026-01-14T17:59:59+01:00', true],
      ['2026-01-14T18:00:00+01:00', false],
      ['2026-01-17T12:00:00+01:00', false], // Saturday
      ['2026-01-18T12:00:00+01:00', false], // Sunday
      ['2026-07-15T05:59:00Z', false],
      ['2026-07-15T06:00:00Z', true], // 08:00 CEST
      ['2026-07-15T15:59:00Z', true],
      ['2026-07-15T16:00:00Z', false],
    ]);
    expect(iso(nextChange(s, at('2026-01-14T12:00:00+01:00')))).toBe('2026-01-14T17:00:00.000Z');
    expect(iso(nextChange(s, at('2026-01-16T18:00:00+01:00')))).toBe('2026-01-19T07:00:00.000Z');
    expect(iso(nextChange(s, at('2026-07-15T05:00:00Z')))).toBe('2026-07-15T06:00:00.000Z');
  });

  test('Saturday 22:00 to Sunday 02:00 (crossing midnight)', () => {
    const s = schedule('Europe/Berlin', [win([SAT], '22:00', '02:00')]);
    expectStates(s, [
      ['2026-01-16T23:00:00+01:00', false], // Friday
      ['2026-01-17T21:59:00+01:00', false],
      ['2026-01-17T22:00:00+01:00', true],
      ['2026-01-17T23:00:00+01:00', true],
      ['2026-01-18T00:00:00+01:00', true],
      ['2026-01-18T01:59:00+01:00', true],
      ['2026-01-18T02:00:00+01:00', false],
      ['2026-01-18T23:00:00+01:00', false], // Sunday evening: the window opens on Saturdays only
    ]);
    expect(iso(nextChange(s, at('2026-01-16T23:00:00+01:00')))).toBe('2026-01-17T21:00:00.000Z');
    expect(iso(nextChange(s, at('2026-01-17T23:00:00+01:00')))).toBe('2026-01-18T01:00:00.000Z');
  });

  test('to: 1440 ends at midnight, and the next day is not in the window', () => {
    const s = schedule('Europe/Berlin', [win([MON], '20:00', 1440)]);
    expectStates(s, [
      ['2026-01-19T19:59:00+01:00', false],
      ['2026-01-19T20:00:00+01:00', true],
      ['2026-01-19T23:59:00+01:00', true],
      ['2026-01-20T00:00:00+01:00', false],
    ]);
    expect(iso(nextChange(s, at('2026-01-19T21:00:00+01:00')))).toBe('2026-01-19T23:00:00.000Z');
  });

  test('to equal to from: a full 24 hours from the start day', () => {
    const s = schedule('UTC', [win([MON], '10:00', '10:00')]);
    expectStates(s, [
      ['2026-01-05T09:59:00Z', false],
      ['2026-01-05T10:00:00Z', true],
      ['2026-01-06T09:59:00Z', true],
      ['2026-01-06T10:00:00Z', false],
    ]);
    expect(changesFrom(s, '2026-01-05T00:00:00Z', 2)).toEqual(['2026-01-05T10:00:00.000Z', '2026-01-06T10:00:00.000Z']);
  });

  test('windows that together cover the week: always open, nextChange null', () => {
    for (const s of [
      schedule('Europe/Berlin', [win(EVERY_DAY, '00:00', 1440)]),
      schedule('America/New_York', [win(EVERY_DAY, '12:00', '12:00')]),
      schedule('UTC', [win([SUN, TUE, THU, SAT], '00:00', 1440), win([MON, WED, FRI], '00:00', 1440)]),
    ]) {
      for (const when of ['2026-03-29T01:00:00Z', '2026-10-25T01:30:00Z', '2026-11-01T06:00:00Z', '2026-06-01T12:00:00Z']) {
        expect([s.timezone, when, isOpen(s, at(when)), nextChange(s, at(when))]).toEqual([s.timezone, when, true, null]);
      }
    }
  });

  test('no windows, or a window on no day: never open, nextChange null', () => {
    for (const s of [schedule('Europe/Berlin', []), schedule('UTC', [win([], '08:00', '18:00')])]) {
      for (const when of ['2026-03-29T01:00:00Z', '2026-06-01T12:00:00Z']) {
        expect([isOpen(s, at(when)), nextChange(s, at(when))]).toEqual([false, null]);
      }
    }
  });

  test('an unknown zone throws RangeError', () => {
    const s = schedule('Mars/Olympus', [win(WEEKDAYS, '08:00', '18:00')]);
    expect(() => isOpen(s, 0)).toThrow(RangeError);
    expect(() => nextChange(s, 0)).toThrow(RangeError);
  });

  test('zones with half- and quarter-hour offsets', () => {
    const kolkata = schedule('Asia/Kolkata', [win(EVERY_DAY, '09:00', '17:30')]);
    expectStates(kolkata, [
      ['2026-01-14T03:29:00Z', false],
      ['2026-01-14T03:30:00Z', true], // 09:00 IST
      ['2026-01-14T11:59:00Z', true],
      ['2026-01-14T12:00:00Z', false], // 17:30 IST
    ]);
    expect(changesFrom(kolkata, '2026-01-14T03:29:30Z', 2)).toEqual(['2026-01-14T03:30:00.000Z', '2026-01-14T12:00:00.000Z']);

    const kathmandu = schedule('Asia/Kathmandu', [win([THU], '00:00', '00:15')]);
    expectStates(kathmandu, [
      ['2026-01-14T18:14:00Z', false],
      ['2026-01-14T18:15:00Z', true], // Thursday 00:00 NPT
      ['2026-01-14T18:29:00Z', true],
      ['2026-01-14T18:30:00Z', false],
    ]);
    expect(changesFrom(kathmandu, '2026-01-14T12:00:00Z', 2)).toEqual(['2026-01-14T18:15:00.000Z', '2026-01-14T18:30:00.000Z']);
  });
});

describe('spring forward: the skipped hour', () => {
  // Europe/Berlin, Sunday 2026-03-29: 01:59 CET (00:59Z) is followed by 03:00 CEST (01:00Z).
  test('the gap is where the test assumes it', () => {
    expect(wallClock('Europe/Berlin', at('2026-03-29T00:59:00Z'))).toEqual({ day: SUN, minute: hm('01:59') });
    expect(wallClock('Europe/Berlin', at('2026-03-29T01:00:00Z'))).toEqual({ day: SUN, minute: hm('03:00') });
    expect(wallClock('America/New_York', at('2026-03-08T06:59:00Z'))).toEqual({ day: SUN, minute: hm('01:59') });
    expect(wallClock('America/New_York', at('2026-03-08T07:00:00Z'))).toEqual({ day: SUN, minute: hm('03:00') });
  });

  test('Berlin: a window from 02:30 opens at 03:00, the first minute that exists', () => {
    const s = schedule('Europe/Berlin', [win([SUN], '02:30', '04:00')]);
    expectStates(s, [
      ['2026-03-29T00:59:00Z', false],
      ['2026-03-29T01:00:00Z', true],
      ['2026-03-29T01:59:00Z', true],
      ['2026-03-29T02:00:00Z', false], // 04:00 CEST
    ]);
    expect(changesFrom(s, '2026-03-29T00:30:00Z', 2)).toEqual(['2026-03-29T01:00:00.000Z', '2026-03-29T02:00:00.000Z']);
  });

  test('Berlin: a window wholly inside the gap does not open that day', () => {
    const s = schedule('Europe/Berlin', [win([SUN], '02:00', '02:30')]);
    expectStates(s, [
      ['2026-03-29T00:59:00Z', false],
      ['2026-03-29T01:00:00Z', false],
      ['2026-04-05T00:00:00Z', true], // next Sunday 02:00 CEST
    ]);
    expect(iso(nextChange(s, at('2026-03-29T00:00:00Z')))).toBe('2026-04-05T00:00:00.000Z');
  });

  test('Berlin: windows ending in the gap close at 03:00', () => {
    const s = schedule('Europe/Berlin', [win([SUN], '01:00', '02:30')]);
    expectStates(s, [
      ['2026-03-29T00:00:00Z', true],
      ['2026-03-29T00:59:00Z', true],
      ['2026-03-29T01:00:00Z', false],
    ]);
    expect(iso(nextChange(s, at('2026-03-29T00:00:00Z')))).toBe('2026-03-29T01:00:00.000Z');

    const overnight = schedule('Europe/Berlin', [win([SAT], '23:00', '02:00')]);
    expectStates(overnight, [
      ['2026-03-28T21:59:00Z', false],
      ['2026-03-28T22:00:00Z', true],
      ['2026-03-29T00:59:00Z', true],
      ['2026-03-29T01:00:00Z', false],
    ]);
    expect(changesFrom(overnight, '2026-03-28T21:00:00Z', 2)).toEqual(['2026-03-28T22:00:00.000Z', '2026-03-29T01:00:00.000Z']);
  });

  test('Berlin: a window ending at 02:00 and one starting at 03:00 hand over in one instant', () => {
    const s = schedule('Europe/Berlin', [win([SUN], '00:00', '02:00'), win([SUN], '03:00', '05:00')]);
    expectStates(s, [
      ['2026-03-29T00:59:00Z', true],
      ['2026-03-29T01:00:00Z', true],
      ['2026-03-29T02:59:00Z', true],
      ['2026-03-29T03:00:00Z', false], // 05:00 CEST
    ]);
    expect(iso(nextChange(s, at('2026-03-28T23:30:00Z')))).toBe('2026-03-29T03:00:00.000Z');
  });

  test('New York: 02:30 opens at 03:00; a window of 02:00–03:00 does not open', () => {
    const s = schedule('America/New_York', [win([SUN], '02:30', '04:00')]);
    expectStates(s, [
      ['2026-03-08T06:59:00Z', false],
      ['2026-03-08T07:00:00Z', true],
      ['2026-03-08T07:59:00Z', true],
      ['2026-03-08T08:00:00Z', false],
    ]);
    expect(changesFrom(s, '2026-03-08T06:00:00Z', 2)).toEqual(['2026-03-08T07:00:00.000Z', '2026-03-08T08:00:00.000Z']);

    const gap = schedule('America/New_York', [win([SUN], '02:00', '03:00')]);
    expectStates(gap, [
      ['2026-03-08T06:59:00Z', false],
      ['2026-03-08T07:00:00Z', false],
      ['2026-03-15T06:00:00Z', true], // next Sunday 02:00 EDT
    ]);
    expect(iso(nextChange(gap, at('2026-03-08T06:00:00Z')))).toBe('2026-03-15T06:00:00.000Z');
  });
});

describe('fall back: the repeated hour', () => {
  test('the repeated hour is where the test assumes it', () => {
    expect(wallClock('Europe/Berlin', at('2026-10-25T00:59:00Z'))).toEqual({ day: SUN, minute: hm('02:59') });
    expect(wallClock('Europe/Berlin', at('2026-10-25T01:00:00Z'))).toEqual({ day: SUN, minute: hm('02:00') });
    expect(wallClock('America/New_York', at('2026-11-01T05:59:00Z'))).toEqual({ day: SUN, minute: hm('01:59') });
    expect(wallClock('America/New_York', at('2026-11-01T06:00:00Z'))).toEqual({ day: SUN, minute: hm('01:00') });
  });

  test('Berlin: 02:00–02:30 is open in both occurrences', () => {
    const s = schedule('Europe/Berlin', [win([SUN], '02:00', '02:30')]);
    expectStates(s, [
      ['2026-10-24T23:59:00Z', false],
      ['2026-10-25T00:00:00Z', true], // 02:00 CEST
      ['2026-10-25T00:29:00Z', true],
      ['2026-10-25T00:30:00Z', false],
      ['2026-10-25T00:59:00Z', false],
      ['2026-10-25T01:00:00Z', true], // 02:00 CET
      ['2026-10-25T01:29:00Z', true],
      ['2026-10-25T01:30:00Z', false],
    ]);
    expect(changesFrom(s, '2026-10-24T23:30:00Z', 5)).toEqual([
      '2026-10-25T00:00:00.000Z', '2026-10-25T00:30:00.000Z',
      '2026-10-25T01:00:00.000Z', '2026-10-25T01:30:00.000Z',
      '2026-11-01T01:00:00.000Z', // next Sunday 02:00 CET
    ]);
  });

  test('Berlin: 01:00–03:00 stays open three real hours', () => {
    const s = schedule('Europe/Berlin', [win([SUN], '01:00', '03:00')]);
    expectStates(s, [
      ['2026-10-24T22:59:00Z', false],
      ['2026-10-24T23:00:00Z', true],
      ['2026-10-25T00:59:00Z', true],
      ['2026-10-25T01:00:00Z', true],
      ['2026-10-25T01:59:00Z', true],
      ['2026-10-25T02:00:00Z', false], // 03:00 CET
    ]);
    expect(changesFrom(s, '2026-10-24T22:00:00Z', 2)).toEqual(['2026-10-24T23:00:00.000Z', '2026-10-25T02:00:00.000Z']);
  });

  test('Berlin: a window from 02:45 opens twice, closed while the clock is back before 02:45', () => {
    const s = schedule('Europe/Berlin', [win([SUN], '02:45', '04:00')]);
    expect(changesFrom(s, '2026-10-25T00:00:00Z', 3)).toEqual([
      '2026-10-25T00:45:00.000Z', '2026-10-25T01:00:00.000Z', '2026-10-25T01:45:00.000Z',
    ]);
    expectStates(s, [
      ['2026-10-25T00:45:00Z', true],
      ['2026-10-25T01:00:00Z', false],
      ['2026-10-25T01:45:00Z', true],
      ['2026-10-25T02:59:00Z', true],
      ['2026-10-25T03:00:00Z', false],
    ]);
  });

  test('New York: 01:00–01:30 is open in both occurrences', () => {
    const s = schedule('America/New_York', [win([SUN], '01:00', '01:30')]);
    expectStates(s, [
      ['2026-11-01T04:59:00Z', false],
      ['2026-11-01T05:00:00Z', true], // 01:00 EDT
      ['2026-11-01T05:29:00Z', true],
      ['2026-11-01T05:30:00Z', false],
      ['2026-11-01T06:00:00Z', true], // 01:00 EST
      ['2026-11-01T06:29:00Z', true],
      ['2026-11-01T06:30:00Z', false],
    ]);
    expect(changesFrom(s, '2026-11-01T04:00:00Z', 4)).toEqual([
      '2026-11-01T05:00:00.000Z', '2026-11-01T05:30:00.000Z',
      '2026-11-01T06:00:00.000Z', '2026-11-01T06:30:00.000Z',
    ]);
  });
});

describe('the memo of isOpen', () => {
  test('reads the clock once per schedule and UTC minute', () => {
    const s = schedule('Europe/Berlin', [win(WEEKDAYS, '08:00', '18:00')]);
    const other = schedule('Europe/Berlin', [win(WEEKDAYS, '08:00', '18:00')]);
    const read = jest.spyOn(Intl.DateTimeFormat.prototype, 'formatToParts');
    expect(isOpen(s, at('2026-01-14T16:59:00Z'))).toBe(true);
    expect(isOpen(s, at('2026-01-14T16:59:59.999Z'))).toBe(true);
    expect(read).toHaveBeenCalledTimes(1);
    expect(isOpen(other, at('2026-01-14T16:59:30Z'))).toBe(true);
    expect(read).toHaveBeenCalledTimes(2);
    expect(isOpen(s, at('2026-01-14T17:00:00Z'))).toBe(false);
    expect(read).toHaveBeenCalledTimes(3);
  });
});

describe('nextChange agrees with isOpen minute by minute', () => {
  interface Case {
    readonly schedule: Schedule;
    /** Around each: 3 days either side are sampled; DST changes, where the zone has them. */
    readonly around: readonly string[];
  }
  const cases: Case[] = [
    {
      schedule: schedule('Europe/Berlin', [
        win(WEEKDAYS, '08:00', '18:00'), win([SAT], '22:00', '02:00'), win([SUN], '02:00', '02:30'),
        win([SUN], '02:45', '04:00'), win([WED], '10:00', '10:00'),
      ]),
      around: ['2026-03-29T01:00:00Z', '2026-10-25T01:00:00Z'],
    },
    {
      schedule: schedule('America/New_York', [
        win([SUN], '01:00', '01:30'), win([SUN], '02:30', '03:00'), win([SUN, WED], '23:30', '00:30'), win([TUE], '00:00', 1440),
      ]),
      around: ['2026-03-08T07:00:00Z', '2026-11-01T06:00:00Z'],
    },
    {
      // DST of 30 minutes: 02:00 → 01:30 on 2026-04-05, 02:00 → 02:30 on 2026-10-04.
      schedule: schedule('Australia/Lord_Howe', [win([SUN], '01:30', '02:15'), win([SUN], '02:00', '02:40'), win([SAT], '20:00', '01:45')]),
      around: ['2026-04-04T15:00:00Z', '2026-10-03T15:30:00Z'],
    },
    {
      schedule: schedule('Asia/Kathmandu', [win(EVERY_DAY, '09:07', '09:53'), win([FRI], '23:59', '00:01')]),
      around: ['2026-01-14T00:00:00Z', '2026-07-15T00:00:00Z'],
    },
  ];
  const SAMPLES = 25;
  const SPAN = 6 * 1440; // sampled minutes, centred on `around`
  const HORIZON = 8 * 1440;

  test.each(cases.map((c) => [c.schedule.timezone, c] as const))('%s', (_zone, { schedule: s, around }) => {
    const random = prng(0x5eed ^ s.timezone.length);
    let spanningChange = 0;
    for (const centre of around) {
      const first = Math.floor(at(centre) / MINUTE) - SPAN / 2;
      // isOpen at each minute of the range nextChange may look at, read when first needed.
      const known = new Int8Array(SPAN + HORIZON + 1).fill(-1);
      const state = (i: number): number => {
        if (known[i] < 0) known[i] = isOpen(s, (first + i) * MINUTE) ? 1 : 0;
        return known[i];
      };
      for (let n = 0; n < SAMPLES; n++) {
        // Half the samples within 90 minutes of the centre, where the DST change is.
        const offset = n % 2 === 0 ? SPAN / 2 + (random() - 0.5) * 180 : random() * SPAN;
        const t = (first + offset) * MINUTE;
        const i = Math.floor(t / MINUTE) - first;
        let j = i + 1;
        while (j <= i + HORIZON && state(j) === state(i)) j++;
        const expected = j <= i + HORIZON ? (first + j) * MINUTE : null;
        const got = nextChange(s, t);
        expect([iso(t), iso(got)]).toEqual([iso(t), iso(expected)]);
        if (got !== null) {
          expect(isOpen(s, got)).toBe(state(i) !== 1);
          if (t < at(centre) && got >= at(centre)) spanningChange++;
        }
      }
    }
    // The samples must include intervals that cross the centre (the DST change), or the test proves little there.
    expect(spanningChange).toBeGreaterThan(0);
  });

  test('is fast: well under 1 ms a call', () => {
    const s = cases[0].schedule;
    const random = prng(42);
    const base = at('2026-03-20T00:00:00Z');
    const calls = 2000;
    const started = performance.now();
    for (let n = 0; n < calls; n++) nextChange(s, base + random() * 20 * 86_400_000);
    const perCallMs = (performance.now() - started) / calls;
    expect(perCallMs).toBeLessThan(0.5);
  });
});
