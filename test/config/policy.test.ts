import { parseConfig } from '../../src/config/load';
import { configProblems } from './problems';
import { FAKE_INTERFACES } from './fake-host';

/** Config keys of the access policy: schedules, limits, users by MAC. */

const y = (...lines: string[]): string => lines.join('\n') + '\n';

const problems = (yaml: string, file = 'p.yaml'): string[] => configProblems(yaml, file, { interfaces: FAKE_INTERFACES });

const parse = (yaml: string) => parseConfig(yaml, 'p.yaml', { interfaces: FAKE_INTERFACES });

describe('schedules', () => {
  const config = parse(y(
    'schedules:',
    '  office-hours:',
    '    timezone: Europe/Berlin',
    '    windows:',
    '      - { days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00" }',
    '      - { days: [sat], from: "22:00", to: "02:00" }',
    '  all-day:',
    '    windows: [{ days: [sun, sun], from: "00:00", to: "24:00" }]',
    'users:',
    '  contractors: { sources: [10.0.0.0/8] }',
    'services:',
    '  - name: rdp',
    '    port: 13389',
    '    mappings:',
    '      - user: contractors',
    '        schedule: office-hours',
    '        endAtClose: true',
    '        destination: finance-pc.corp.example:3389',
    '      - { user: contractors, schedule: all-day, destination: "b.example:1" }',
    '      - { user: contractors, action: reject }',
  ));

  test('normalize to days 0-6 (Sunday 0), minutes after midnight, UTC by default; mappings hold theirs', () => {
    expect(config.schedules['office-hours']).toEqual({
      name: 'office-hours', timezone: 'Europe/Berlin',
      windows: [{ days: [1, 2, 3, 4, 5], from: 480, to: 1080 }, { days: [6], from: 1320, to: 120 }],
    });
    expect(config.schedules['all-day']).toEqual({ name: 'all-day', timezone: 'UTC', windows: [{ days: [0], from: 0, to: 1440 }] });
    const [a, b, c] = config.services[0].mappings;
    expect([a.schedule?.name, a.endAtClose]).toEqual(['office-hours', true]);
    expect([b.schedule?.name, b.endAtClose]).toEqual(['all-day', false]);
    expect([c.schedule, c.endAtClose]).toEqual([null, false]);
  });

  test.each([
    ['an hour past 23', y('schedules:', '  s: { windows: [{ days: [mon], from: "25:00", to: "26:00" }] }', 'services: []'), [
      'p.yaml:2:39: schedules.s.windows[0].from: must be a time HH:MM from 00:00 to 23:59, not the string "25:00"',
      'p.yaml:2:52: schedules.s.windows[0].to: must be a time HH:MM from 00:00 to 24:00, not the string "26:00"',
    ]],
    ['24:00 as a start', y('schedules:', '  s: { windows: [{ days: [mon], from: "24:00", to: "02:00" }] }', 'services: []'), [
      'p.yaml:2:39: schedules.s.windows[0].from: must be a time HH:MM from 00:00 to 23:59, not the string "24:00"',
    ]],
    ['a day that is none', y('schedules:', '  s:', '    windows:', '      - { days: [mon, funday], from: "08:00", to: "09:00" }', 'services: []'), [
      'p.yaml:4:23: schedules.s.windows[0].days[1]: must be one of: mon, tue, wed, thu, fri, sat, sun, not the string "funday"',
    ]],
    ['an unknown zone', y('schedules:', '  s:', '    timezone: Mars/Olympus', '    windows: [{ days: [mon], from: "08:00", to: "09:00" }]', 'services: []'), [
      'p.yaml:3:15: schedules.s.timezone: "Mars/Olympus" is not a time zone this system knows (an IANA name such as Europe/Berlin, America/New_York or UTC)',
    ]],
    ['a window without a length', y('schedules:', '  s: { windows: [{ days: [mon], from: "08:00", to: "08:00" }] }', 'services: []'), [
      'p.yaml:2:18: schedules.s.windows[0]: from and to are both 08:00: a window needs a length (a whole day is "00:00" to "24:00")',
    ]],
    ['a window without days', y('schedules:', '  s: { windows: [{ from: "08:00", to: "09:00" }] }', 'services: []'), [
      'p.yaml:2:18: schedules.s.windows[0]: missing required key "days"',
    ]],
    ['a mapping naming an unknown schedule', y('schedules:', '  office: { windows: [{ days: [mon], from: "08:00", to: "09:00" }] }', 'services:',
      '  - { name: a, port: 1, mappings: [{ schedule: offce, destination: "x.example:1" }] }'), [
      'p.yaml:4:48: services[0].mappings[0].schedule: unknown schedule "offce" (schedules defines: office)',
    ]],
    ['endAtClose without a schedule', y('services:', '  - { name: a, port: 1, mappings: [{ endAtClose: true, destination: "x.example:1" }] }'), [
      'p.yaml:2:38: services[0].mappings[0].endAtClose: needs a schedule: add schedule: NAME to the mapping',
    ]],
  ])('%s', (_what, yaml, expected) => {
    expect(problems(yaml)).toEqual(expected);
  });
});

describe('limits', () => {
  test('defaults apply to every service; a service replaces what it names, off removes one', () => {
    const config = parse(y(
      'defaults:',
      '  limits: { perSource: 32, perUser: 64, rate: 20/s }',
      'services:',
      '  - { name: plain, port: 1, destination: "x.example:1" }',
      '  - { name: ssh, port: 2, destination: "x.example:22", limits: { perSource: 4, rate: 2/s } }',
      '  - { name: open, port: 3, destination: "x.example:3", limits: { perUser: off, rate: off } }',
      '  - { name: slow, port: 4, destination: "x.example:4", limits: { rate: 100/m } }',
      '  - { name: hourly, port: 5, destination: "x.example:5", limits: { rate: 1000/h } }',
    ));
    expect(config.services.map((s) => [s.name, s.limits])).toEqual([
      ['plain', { perSource: 32, perUser: 64, rate: { count: 20, perMs: 1000, text: '20/s' } }],
      ['ssh', { perSource: 4, perUser: 64, rate: { count: 2, perMs: 1000, text: '2/s' } }],
      ['open', { perSource: 32, perUser: null, rate: null }],
      ['slow', { perSource: 32, perUser: 64, rate: { count: 100, perMs: 60_000, text: '100/m' } }],
      ['hourly', { perSource: 32, perUser: 64, rate: { count: 1000, perMs: 3_600_000, text: '1000/h' } }],
    ]);
  });

  test('no limits section: no per-source, per-user or rate limit', () => {
    const config = parse(y('services:', '  - { name: a, port: 1, destination: "x.example:1" }'));
    expect(config.services[0].limits).toEqual({ perSource: null, perUser: null, rate: null });
  });

  test.each([
    ['a rate that is no rate', y('services:', '  - { name: a, port: 1, destination: "x.example:1", limits: { rate: fast } }'), [
      'p.yaml:2:69: services[0].limits.rate: must be a rate such as 20/s, 100/m or 1000/h, or off, not the string "fast"',
    ]],
    ['a rate of zero', y('defaults:', '  limits: { rate: 0/s }', 'services: []'), [
      'p.yaml:2:19: defaults.limits.rate: must be a rate such as 20/s, 100/m or 1000/h, or off, not the string "0/s"',
    ]],
    ['a count that is a word', y('defaults:', '  limits: { perSource: many }', 'services: []'), [
      'p.yaml:2:24: defaults.limits.perSource: must be a number or off, not the string "many"',
    ]],
    ['a count of zero', y('defaults:', '  limits: { perUser: 0 }', 'services: []'), [
      'p.yaml:2:22: defaults.limits.perUser: must be >= 1',
    ]],
    ['an unknown limit', y('defaults:', '  limits: { perSorce: 3 }', 'services: []'), [
      'p.yaml:2:13: defaults.limits.perSorce: unknown key (did you mean "perSource"?)',
    ]],
  ])('%s', (_what, yaml, expected) => {
    expect(problems(yaml)).toEqual(expected);
  });
});

describe('users by MAC address', () => {
  test('normalize to lower case with colons', () => {
    const config = parse(y('users:', '  kiosk: { macs: ["52:54:00:12:34:56", "52-54-00-AB-CD-EF"] }', 'services: []'));
    expect(config.users[0]).toMatchObject({ name: 'kiosk', macs: ['52:54:00:12:34:56', '52:54:00:ab:cd:ef'], sources: [], certificates: [] });
  });

  test.each([
    ['too few octets', '52:54:00:12:34'],
    ['mixed separators', '52:54-00:12:34:56'],
    ['not hex', '52:54:00:12:34:zz'],
    ['no separators', '525400123456'],
  ])('a malformed MAC (%s) is refused where it is', (_what, mac) => {
    expect(problems(y('users:', '  kiosk:', '    macs:', '      - ok: no', `      - "${mac}"`, 'services: []'))).toEqual([
      'p.yaml:4:9: users.kiosk.macs[0]: must be a string, not a mapping',
      `p.yaml:5:9: users.kiosk.macs[1]: must be a MAC address such as 52:54:00:12:34:56, not the string "${mac}"`,
    ]);
  });
});
