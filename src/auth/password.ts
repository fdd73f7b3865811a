import { createHmac, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { LazyLru } from '../lru';
import type { User } from '../config/types';

/**
 * The cost `hashPassword` uses: N=2^14, r=8, p=1 (16 MiB and about 75 ms per hash on one core of
 * the CI machine), a 16-byte random salt and a 32-byte key, as OWASP's password storage sheet
 * recommends for scrypt at the least.
 */
export const SCRYPT_COST = Object.freeze({ N: 16384, r: 8, p: 1, saltBytes: 16, keyBytes: 32 });

/**
 * The most memory one verification may take (node's scrypt refuses a cost above it). A hash
 * asking for more, or for a p above MAX_P, is treated as malformed: a config cannot make one
 * login hold gigabytes or the thread pool for seconds.
 */
const MAX_MEM = 64 * 1024 * 1024;
const MAX_P = 16;

/** A parsed `scrypt:N:r:p:salt:key` line. */
export interface ScryptHash {
  readonly N: number;
  readonly r: number;
  readonly p: number;
  readonly salt: Buffer;
  readonly key: Buffer;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const DECIMAL = /^[0-9]{1,10}$/;

/**
 * Parses a hash as `mapgate passwd` prints it; null when it is malformed or asks for a cost
 * outside the bounds above (N a power of two from 2 to 2^20, 128·N·r within half of the 64 MiB cap, p ≤ 16, a
 * key of 16 to 64 bytes, a salt of at least 8).
 */
export function parseScryptHash(text: string): ScryptHash | null {
  const parts = text.split(':');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null;
  const [, nText, rText, pText, saltText, keyText] = parts;
  if (!DECIMAL.test(nText) || !DECIMAL.test(rText) || !DECIMAL.test(pText)) return null;
  if (!BASE64.test(saltText) || !BASE64.test(keyText)) return null;
  const N = Number(nText);
  const r = Number(rText);
  const p = Number(pText);
  if (N < 2 || N > 2 ** 20 || (N & (N - 1)) !== 0 || r < 1 || p < 1 || p > MAX_P || 128 * N * r > MAX_MEM / 2) return null;
  const salt = Buffer.from(saltText, 'base64');
  const key = Buffer.from(keyText, 'base64');
  if (salt.length < 8 || key.length < 16 || key.length > 64) return null;
  return { N, r, p, salt, key };
}

/** scrypt in the thread pool; rejects on bad parameters instead of throwing. */
function derive(password: Buffer | string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    try {
      scrypt(password, salt, keylen, { ...options, maxmem: MAX_MEM }, (err, key) => (err ? reject(err) : resolve(key)));
    } catch (err) {
      reject(err);
    }
  });
}

/** A salted scrypt hash of `password`, as `scrypt:N:r:p:saltBase64:keyBase64` (what `users.NAME.password` takes). */
export async function hashPassword(password: string | Buffer): Promise<string> {
  const { N, r, p, saltBytes, keyBytes } = SCRYPT_COST;
  const salt = randomBytes(saltBytes);
  const key = await derive(password, salt, keyBytes, { N, r, p });
  return `scrypt:${N}:${r}:${p}:${salt.toString('base64')}:${key.toString('base64')}`;
}

async function verifyParsed(h: ScryptHash, password: Buffer | string): Promise<boolean> {
  try {
    const key = await derive(password, h.salt, h.key.length, { N: h.N, r: h.r, p: h.p });
    return timingSafeEqual(key, h.key);
  } catch {
    return false;
  }
}

/** Whether `password` is the one `hash` was made from; compared in constant time. A malformed hash is false; never throws. */
export async function verifyPassword(hash: string, password: string | Buffer): Promise<boolean> {
  const h = typeof hash === 'string' ? parseScryptHash(hash) : null;
  return h === null ? false : verifyParsed(h, password);
}

/**
 * Checked instead of a user's hash when the name is unknown or has no password, at the cost
 * `hashPassword` uses: a wrong name takes as long as a wrong password, so timing does not tell
 * which users exist. Its key is random: no password matches it.
 */
const DUMMY: ScryptHash = Object.freeze({
  N: SCRYPT_COST.N, r: SCRYPT_COST.r, p: SCRYPT_COST.p, salt: randomBytes(SCRYPT_COST.saltBytes), key: randomBytes(SCRYPT_COST.keyBytes),
});

/**
 * At most `size` tasks of one kind at once (scrypt runs, DNS lookups: both take a thread of libuv's
 * pool of four, and neither can be cancelled once started). A waiter is asked `stillWanted()` when
 * its turn comes: one whose client has left takes no slot, and is dropped at once.
 */
export class Gate {
  private running = 0;
  private readonly queue: Array<() => void> = [];

  constructor(private readonly size: number) {}

  /** Resolves true once a slot is taken (give it back with `leave()`), or false, taking none, when it is no longer wanted. */
  enter(stillWanted: () => boolean): Promise<boolean> {
    if (this.running < this.size) {
      this.running++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      this.queue.push(() => {
        if (!stillWanted()) return resolve(false);
        this.running++;
        resolve(true);
      });
    });
  }

  leave(): void {
    this.running--;
    // Waiters no longer wanted take no slot: hand it on until one does or none is left.
    while (this.running < this.size && this.queue.length > 0) this.queue.shift()!();
  }

  /** Tasks running now. */
  get busy(): number {
    return this.running;
  }

  /** Tasks waiting for a slot. */
  get waiting(): number {
    return this.queue.length;
  }
}

/** What `PasswordChecker.check` found. */
export type LoginCheck = 'ok' | 'bad' | 'skipped';

export interface PasswordCheckerOptions {
  /** How long a verified password is remembered (ms). */
  readonly rememberMs?: number;
  /** Users remembered at most. */
  readonly maxUsers?: number;
  /** scrypt runs at once at most; the others wait their turn. */
  readonly concurrency?: number;
  /** The clock (ms) remembered passwords expire by. */
  readonly now?: () => number;
}

interface Remembered {
  readonly mac: Buffer;
  readonly until: number;
}

/**
 * Checks SOCKS logins against users' hashes, for every service of the process.
 *
 * - A password that verified is remembered for `rememberMs` (60 s) as an HMAC, under a key made
 *   at start and never stored, of the user's hash and the password: the next login with the same
 *   user, hash and password is an HMAC and a constant-time compare (microseconds) instead of an
 *   scrypt (75 ms), so a client opening many connections is not held to scrypt's rate. A changed
 *   hash (a reload with a new password) no longer matches; a wrong password always runs scrypt.
 *   What stays in memory is a keyed hash, not the password; a memory dump holds the key too, so a
 *   recently used password could be attacked at HMAC speed from one: the price of the cache.
 * - At most `concurrency` (2) scrypt run at once, in the libuv thread pool of four: a burst of
 *   logins (or of guesses) cannot take every thread from DNS lookups and file reads. A waiting
 *   check asks `stillWanted` before its turn, so a login whose client left, or whose source got
 *   blocked meanwhile (see LoginFailures), costs no scrypt.
 */
export class PasswordChecker {
  private readonly secret = randomBytes(32);
  private readonly recent: LazyLru<string, Remembered>;
  private readonly rememberMs: number;
  private readonly now: () => number;
  readonly gate: Gate;
  /** scrypt runs so far (for tests: a remembered login runs none). */
  scryptRuns = 0;

  constructor(options: PasswordCheckerOptions = {}) {
    this.rememberMs = options.rememberMs ?? 60_000;
    this.gate = new Gate(options.concurrency ?? 2);
    this.now = options.now ?? Date.now;
    this.recent = new LazyLru(options.maxUsers ?? 10_000);
  }

  /**
   * Whether `password` is `user`'s (`user` undefined: no such user; still costs an scrypt).
   * `skipped`: `stillWanted()` returned false when its scrypt's turn came. Never rejects.
   */
  async check(user: User | undefined, password: Buffer, stillWanted: () => boolean): Promise<LoginCheck> {
    const hash = user?.password ?? null;
    const parsed = hash === null ? null : parseScryptHash(hash);
    const mac = parsed === null ? null : createHmac('sha256', this.secret).update(hash!).update('\0').update(password).digest();
    if (mac !== null) {
      const seen = this.recent.get(user!.name);
      if (seen !== undefined && seen.until > this.now() && timingSafeEqual(seen.mac, mac)) return 'ok';
    }
    if (!(await this.gate.enter(stillWanted))) return 'skipped';
    let ok: boolean;
    try {
      this.scryptRuns++;
      ok = await verifyParsed(parsed ?? DUMMY, password);
    } finally {
      this.gate.leave();
    }
    if (!ok || parsed === null) return 'bad';
    this.recent.set(user!.name, { mac: mac!, until: this.now() + this.rememberMs });
    return 'ok';
  }

  /** Forgets every remembered password. */
  clear(): void {
    this.recent.clear();
  }
}
