import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LoginFailures, sourceKey } from '../../src/auth/login-failures';
import { Gate, hashPassword, parseScryptHash, PasswordChecker, SCRYPT_COST, verifyPassword } from '../../src/auth/password';
import type { User } from '../../src/config/types';
import { CLI } from '../helpers/process';

/** What the schema accepts as `users.NAME.password`. */
const SCHEMA_PATTERN = new RegExp((JSON.parse(readFileSync(join(__dirname, '..', '..', 'schema', 'mappings.schema.json'), 'utf8')) as {
  properties: { users: { additionalProperties: { properties: { password: { pattern: string } } } } };
}).properties.users.additionalProperties.properties.password.pattern);

function user(name: string, password: string | null): User {
  return { name, sources: [], macs: [], password, certificates: [] };
}

let hash = '';
beforeAll(async () => {
  hash = await hashPassword('s3cret');
});

describe('hashPassword / verifyPassword', () => {
  test('a salted scrypt line the schema accepts, at the documented cost; verifies only its password', async () => {
    expect(hash).toMatch(SCHEMA_PATTERN);
    const h = parseScryptHash(hash)!;
    expect({ N: h.N, r: h.r, p: h.p, salt: h.salt.length, key: h.key.length }).toEqual({ N: 16384, r: 8, p: 1, salt: SCRYPT_COST.saltBytes, key: 32 });
    expect(await verifyPassword(hash, 's3cret')).toBe(true);
    expect(await verifyPassword(hash, Buffer.from('s3cret'))).toBe(true);
    expect(await verifyPassword(hash, 's3cret ')).toBe(false);
    expect(await verifyPassword(hash, '')).toBe(false);
    // Same password, fresh salt: another line.
    const again = await hashPassword('s3cret');
    expect(again).not.toBe(hash);
    expect(await verifyPassword(again, 's3cret')).toBe(true);
  });

  test('UTF-8 passwords are hashed as their bytes', async () => {
    const h = await hashPassword('pässwörd✓');
    expect(await verifyPassword(h, Buffer.from('pässwörd✓', 'utf8'))).toBe(true);
    expect(await verifyPassword(h, Buffer.from('pässwörd✓', 'latin1'))).toBe(false);
  });

  const key = Buffer.alloc(32, 1).toString('base64');
  const salt = Buffer.alloc(16, 2).toString('base64');
  test.each([
    ['', 'empty'],
    ['s3cret', 'a password, not a hash'],
    [`bcrypt:16384:8:1:${salt}:${key}`, 'another scheme'],
    [`scrypt:16384:8:1:${salt}`, 'no key'],
    [`scrypt:16384:8:1:${salt}:${key}:x`, 'a field too many'],
    [`scrypt:1000:8:1:${salt}:${key}`, 'N not a power of two'],
    [`scrypt:1:8:1:${salt}:${key}`, 'N of 1'],
    [`scrypt:4194304:8:1:${salt}:${key}`, 'N of 2^22: gigabytes'],
    [`scrypt:16384:1024:1:${salt}:${key}`, 'r far too large for the memory cap'],
    [`scrypt:16384:8:99:${salt}:${key}`, 'p above 16'],
    [`scrypt:16384:0:1:${salt}:${key}`, 'r of 0'],
    [`scrypt:16384:8:1:${salt}:${Buffer.alloc(8).toString('base64')}`, 'an 8-byte key'],
    [`scrypt:16384:8:1:AAAA:${key}`, 'a 3-byte salt'],
    [`scrypt:16384:8:1:${salt}:not*base64`, 'a key that is not base64'],
    [`scrypt:-1:8:1:${salt}:${key}`, 'a negative N'],
  ])('%j (%s) verifies nothing and never throws', async (bad) => {
    expect(parseScryptHash(bad)).toBeNull();
    const started = Date.now();
    await expect(verifyPassword(bad, 's3cret')).resolves.toBe(false);
    expect(Date.now() - started).toBeLessThan(50);
  });
});

describe('PasswordChecker', () => {
  test('a password that verified is remembered for a minute: no scrypt until then, one after', async () => {
    let now = 1_000_000;
    const checker = new PasswordChecker({ now: () => now });
    const alice = user('alice', hash);
    const always = (): boolean => true;
    expect(await checker.check(alice, Buffer.from('s3cret'), always)).toBe('ok');
    expect(checker.scryptRuns).toBe(1);
    const started = performance.now();
    for (let i = 0; i < 100; i++) expect(await checker.check(alice, Buffer.from('s3cret'), always)).toBe('ok');
    expect(performance.now() - started).toBeLessThan(50);
    expect(checker.scryptRuns).toBe(1);
    // A wrong password is never remembered, nor answered from what was.
    expect(await checker.check(alice, Buffer.from('s3cre'), always)).toBe('bad');
    expect(checker.scryptRuns).toBe(2);
    now += 60_001;
    expect(await checker.check(alice, Buffer.from('s3cret'), always)).toBe('ok');
    expect(checker.scryptRuns).toBe(3);
  });

  test('a changed hash (a reload with a new password) is checked again, and the old password fails', async () => {
    const checker = new PasswordChecker();
    const always = (): boolean => true;
    expect(await checker.check(user('alice', hash), Buffer.from('s3cret'), always)).toBe('ok');
    const renewed = user('alice', await hashPassword('n3w'));
    expect(await checker.check(renewed, Buffer.from('s3cret'), always)).toBe('bad');
    expect(await checker.check(renewed, Buffer.from('n3w'), always)).toBe('ok');
    expect(checker.scryptRuns).toBe(3);
  });

  test('an unknown user, or one without a password, costs an scrypt like a wrong password', async () => {
    const checker = new PasswordChecker();
    const always = (): boolean => true;
    const time = async (u: User | undefined): Promise<number> => {
      const started = performance.now();
      expect(await checker.check(u, Buffer.from('s3cret'), always)).toBe('bad');
      return performance.now() - started;
    };
    const wrong = await time(user('alice', await hashPassword('other')));
    const unknown = await time(undefined);
    const none = await time(user('bob', null));
    expect(checker.scryptRuns).toBe(3);
    // The same cost, as far as a loaded machine lets one tell: an early return or a cheaper hash
    // would take a few hundredths of it.
    for (const t of [unknown, none]) expect(t).toBeGreaterThan(wrong / 10);
  });

  test('at most two scrypt at once; a waiter no longer wanted runs none', async () => {
    const checker = new PasswordChecker();
    const alice = user('alice', hash);
    let peak = 0;
    const watch = setInterval(() => (peak = Math.max(peak, checker.gate.busy)), 1);
    let wanted = true;
    const results = await Promise.all([
      ...Array.from({ length: 4 }, () => checker.check(alice, Buffer.from('x'), () => true)),
      ...Array.from({ length: 4 }, () => checker.check(alice, Buffer.from('y'), () => wanted)),
      (async () => { wanted = false; return 'bad' as const; })(),
    ]);
    clearInterval(watch);
    expect(results).toEqual([...Array(4).fill('bad'), ...Array(4).fill('skipped'), 'bad']);
    expect(checker.scryptRuns).toBe(4);
    expect(peak).toBeLessThanOrEqual(2);
    expect(checker.gate.busy).toBe(0);
  });
});

describe('Gate', () => {
  test('hands its slots on in order, skipping waiters no longer wanted', async () => {
    const gate = new Gate(1);
    const order: string[] = [];
    expect(await gate.enter(() => true)).toBe(true);
    const a = gate.enter(() => true).then((ok) => order.push(`a:${ok}`));
    const b = gate.enter(() => false).then((ok) => order.push(`b:${ok}`));
    const c = gate.enter(() => true).then((ok) => order.push(`c:${ok}`));
    expect(gate.waiting).toBe(3);
    gate.leave();
    await a;
    gate.leave();
    await Promise.all([b, c]);
    expect(order).toEqual(['a:true', 'b:false', 'c:true']);
    gate.leave();
    expect([gate.busy, gate.waiting]).toEqual([0, 0]);
  });
});

describe('LoginFailures', () => {
  const limits = { failures: 5, windowMs: 60_000, blockMs: 60_000, sources: 3 };

  test('5 failures within a minute block the source for a minute; other sources are not blocked', () => {
    let now = 0;
    const f = new LoginFailures(limits, () => now);
    for (let i = 0; i < 4; i++) expect(f.failed('192.0.2.1')).toBe(false);
    expect(f.blocked('192.0.2.1')).toBe(false);
    expect(f.failed('192.0.2.1')).toBe(true);
    expect(f.blocked('192.0.2.1')).toBe(true);
    expect(f.blocked('192.0.2.2')).toBe(false);
    now += 59_999;
    expect(f.blocked('192.0.2.1')).toBe(true);
    now += 1;
    expect(f.blocked('192.0.2.1')).toBe(false);
    // Afresh: four more tries before the next block.
    for (let i = 0; i < 4; i++) expect(f.failed('192.0.2.1')).toBe(false);
    expect(f.blocked('192.0.2.1')).toBe(false);
  });

  test('failures spread over more than a minute never block', () => {
    let now = 0;
    const f = new LoginFailures(limits, () => now);
    for (let i = 0; i < 20; i++) {
      expect(f.failed('192.0.2.1')).toBe(false);
      now += 15_001;
    }
    expect(f.blocked('192.0.2.1')).toBe(false);
  });

  test('an IPv6 source counts by its /64; the table keeps at most `sources` entries', () => {
    const f = new LoginFailures(limits, () => 0);
    expect(sourceKey('2001:db8:1:2::a')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    for (let i = 0; i < 5; i++) f.failed(`2001:db8:1:2::${i + 1}`);
    expect(f.blocked('2001:db8:1:2:ffff::1')).toBe(true);
    expect(f.blocked('2001:db8:1:3::1')).toBe(false);
    for (let i = 0; i < 10; i++) f.failed(`198.51.100.${i}`);
    expect(f.size).toBe(3);
  });
});

describe('mapgate passwd', () => {
  function passwd(args: string[], stdin: string | Buffer): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d));
      child.stderr.on('data', (d: Buffer) => (stderr += d));
      child.once('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(stdin);
    });
  }

  test('reads one line on stdin and prints a hash of it (without the newline) that verifies', async () => {
    const r = await passwd(['passwd'], 's3cret\nsecond line\n');
    expect([r.code, r.stderr]).toEqual([0, '']);
    const lines = r.stdout.split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(SCHEMA_PATTERN);
    expect(await verifyPassword(lines[0], 's3cret')).toBe(true);
    const crlf = await passwd(['passwd'], 'p w\r\n');
    expect(await verifyPassword(crlf.stdout.trim(), 'p w')).toBe(true);
    const noNewline = await passwd(['passwd'], 'last');
    expect(await verifyPassword(noNewline.stdout.trim(), 'last')).toBe(true);
  });

  test('an empty password, or one longer than SOCKS5 can carry (255 bytes), exits 1 and prints no hash', async () => {
    for (const input of ['', '\n', `${'x'.repeat(256)}\n`]) {
      const r = await passwd(['passwd'], input);
      expect([r.code, r.stdout]).toEqual([1, '']);
      expect(r.stderr).toMatch(/^mapgate: /);
    }
    const longest = await passwd(['passwd'], `${'x'.repeat(255)}\n`);
    expect(await verifyPassword(longest.stdout.trim(), 'x'.repeat(255))).toBe(true);
  });

  test('extra arguments are bad usage: exit 2 with the usage', async () => {
    for (const args of [['passwd', 'alice'], ['passwd', '-c', 'x.yaml'], ['-c', 'x.yaml', 'passwd'], ['--config=x.yaml', 'passwd']]) {
      const r = await passwd(args, 's3cret\n');
      expect([args, r.code, r.stdout]).toEqual([args, 2, '']);
      expect(r.stderr).toContain('mapgate passwd');
    }
  });
});
