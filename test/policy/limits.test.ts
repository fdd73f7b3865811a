import type { Limits } from '../../src/config/types';
import { Limiter, type Admission, type LimitName } from '../../src/policy/limits';

const limits = (l: Partial<Limits>): Limits => ({ perSource: null, perUser: null, rate: null, ...l });
const rate = (count: number, perMs: number): Limits['rate'] => ({ count, perMs, text: `${count}/${perMs}ms` });
const NONE = limits({});

/** The admission, failing the test with the refusal's name when there is none. */
function admitted(result: Admission | LimitName): Admission {
  expect(typeof result).toBe('object');
  return result as Admission;
}

describe('Limiter: rate', () => {
  test('a burst of `count`, then refusal at the same instant', () => {
    const limiter = new Limiter();
    const l = limits({ rate: rate(3, 1000) });
    for (let i = 0; i < 3; i++) admitted(limiter.admit(l, '192.0.2.1', null, 0)).release();
    expect(limiter.admit(l, '192.0.2.1', null, 0)).toBe('rate');
    // Buckets are per address: another one has its own burst.
    admitted(limiter.admit(l, '192.0.2.2', null, 0));
  });

  test('refills fractionally: 2/s gives exactly one more token 500 ms later', () => {
    const limiter = new Limiter();
    const l = limits({ rate: rate(2, 1000) });
    admitted(limiter.admit(l, 'a', null, 0)).release();
    admitted(limiter.admit(l, 'a', null, 0)).release();
    expect(limiter.admit(l, 'a', null, 499)).toBe('rate');
    admitted(limiter.admit(l, 'a', null, 500)).release();
    expect(limiter.admit(l, 'a', null, 500)).toBe('rate');
  });

  test('many small refills add up to a whole token, exactly', () => {
    const limiter = new Limiter();
    const l = limits({ rate: rate(1, 10) });
    admitted(limiter.admit(l, 'a', null, 0)).release();
    for (let t = 1; t < 10; t++) expect(limiter.admit(l, 'a', null, t)).toBe('rate');
    admitted(limiter.admit(l, 'a', null, 10)).release();
  });

  test('per minute (perMs 60000): one token per 12 s, never more than the burst', () => {
    const limiter = new Limiter();
    const l = limits({ rate: rate(5, 60_000) });
    for (let i = 0; i < 5; i++) admitted(limiter.admit(l, 'a', null, 0)).release();
    expect(limiter.admit(l, 'a', null, 11_999)).toBe('rate');
    admitted(limiter.admit(l, 'a', null, 12_000)).release();
    expect(limiter.admit(l, 'a', null, 12_000)).toBe('rate');
    // An hour idle still fills only to `count`.
    for (let i = 0; i < 5; i++) admitted(limiter.admit(l, 'a', null, 3_600_000)).release();
    expect(limiter.admit(l, 'a', null, 3_600_000)).toBe('rate');
    // So does a partial refill of a bucket that was not empty: 4 left + 2.5 earned → 5.
    admitted(limiter.admit(l, 'a', null, 3_660_000)).release();
    for (let i = 0; i < 5; i++) admitted(limiter.admit(l, 'a', null, 3_690_000)).release();
    expect(limiter.admit(l, 'a', null, 3_690_000)).toBe('rate');
  });

  test('a reload that changes the rate keeps the tokens left, neither refilled nor lost', () => {
    const limiter = new Limiter();
    const before = limits({ rate: rate(2, 1000) });
    admitted(limiter.admit(before, 'a', null, 0)).release();
    // The same 2/s written per minute: one token left stays one token, though its units differ.
    const after = limits({ rate: rate(120, 60_000) });
    admitted(limiter.admit(after, 'a', null, 0)).release();
    expect(limiter.admit(after, 'a', null, 0)).toBe('rate');
    // Then the new rate refills: one token per 500 ms.
    admitted(limiter.admit(after, 'a', null, 500)).release();
    expect(limiter.admit(after, 'a', null, 500)).toBe('rate');
  });

  test('rate is checked first, and an attempt refused later still spent its token', () => {
    const limiter = new Limiter();
    const l = limits({ rate: rate(2, 1000), perSource: 1 });
    const open = admitted(limiter.admit(l, 'a', null, 0));
    expect(limiter.admit(l, 'a', null, 0)).toBe('per-source');
    open.release();
    expect(limiter.admit(l, 'a', null, 0)).toBe('rate');
  });
});

describe('Limiter: open connections', () => {
  test('per source: refused at the limit, admitted again after a release', () => {
    const limiter = new Limiter();
    const l = limits({ perSource: 2 });
    const first = admitted(limiter.admit(l, 'a', null, 0));
    admitted(limiter.admit(l, 'a', null, 0));
    expect(limiter.admit(l, 'a', null, 0)).toBe('per-source');
    admitted(limiter.admit(l, 'b', null, 0));
    first.release();
    admitted(limiter.admit(l, 'a', null, 0));
    expect(limiter.admit(l, 'a', null, 0)).toBe('per-source');
  });

  test('per user: counted across addresses', () => {
    const limiter = new Limiter();
    const l = limits({ perUser: 2 });
    const first = admitted(limiter.admit(l, 'a', 'alice', 0));
    admitted(limiter.admit(l, 'b', 'alice', 0));
    expect(limiter.admit(l, 'c', 'alice', 0)).toBe('per-user');
    admitted(limiter.admit(l, 'c', 'bob', 0));
    first.release();
    admitted(limiter.admit(l, 'c', 'alice', 0));
    expect(limiter.admit(l, 'd', 'alice', 0)).toBe('per-user');
  });

  test('an unidentified client (user null) is never limited per user', () => {
    const limiter = new Limiter();
    const l = limits({ perUser: 1 });
    for (let i = 0; i < 10; i++) admitted(limiter.admit(l, `10.0.0.${i}`, null, 0));
    expect(limiter.openUsers).toBe(0);
    expect(limiter.openSources).toBe(10);
  });

  test('a refused attempt counts nothing open', () => {
    const limiter = new Limiter();
    const l = limits({ rate: rate(3, 1000), perSource: 2, perUser: 1 });
    const alice = admitted(limiter.admit(l, 'a', 'alice', 0));
    expect(limiter.admit(l, 'b', 'alice', 0)).toBe('per-user');
    expect(limiter.openSources).toBe(1);
    const anon = admitted(limiter.admit(l, 'a', null, 0));
    expect(limiter.admit(l, 'a', 'bob', 0)).toBe('per-source');
    expect(limiter.admit(l, 'a', 'bob', 0)).toBe('rate');
    expect(limiter.openSources).toBe(1);
    expect(limiter.openUsers).toBe(1);
    alice.release();
    anon.release();
    expect(limiter.openSources).toBe(0);
    expect(limiter.openUsers).toBe(0);
  });

  test('a release deletes entries that reach zero, and a second release does nothing', () => {
    const limiter = new Limiter();
    const l = limits({ perSource: 5, perUser: 5 });
    const one = admitted(limiter.admit(l, 'a', 'alice', 0));
    const two = admitted(limiter.admit(l, 'a', 'alice', 0));
    const other = admitted(limiter.admit(l, 'b', 'bob', 0));
    expect([limiter.openSources, limiter.openUsers]).toEqual([2, 2]);
    one.release();
    one.release();
    expect([limiter.openSources, limiter.openUsers]).toEqual([2, 2]);
    two.release();
    expect([limiter.openSources, limiter.openUsers]).toEqual([1, 1]);
    other.release();
    expect([limiter.openSources, limiter.openUsers]).toEqual([0, 0]);
  });
});

describe('Limiter: config reloads', () => {
  test('no limit at all: nothing is tracked, and the admission releases nothing', () => {
    const limiter = new Limiter();
    const a = admitted(limiter.admit(NONE, 'a', 'alice', 0));
    expect([limiter.trackedSources, limiter.openSources, limiter.openUsers]).toEqual([0, 0, 0]);
    a.release();
    expect([limiter.trackedSources, limiter.openSources, limiter.openUsers]).toEqual([0, 0, 0]);
  });

  test('limits off → on → off with connections open: counts stay exact, none negative, none left', () => {
    const limiter = new Limiter();
    const on = limits({ perSource: 1, perUser: 1 });
    const beforeReload = admitted(limiter.admit(NONE, 'a', 'alice', 0));

    // Turned on: the connection opened under no limit is not counted (documented), this one is.
    const counted = admitted(limiter.admit(on, 'a', 'alice', 1));
    expect(limiter.admit(on, 'a', null, 2)).toBe('per-source');
    expect(limiter.admit(on, 'b', 'alice', 2)).toBe('per-user');
    // Releasing the uncounted one must not free the counted one's slot.
    beforeReload.release();
    expect(limiter.admit(on, 'a', null, 3)).toBe('per-source');
    expect(limiter.admit(on, 'b', 'alice', 3)).toBe('per-user');

    // Turned off: admitted without counting, while the counted connection stays counted.
    const whileOff = admitted(limiter.admit(NONE, 'a', 'alice', 4));
    expect([limiter.openSources, limiter.openUsers]).toEqual([1, 1]);
    counted.release();
    whileOff.release();
    expect([limiter.openSources, limiter.openUsers]).toEqual([0, 0]);

    // On again: exactly one slot each, so no count went below zero.
    const again = admitted(limiter.admit(on, 'a', 'alice', 5));
    expect(limiter.admit(on, 'a', null, 5)).toBe('per-source');
    expect(limiter.admit(on, 'b', 'alice', 5)).toBe('per-user');
    again.release();
    expect([limiter.openSources, limiter.openUsers]).toEqual([0, 0]);
  });

  test('a config with only a rate still counts open connections, for a per-source limit a reload adds', () => {
    const limiter = new Limiter();
    const open = admitted(limiter.admit(limits({ rate: rate(10, 1000) }), 'a', null, 0));
    expect(limiter.admit(limits({ perSource: 1 }), 'a', null, 1)).toBe('per-source');
    open.release();
    expect(limiter.openSources).toBe(0);
  });
});

describe('Limiter: memory stays bounded', () => {
  test('a flood of 200,000 addresses keeps ≤ maxSources buckets, and a steady client keeps its own', () => {
    const limiter = new Limiter(1000);
    const l = limits({ rate: rate(10, 1000), perSource: 4 });
    const steady = '198.51.100.7';
    // The steady client spends its burst first, so a fresh bucket (an eviction) would show.
    for (let i = 0; i < 10; i++) admitted(limiter.admit(l, steady, null, 0)).release();

    let floodRefused = 0;
    let steadyAdmitted = 0;
    for (let i = 1; i <= 200_000; i++) {
      const now = i; // 1 ms per flood attempt: the steady client, every 100, earns exactly one token (10/s).
      // No expect() per attempt: jest's matchers would make this loop take seconds.
      const f = limiter.admit(l, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, null, now);
      if (typeof f === 'object') f.release();
      else floodRefused++;
      if (i % 100 === 0) {
        const r = limiter.admit(l, steady, null, now);
        if (typeof r === 'object') {
          steadyAdmitted++;
          r.release();
        }
      }
    }

    expect(floodRefused).toBe(0);
    expect(steadyAdmitted).toBe(2000);
    expect(limiter.trackedSources).toBeLessThanOrEqual(1000);
    expect(limiter.openSources).toBe(0);
    expect(limiter.openUsers).toBe(0);
    // Its bucket is the one it has been spending: one more at the same instant exceeds the rate.
    expect(limiter.admit(l, steady, null, 200_000)).toBe('rate');
  });
});
