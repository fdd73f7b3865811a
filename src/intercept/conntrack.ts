import { execFile } from 'node:child_process';
import { readFile } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { hostPortLabel } from '../config/parse-values';
import { canonicalAddress as canonicalIp } from '../config/cidr';

/** One direction of a tracked connection, addresses in canonical form (IPv6 compressed, no zone). */
export interface ConntrackTuple {
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
}

/** One line of `/proc/net/nf_conntrack` or of `conntrack -L`. */
export interface ConntrackEntry {
  readonly family: 4 | 6;
  /** `tcp`, `udp`, ... */
  readonly protocol: string;
  /** TCP state (`ESTABLISHED`, `SYN_SENT`, ...), null for protocols without one. */
  readonly state: string | null;
  /** What the client sent: its destination is the address it asked for. */
  readonly original: ConntrackTuple;
  /** What the answer looks like: after a redirect its source is this host's address. */
  readonly reply: ConntrackTuple;
  /** `ASSURED`, `UNREPLIED`, `OFFLOAD`, ... without brackets. */
  readonly flags: readonly string[];
}

/** The table's addresses and the sockets' are compared in one spelling (zones dropped, IPv6 compressed). */
export function canonicalAddress(address: string): string {
  return canonicalIp(address) ?? address.toLowerCase();
}

function port(text: string | undefined): number | null {
  if (text === undefined || !/^\d{1,5}$/.test(text)) return null;
  const n = Number(text);
  return n <= 65535 ? n : null;
}

/**
 * Parses the connection tracking table as `/proc/net/nf_conntrack` prints it (`ipv4 2 tcp 6 …`,
 * IPv6 written out in full) or as `conntrack -L` does (`tcp 6 …`, IPv6 compressed). Pure. Lines
 * without two complete tuples with ports (ICMP, the tool's summary line, garbage) are skipped;
 * accounting, zone, mark and timestamp fields are ignored.
 */
export function parseConntrack(text: string): ConntrackEntry[] {
  const entries: ConntrackEntry[] = [];
  for (const line of text.split('\n')) {
    const tokens = line.trim().split(/\s+/);
    let i = 0;
    let family: 4 | 6 | null = null;
    if (tokens[0] === 'ipv4' || tokens[0] === 'ipv6') {
      family = tokens[0] === 'ipv4' ? 4 : 6;
      i = 2;
    }
    const protocol = tokens[i];
    if (protocol === undefined || protocol.includes('=') || !/^\d+$/.test(tokens[i + 1] ?? '')) continue;
    i += 3; // name, number, seconds left
    const state = tokens[i] !== undefined && /^[A-Z_]+$/.test(tokens[i]) ? tokens[i++] : null;
    const tuples: Array<Record<string, string>> = [];
    const flags: string[] = [];
    for (; i < tokens.length; i++) {
      const t = tokens[i];
      const flag = /^\[([A-Z_]+)\]$/.exec(t);
      if (flag) {
        flags.push(flag[1]);
        continue;
      }
      const eq = t.indexOf('=');
      if (eq <= 0) continue;
      const key = t.slice(0, eq);
      if (key !== 'src' && key !== 'dst' && key !== 'sport' && key !== 'dport') continue;
      // The second `src=` starts the reply tuple.
      if (key === 'src' && (tuples.length === 0 || 'src' in tuples[tuples.length - 1])) {
        if (tuples.length === 2) break;
        tuples.push({});
      }
      if (tuples.length > 0) tuples[tuples.length - 1][key] ??= t.slice(eq + 1);
    }
    if (tuples.length !== 2) continue;
    const [o, r] = tuples.map((x) => {
      const sport = port(x.sport);
      const dport = port(x.dport);
      if (x.src === undefined || x.dst === undefined || sport === null || dport === null) return null;
      return { src: canonicalAddress(x.src), dst: canonicalAddress(x.dst), sport, dport };
    });
    if (!o || !r) continue;
    entries.push({ family: family ?? (o.src.includes(':') ? 6 : 4), protocol, state, original: o, reply: r, flags });
  }
  return entries;
}

/** Where a read of the table came from. */
export type ConntrackSource = 'proc' | 'tool';

export interface ConntrackOptions {
  /** The kernel's table as text; default `/proc/net/nf_conntrack`. */
  readonly file?: string;
  /** The conntrack-tools binary, looked up on PATH; default `conntrack`. */
  readonly tool?: string;
  /** How long a read of the table answers lookups for connections it holds (ms); default 1000. */
  readonly maxAgeMs?: number;
  /** A lookup answers null after this long (ms); default 100. */
  readonly timeoutMs?: number;
  /** One read of the file or one run of the tool is abandoned after this long (ms); default 2000. */
  readonly readTimeoutMs?: number;
}

/** Lookup key: the reply tuple's source (this host) and destination (the client). */
function key(local: string, localPort: number, client: string, clientPort: number): string {
  return `${local}|${localPort}|${client}|${clientPort}`;
}

interface Snapshot {
  /** performance.now() when the read began: it holds every connection accepted before then. */
  readonly startedAt: number;
  /** Reply-tuple key → the original destination `host:port`, null when the connection was not redirected. */
  readonly originals: ReadonlyMap<string, string | null>;
}

interface Waiter {
  readonly key: string;
  readonly since: number;
  readonly cb: (original: string | null) => void;
  timer: NodeJS.Timeout | null;
  done: boolean;
}

const UNAVAILABLE = new Set(['ENOENT', 'EACCES', 'EPERM', 'ENOTDIR']);
/** How long "neither the file nor the tool is there" is believed before looking again (ms). */
const ABSENT_RECHECK_MS = 10_000;

/**
 * The original destination of connections redirected to this host (nftables `redirect`,
 * iptables `REDIRECT`), read from the kernel's connection tracking table of the process's network
 * namespace. Sources, in order: the file `/proc/net/nf_conntrack` (kernels built with
 * `CONFIG_NF_CONNTRACK_PROCFS`; mode 0440 root, so root or a process that may read it), else the
 * `conntrack` tool of conntrack-tools (`conntrack -L -p tcp -f ipv4|ipv6`, over netlink: needs
 * CAP_NET_ADMIN), else none: every lookup answers null. `source` says which the last read used.
 *
 * Never throws and never blocks: reads are asynchronous, one at a time, shared by every lookup
 * waiting; a read answers the lookups made before it began (their connection's entry existed by
 * then), later ones wait for the next read; each lookup answers within `timeoutMs`.
 */
export class ConntrackTable {
  private readonly file: string;
  private readonly tool: string;
  private readonly maxAgeMs: number;
  private readonly timeoutMs: number;
  private readonly readTimeoutMs: number;
  private snapshot: Snapshot | null = null;
  private reading = false;
  private readonly waiters = new Set<Waiter>();
  private absentUntil = 0;
  private toolAbsentUntil = 0;
  /** The source of the last read: `proc`, `tool`, or null when neither was there (or nothing was read yet). */
  source: ConntrackSource | null = null;

  constructor(options: ConntrackOptions = {}) {
    this.file = options.file ?? '/proc/net/nf_conntrack';
    this.tool = options.tool ?? 'conntrack';
    this.maxAgeMs = options.maxAgeMs ?? 1000;
    this.timeoutMs = options.timeoutMs ?? 100;
    this.readTimeoutMs = options.readTimeoutMs ?? 2000;
  }

  /**
   * Calls `cb` once, asynchronously, with the original destination (`host:port`, `[v6]:port`) of
   * the TCP connection from `client` accepted on `local` (the socket's remote and local
   * address), or null: not redirected, not found, no source, or not within `timeoutMs`.
   */
  lookup(client: { address: string; port: number }, local: { address: string; port: number }, cb: (original: string | null) => void): void {
    const k = key(canonicalAddress(local.address), local.port, canonicalAddress(client.address), client.port);
    const now = performance.now();
    if (this.snapshot && now - this.snapshot.startedAt > this.maxAgeMs) this.snapshot = null;
    const snap = this.snapshot;
    if (snap && snap.originals.has(k)) {
      const found = snap.originals.get(k) ?? null;
      process.nextTick(cb, found);
      return;
    }
    if (now < this.absentUntil) {
      process.nextTick(cb, null);
      return;
    }
    const w: Waiter = { key: k, since: now, cb, timer: null, done: false };
    w.timer = setTimeout(() => this.answer(w, null), this.timeoutMs);
    w.timer.unref();
    this.waiters.add(w);
    if (!this.reading) this.read();
  }

  private answer(w: Waiter, original: string | null): void {
    if (w.done) return;
    w.done = true;
    if (w.timer) clearTimeout(w.timer);
    // A Set: a burst of lookups answered one by one stays linear.
    this.waiters.delete(w);
    w.cb(original);
  }

  private read(): void {
    this.reading = true;
    const startedAt = performance.now();
    this.readTable().then((text) => this.settle(startedAt, text), () => this.settle(startedAt, undefined));
  }

  /** `text` null: no source is there; undefined: the read failed (timed out, say), which the next may not. */
  private settle(startedAt: number, text: string | null | undefined): void {
    this.reading = false;
    if (text === null || text === undefined) {
      if (text === null) {
        this.source = null;
        this.absentUntil = performance.now() + ABSENT_RECHECK_MS;
      }
      for (const w of [...this.waiters]) this.answer(w, null);
      return;
    }
    const originals = new Map<string, string | null>();
    for (const e of parseConntrack(text)) {
      if (e.protocol !== 'tcp') continue;
      const { original: o, reply: r } = e;
      const redirected = o.dst !== r.src || o.dport !== r.sport;
      originals.set(key(r.src, r.sport, r.dst, r.dport), redirected ? hostPortLabel(o.dst, o.dport) : null);
    }
    this.snapshot = { startedAt, originals };
    for (const w of [...this.waiters]) {
      if (originals.has(w.key)) this.answer(w, originals.get(w.key) ?? null);
      else if (w.since <= startedAt) this.answer(w, null); // this read began after its connection existed
    }
    // Lookups made during the read need one that began after them.
    if (this.waiters.size > 0) this.read();
  }

  /** The table's text from the first source that is there; null when none is. */
  private async readTable(): Promise<string | null> {
    try {
      // node:fs's callback form: node:fs/promises would load readline and more into every gateway.
      const text = await new Promise<string>((resolve, reject) => {
        readFile(this.file, { encoding: 'utf8', signal: AbortSignal.timeout(this.readTimeoutMs) }, (err, data) => (err ? reject(err) : resolve(data)));
      });
      this.source = 'proc';
      return text;
    } catch (err) {
      if (!UNAVAILABLE.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
    }
    if (performance.now() < this.toolAbsentUntil) return null;
    const dump = (family: string): Promise<string> => new Promise((resolve, reject) => {
      execFile(this.tool, ['-L', '-p', 'tcp', '-f', family], { timeout: this.readTimeoutMs, maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' },
        (err, stdout) => (err ? reject(err) : resolve(stdout)));
    });
    // A kernel without IPv6 (or IPv4) tracking fails one family only: the other still answers.
    const dumps = await Promise.allSettled([dump('ipv4'), dump('ipv6')]);
    const texts = dumps.flatMap((d) => (d.status === 'fulfilled' ? [d.value] : []));
    if (texts.length > 0) {
      this.source = 'tool';
      return texts.join('\n');
    }
    const err = (dumps[0] as PromiseRejectedResult).reason as NodeJS.ErrnoException & { killed?: boolean };
    // Not installed, or not allowed (without CAP_NET_ADMIN it exits 1): neither comes right by retrying soon.
    if (!err.killed && (err.code === 'ENOENT' || err.code === 'EACCES' || typeof err.code === 'number')) {
      this.toolAbsentUntil = performance.now() + ABSENT_RECHECK_MS;
      return null;
    }
    throw err;
  }
}
