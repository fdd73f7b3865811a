import { readFile } from 'node:fs';
import { isIPv4 } from 'node:net';

/** Reads the whole file as text; `fs.readFile(file, 'utf8', cb)` unless a test counts or stalls reads. */
export type ReadText = (file: string, cb: (err: Error | null, text?: string) => void) => void;

export interface NeighbourTableOptions {
  /** The ARP table to read; `/proc/net/arp` is that of the reading process's network namespace. */
  readonly file?: string;
  /** How long a table read answers lookups, ms (default 1000). */
  readonly maxAgeMs?: number;
  /** How long a lookup waits for a read before it answers null, ms (default 100). */
  readonly timeoutMs?: number;
  /** Clock in ms; injectable so tests can age the cache. */
  readonly now?: () => number;
  /** How the file is read (default `fs.readFile` as UTF-8). */
  readonly read?: ReadText;
}

export type MacCallback = (mac: string | null) => void;

// A client's entry may appear only after its first packet, so a miss is worth one more look, but
// not one per connection: a flood of unknown addresses gets at most one read per this many ms.
const MISS_REREAD_MS = 100;
// include/uapi/linux/if_arp.h: ATF_COM marks a completed entry; 0x0 is an incomplete one (no MAC yet).
const ATF_COM = 0x2;
const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i;
const NO_MAC = '00:00:00:00:00:00';
const MAPPED = /^::ffff:/i;
const EMPTY: ReadonlyMap<string, string> = new Map();
const readUtf8: ReadText = (file, cb) => readFile(file, 'utf8', cb);

/**
 * Parses `/proc/net/arp` text into IPv4 → lower-case MAC (`aa:bb:cc:dd:ee:ff`). Skips the header,
 * incomplete entries, all-zero and non-Ethernet-length addresses, and any line it cannot read;
 * never throws. An address listed on two devices keeps its first entry.
 */
export function parseArpTable(text: string): Map<string, string> {
  const table = new Map<string, string>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || !isIPv4(f[0]) || table.has(f[0])) continue;
    const flags = Number.parseInt(f[2], 16);
    const mac = f[3].toLowerCase();
    if ((flags & ATF_COM) === 0 || !MAC.test(mac) || mac === NO_MAC) continue;
    table.set(f[0], mac);
  }
  return table;
}

/** The IPv4 address to look up: itself, or the one inside `::ffff:a.b.c.d`; null for anything else. */
function ipv4Of(address: string): string | null {
  if (isIPv4(address)) return address;
  return MAPPED.test(address) && isIPv4(address.slice(7)) ? address.slice(7) : null;
}

/**
 * The kernel's IPv4 neighbour table, so users can be recognised by MAC address as WinGate does.
 * One read of the file answers lookups for `maxAgeMs`; a lookup never waits longer than
 * `timeoutMs`. Only one read is ever in flight: a stalled read is waited out, not repeated, so
 * stalls cannot pile up in libuv's small thread pool. IPv6 clients are never matched by MAC:
 * the IPv6 neighbour table is not in /proc (only netlink has it), so they are answered null.
 */
export class NeighbourTable {
  private readonly file: string;
  private readonly maxAgeMs: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly read: ReadText;
  private table: ReadonlyMap<string, string> = EMPTY;
  private tableAt = -Infinity; // when the read that gave `table` started
  private readAt = -Infinity; // when the latest read started
  private reading = false;
  private late = false; // the read in flight is past its deadline
  private waiters: Array<{ ip: string; cb: MacCallback }> = [];
  private deadline: NodeJS.Timeout | undefined;

  constructor(options: NeighbourTableOptions = {}) {
    this.file = options.file ?? '/proc/net/arp';
    this.maxAgeMs = options.maxAgeMs ?? 1000;
    this.timeoutMs = options.timeoutMs ?? 100;
    this.now = options.now ?? (() => performance.now());
    this.read = options.read ?? readUtf8;
  }

  /**
   * The MAC of `address` (IPv4 or IPv4-mapped IPv6), or null if unknown. Calls back synchronously
   * when the cache can answer, otherwise after one shared read (null on a read error, or at the
   * read's deadline). `cb` is called exactly once.
   */
  lookup(address: string, cb: MacCallback): void {
    const ip = ipv4Of(address);
    const known = ip === null ? null : this.answer(ip);
    if (known !== undefined) return cb(known);
    this.waiters.push({ ip: ip!, cb });
    if (!this.reading) this.startRead();
  }

  /** What `lookup` would answer synchronously: the MAC or null; `undefined` when a read is needed (call `lookup`). */
  lookupSync(address: string): string | null | undefined {
    const ip = ipv4Of(address);
    return ip === null ? null : this.answer(ip);
  }

  private answer(ip: string): string | null | undefined {
    const t = this.now();
    if (t - this.tableAt <= this.maxAgeMs) {
      const mac = this.table.get(ip);
      if (mac !== undefined) return mac;
      if (t - this.readAt < MISS_REREAD_MS) return null;
    }
    // A read past its deadline still has a thread on it; answer now instead of waiting again.
    return this.reading && this.late ? null : undefined;
  }

  private startRead(): void {
    const startedAt = this.now();
    this.reading = true;
    this.late = false;
    this.readAt = startedAt;
    this.deadline = setTimeout(() => this.onDeadline(), this.timeoutMs).unref();
    this.read(this.file, (err, text) => this.onRead(startedAt, err ? EMPTY : parseArpTable(text ?? '')));
  }

  private onDeadline(): void {
    this.deadline = undefined;
    this.late = true;
    this.flush(EMPTY);
  }

  /** A failed read counts as an empty table, so an unreadable file is retried at the miss rate. */
  private onRead(startedAt: number, table: ReadonlyMap<string, string>): void {
    clearTimeout(this.deadline);
    this.deadline = undefined;
    this.reading = false;
    this.table = table;
    this.tableAt = startedAt;
    this.flush(table);
  }

  private flush(table: ReadonlyMap<string, string>): void {
    // Detached first: a callback may look up again and must start a fresh wait.
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.cb(table.get(w.ip) ?? null);
  }
}
