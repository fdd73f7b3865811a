import { parseConfig } from '../../src/config/load';
import type { ClientDisconnectEvent } from '../../src/events/events';
import { adminGet, connect, nextDisconnect, portOf, readUntilClose, recordEvents, sendAndCollect, startGateway, startTaggedServer } from '../helpers/net';

/**
 * Schedules end to end, with the gateway's clock injected: a mapping matches only inside its
 * windows, `endAtClose` closes what it routed when the window ends (by the gateway's own timer
 * too), `/status` says open or closed and when that changes, and a reload moves the close.
 */

/** Wednesday 2026-12-02, in Berlin (UTC+1 in December). */
const berlin = (hhmm: string, day = '02'): number => Date.parse(`2026-12-${day}T${hhmm}:00+01:00`);

function yaml(office: number, other: number, to = '18:00', endAtClose = true): string {
  return `
admin: { listen: "127.0.0.1:0" }
schedules:
  office-hours:
    timezone: Europe/Berlin
    windows:
      - { days: [mon, tue, wed, thu, fri], from: "08:00", to: "${to}" }
users:
  contractors: { sources: [127.0.0.0/8] }
services:
  - name: rdp
    port: 0
    bind: [127.0.0.1]
    mappings:
      - user: contractors
        schedule: office-hours
        endAtClose: ${endAtClose}
        destination: "127.0.0.1:${office}"
      - user: contractors
        action: reject
  - name: wiki
    port: 0
    bind: [127.0.0.1]
    mappings:
      - { user: contractors, schedule: office-hours, destination: "127.0.0.1:${other}" }
`;
}

async function setup(to = '18:00') {
  const office = await startTaggedServer('office');
  const other = await startTaggedServer('wiki');
  const clock = { now: berlin('10:00') };
  const gw = await startGateway(yaml(office, other, to), { gateway: { clock: () => clock.now } });
  return { gw, clock, office, other, rdp: portOf(gw, 'rdp'), wiki: portOf(gw, 'wiki') };
}

/** Connects and waits until the upstream's tag arrived: the connection is relaying. */
async function open(port: number, tag: string) {
  const s = await connect(port);
  await new Promise<void>((resolve) => {
    let got = '';
    const on = (c: Buffer): void => {
      got += c.toString();
      if (got.startsWith(`${tag}:`)) {
        s.off('data', on);
        resolve();
      }
    };
    s.on('data', on);
  });
  return s;
}

describe('schedules', () => {
  test('inside the window the mapping routes; outside, the next mapping (reject) decides', async () => {
    const { gw, clock, rdp } = await setup();
    const events = recordEvents(gw);
    expect((await sendAndCollect(rdp, 'x')).data.toString()).toBe('office:x');
    clock.now = berlin('18:00');
    expect((await sendAndCollect(rdp, 'x')).data.toString()).toBe('');
    clock.now = berlin('07:59');
    expect((await sendAndCollect(rdp, 'x')).data.toString()).toBe('');
    clock.now = berlin('10:00', '05'); // Saturday
    expect((await sendAndCollect(rdp, 'x')).data.toString()).toBe('');
    const reasons = events.filter((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect').map((e) => e.reason);
    expect(reasons).toEqual(['client-closed', 'rejected', 'rejected', 'rejected']);
  });

  test('endAtClose: open connections close with reason schedule when the window ends; others stay', async () => {
    const { gw, clock, rdp, wiki } = await setup();
    const ending = await open(rdp, 'office');
    const staying = await open(wiki, 'wiki');
    const closed = nextDisconnect(gw);
    const ended = readUntilClose(ending);

    clock.now = berlin('17:59');
    expect(gw.enforceSchedules()).toBe(0);
    clock.now = berlin('18:00');
    expect(gw.enforceSchedules()).toBe(1);
    await expect(closed).resolves.toMatchObject({ service: 'rdp', reason: 'schedule', user: 'contractors' });
    await ended;
    // The mapping without endAtClose keeps what it routed.
    staying.write('still');
    await expect(new Promise((r) => staying.once('data', (c: Buffer) => r(c.toString())))).resolves.toBe('still');
  });

  test("the gateway's own timer closes them at the minute the window ends", async () => {
    const office = await startTaggedServer('office');
    const other = await startTaggedServer('wiki');
    // A clock 1.5 s before 18:00 Berlin that runs at real speed.
    const offset = berlin('18:00') - 1500 - Date.now();
    const gw = await startGateway(yaml(office, other), { gateway: { clock: () => Date.now() + offset } });
    const closed = nextDisconnect(gw);
    const ended = readUntilClose(await open(portOf(gw, 'rdp'), 'office'));
    const e = await closed;
    expect(e.reason).toBe('schedule');
    // Not before the window ended.
    expect(Date.now() + offset).toBeGreaterThanOrEqual(berlin('18:00'));
    await ended;
  });

  test('/status shows each scheduled mapping: open now, and when that next changes', async () => {
    const { gw, clock } = await setup();
    const status = (): Promise<{ services: Array<{ name: string; schedules: unknown[] }> }> => adminGet(gw, '/status').then((r) => JSON.parse(r.body));
    let s = await status();
    expect(s.services.find((x) => x.name === 'rdp')!.schedules).toEqual([
      { mapping: 0, schedule: 'office-hours', timezone: 'Europe/Berlin', open: true, nextChange: new Date(berlin('18:00')).toISOString(), endAtClose: true },
    ]);
    clock.now = berlin('19:00', '04'); // Friday evening: next open on Monday
    s = await status();
    expect(s.services.find((x) => x.name === 'wiki')!.schedules).toEqual([
      { mapping: 0, schedule: 'office-hours', timezone: 'Europe/Berlin', open: false, nextChange: new Date(berlin('08:00', '07')).toISOString(), endAtClose: false },
    ]);
  });

  test('a reload that moves the window: new connections follow it, and so does endAtClose', async () => {
    const { gw, clock, office, other, rdp } = await setup();
    const s = await open(rdp, 'office');
    const ended = readUntilClose(s);
    const result = await gw.reload(parseConfig(yaml(office, other, '20:00'), 'test.yaml'));
    expect(result.ok).toBe(true);

    clock.now = berlin('18:30');
    expect(gw.enforceSchedules()).toBe(0);
    expect((await sendAndCollect(rdp, 'late')).data.toString()).toBe('office:late');
    clock.now = berlin('20:00');
    const closed = nextDisconnect(gw);
    expect(gw.enforceSchedules()).toBe(1);
    await expect(closed).resolves.toMatchObject({ reason: 'schedule' });
    await ended;
  });

  test('a reload whose schedule is already closed ends those connections at once', async () => {
    const { gw, clock, office, other, rdp } = await setup();
    const s = await open(rdp, 'office');
    const ended = readUntilClose(s);
    clock.now = berlin('17:00');
    const closed = nextDisconnect(gw);
    await gw.reload(parseConfig(yaml(office, other, '16:00'), 'test.yaml'));
    await expect(closed).resolves.toMatchObject({ reason: 'schedule' });
    await ended;
  });
});
