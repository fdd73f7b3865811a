import { lookup } from 'node:dns';
import { isIP, type Socket } from 'node:net';
import { LoginFailures } from '../auth/login-failures';
import { Gate, PasswordChecker, type LoginCheck } from '../auth/password';
import { ipv4Text, ipv6Text, parseClientAddress, type ClientAddress } from '../config/cidr';
import { hostPortLabel } from '../config/parse-values';
import type { ServiceConfig, User } from '../config/types';
import { REP, SOCKS4_REJECTED, socks4Reply, socks5Reply } from '../protocols/socks';
import type { FrontContext, FrontRefusal, FrontStage } from './stage';

/** How SOCKS logins are checked and limited; one of each for the whole process unless a test brings its own. */
export interface SocksLogins {
  readonly checker: PasswordChecker;
  readonly failures: LoginFailures;
}

/** The checker and failure counts every SOCKS service of the process shares (kept across reloads). */
export const SOCKS_LOGINS: SocksLogins = Object.freeze({ checker: new PasswordChecker(), failures: new LoginFailures() });

/**
 * DNS lookups handshakes may have running at once, process-wide. getaddrinfo runs in libuv's
 * thread pool and cannot be cancelled: without a bound, clients asking for names that take long
 * to fail could hold every thread (scrypt, the dialler's own lookups, file reads would wait). A
 * lookup waiting past its connection's deadline is dropped without being started.
 */
const LOOKUPS = new Gate(2);

/** The longest SOCKS4 user id, and 4a host name, read: longer ones are refused, not buffered. */
const MAX_SOCKS4_FIELD = 255;
/** RFC 1035: a name has at most 253 characters (without the trailing dot), a label 63. */
const MAX_NAME = 253;
const NAME = /^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$/;
/**
 * A last label of digits or hex (`10.1`, `0x7f000001`, `127.000.000.001`): no host name (a top-level
 * domain is never numeric), but an address to getaddrinfo's inet_aton, so a mapping's name patterns
 * and the address dialled could disagree. Only strict IP literals (`isIP`) are addresses here.
 */
const NUMERIC_LAST_LABEL = /(^|\.)(0x[0-9a-f]*|[0-9]+)$/;
/** What a name may be made of before it is checked: printable ASCII, no space. */
const PRINTABLE = /^[\x21-\x7e]+$/;

function refusal(reason: FrontRefusal['reason'], code: string, reply?: Buffer): FrontRefusal {
  return Object.freeze(reply === undefined ? { reason, code } : { reason, code, reply });
}

/** No bytes: what a negotiation holds between messages (one shared object, not one per connection). */
const EMPTY = Buffer.alloc(0);

// Replies are shared by every connection: written, never changed.
const AUTH_FAILURE = Buffer.from([0x01, 0x01]);
const AUTH_SUCCESS = Buffer.from([0x01, 0x00]);
const NO_ACCEPTABLE_METHOD = Buffer.from([0x05, 0xff]);
const METHOD_NONE = Buffer.from([0x05, 0x00]);
const METHOD_PASSWORD = Buffer.from([0x05, 0x02]);

const R = {
  /** The first byte is neither 4 nor 5: nothing the client could read as a reply. */
  VERSION: refusal('socks', 'MAPGATE_ERR_SOCKS_VERSION'),
  TRUNCATED: refusal('socks', 'MAPGATE_ERR_SOCKS_TRUNCATED'),
  METHOD: refusal('socks', 'MAPGATE_ERR_SOCKS_METHOD', NO_ACCEPTABLE_METHOD),
  /** SOCKS4 has no password: on a service that requires one it is refused before its request is read. */
  SOCKS4_NEEDS_PASSWORD: refusal('socks', 'MAPGATE_ERR_SOCKS_METHOD', socks4Reply(SOCKS4_REJECTED)),
  AUTH_VERSION: refusal('socks', 'MAPGATE_ERR_SOCKS_VERSION', AUTH_FAILURE),
  AUTH: refusal('auth-failed', 'MAPGATE_ERR_SOCKS_AUTH', AUTH_FAILURE),
  AUTH_LIMITED: refusal('auth-failed', 'MAPGATE_ERR_SOCKS_AUTH_LIMITED', AUTH_FAILURE),
  REQUEST_VERSION: refusal('socks', 'MAPGATE_ERR_SOCKS_VERSION', socks5Reply(REP.GENERAL_FAILURE)),
  COMMAND5: refusal('socks', 'MAPGATE_ERR_SOCKS_COMMAND', socks5Reply(REP.COMMAND_NOT_SUPPORTED)),
  COMMAND4: refusal('socks', 'MAPGATE_ERR_SOCKS_COMMAND', socks4Reply(SOCKS4_REJECTED)),
  ADDRESS_TYPE: refusal('socks', 'MAPGATE_ERR_SOCKS_ADDRESS', socks5Reply(REP.ADDRESS_TYPE_NOT_SUPPORTED)),
  EMPTY_NAME5: refusal('socks', 'MAPGATE_ERR_SOCKS_MALFORMED', socks5Reply(REP.GENERAL_FAILURE)),
  EMPTY_NAME4: refusal('socks', 'MAPGATE_ERR_SOCKS_MALFORMED', socks4Reply(SOCKS4_REJECTED)),
  TOO_LONG4: refusal('socks', 'MAPGATE_ERR_SOCKS_TOO_LONG', socks4Reply(SOCKS4_REJECTED)),
  HOST5: refusal('socks', 'MAPGATE_ERR_SOCKS_HOST', socks5Reply(REP.HOST_UNREACHABLE)),
  HOST4: refusal('socks', 'MAPGATE_ERR_SOCKS_HOST', socks4Reply(SOCKS4_REJECTED)),
  PORT5: refusal('socks', 'MAPGATE_ERR_SOCKS_PORT', socks5Reply(REP.GENERAL_FAILURE)),
  PORT4: refusal('socks', 'MAPGATE_ERR_SOCKS_PORT', socks4Reply(SOCKS4_REJECTED)),
  // 0.0.0.0 and :: connect to the gateway host itself: a way round a mapping that rejects 127.0.0.0/8.
  UNSPECIFIED5: refusal('socks', 'MAPGATE_ERR_SOCKS_UNSPECIFIED', socks5Reply(REP.NOT_ALLOWED)),
  UNSPECIFIED4: refusal('socks', 'MAPGATE_ERR_SOCKS_UNSPECIFIED', socks4Reply(SOCKS4_REJECTED)),
};

/** An IPv6 address with its RFC 5952 text (what events show and mappings compare); IPv4 as it is. */
function canonical(a: ClientAddress): ClientAddress {
  return a.family === 4 ? a : { family: 6, words: a.words, text: ipv6Text(a.words) };
}

function isUnspecified(a: ClientAddress): boolean {
  return a.words.every((w) => w === 0);
}

/**
 * A requested name as routing sees it: lower case, without a trailing dot or IPv6 brackets; an IP
 * literal is an address. Null when it cannot be a host name.
 */
export function nameTarget(bytes: Buffer): { host: string; address: ClientAddress | null } | null {
  let s = bytes.toString('latin1');
  if (!PRINTABLE.test(s)) return null;
  s = s.toLowerCase();
  const bracketed = s.startsWith('[') && s.endsWith(']');
  s = bracketed ? s.slice(1, -1) : s.endsWith('.') ? s.slice(0, -1) : s;
  // A zone (fe80::1%eth0) would pick an interface: no client may choose one.
  const ip = s.includes('%') ? 0 : isIP(s);
  if (bracketed && ip !== 6) return null;
  if (ip !== 0) {
    const address = canonical(parseClientAddress(s)!);
    return { host: address.text, address };
  }
  if (s.length > MAX_NAME || !NAME.test(s) || NUMERIC_LAST_LABEL.test(s)) return null;
  return { host: s, address: null };
}

type Done = (refusal: FrontRefusal | null, socket: Socket) => void;

/**
 * The SOCKS handshake (kind `socks`): SOCKS5 (RFC 1928) CONNECT with no authentication
 * (`socks.auth: none`) or username/password (RFC 1929, `auth: password`, checked against the
 * users' scrypt hashes), and SOCKS4/4a CONNECT (only with `auth: none`: SOCKS4 has no password).
 * Fills `ctx.target` (the requested host, its address, port and version) and `ctx.login` (the
 * user whose password verified). A name is resolved by the gateway when a mapping of the service
 * has an address block in `to`, and the address found is the one dialled: what was checked is what
 * is connected. Replies to the request itself come after routing and dialling (see
 * `socksProtocol`); refusals here carry their reply. Built once per config.
 */
export class SocksHandshake implements FrontStage {
  readonly kind = 'socks' as const;
  readonly password: boolean;
  /** Whether names are resolved here, for mappings with address blocks to match them. */
  readonly resolveNames: boolean;
  private byName: { users: readonly User[]; map: Map<string, User> } | null = null;

  constructor(readonly config: ServiceConfig, readonly users: () => readonly User[], readonly logins: SocksLogins = SOCKS_LOGINS) {
    this.password = config.socks?.auth !== 'none';
    this.resolveNames = config.mappings.some((m) => m.to?.some((p) => p.cidr !== null) ?? false);
  }

  run(socket: Socket, ctx: FrontContext, done: Done): void {
    new Negotiation(this, socket, ctx, done).start();
  }

  /** The user a login names (its bytes, exactly); undefined when there is none by that name. */
  user(name: Buffer): User | undefined {
    const users = this.users();
    if (this.byName?.users !== users) this.byName = { users, map: new Map(users.map((u) => [Buffer.from(u.name).toString('latin1'), u])) };
    return this.byName.map.get(name.toString('latin1'));
  }
}

type Phase = 'version' | 'greeting' | 'auth' | 'request' | 'socks4' | 'waiting';

/** The socket points at its handshake while it runs, so the handlers are shared functions, not closures per connection. */
const NEGOTIATION = Symbol('mapgate.socks');
type SocksSocket = Socket & { [NEGOTIATION]?: Negotiation };

function onSocksData(this: SocksSocket, chunk: Buffer): void {
  this[NEGOTIATION]?.data(chunk);
}

function onSocksEnd(this: SocksSocket): void {
  this[NEGOTIATION]?.ended();
}

function onSocksClose(this: SocksSocket): void {
  this[NEGOTIATION]?.closed();
}

/**
 * One client's handshake. Reads with 'data' into a buffer that holds at most one message in
 * progress plus the chunk that completed it, parses whatever the segments were, and before any
 * wait (a password check, a DNS lookup) and at the end pauses the socket and `unshift`s the bytes
 * not yet parsed: pipelined bytes stay the stream's, in order, for the next phase or the relay.
 * Unshifting only ever happens inside a 'data' handler (or with nothing to unshift), so never
 * after 'end' was emitted. Every listener it adds is removed when it is over, whichever way.
 * Waits: the password check (PasswordChecker) and the lookup (LOOKUPS) are asked whether they are
 * still wanted before they start, and their answer is dropped if the socket closed meanwhile.
 */
class Negotiation {
  private buf: Buffer = EMPTY;
  private phase: Phase = 'version';
  /** Either `done` was called or the socket closed: nothing more happens. */
  private over = false;
  /** The client half-closed; a wait that ends needing more bytes cannot get them. */
  private clientEnded = false;
  private version: 4 | 5 = 5;

  constructor(
    private readonly stage: SocksHandshake,
    private readonly socket: Socket,
    private readonly ctx: FrontContext,
    private readonly done: Done,
  ) {}

  start(): void {
    const s = this.socket as SocksSocket;
    s[NEGOTIATION] = this;
    s.on('data', onSocksData);
    s.on('end', onSocksEnd);
    s.on('close', onSocksClose);
    s.resume();
  }

  data(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (!this.over && this.phase !== 'waiting' && this.step());
  }

  ended(): void {
    this.clientEnded = true;
    // Every byte that came was parsed in data(): what is missing will never come.
    if (this.phase !== 'waiting') this.finish(R.TRUNCATED);
  }

  closed(): void {
    // The deadline or the client ended it; the connection reports that, not us.
    this.over = true;
    this.detach();
  }

  /** Parses one message of the current phase; false when it needs more bytes. */
  private step(): boolean {
    const b = this.buf;
    switch (this.phase) {
      case 'version': return this.first(b);
      case 'greeting': return this.greeting(b);
      case 'auth': return this.auth(b);
      case 'request': return this.request(b);
      case 'socks4': return this.socks4(b);
      default: return false;
    }
  }

  private consume(n: number): void {
    this.buf = this.buf.subarray(n);
  }

  private first(b: Buffer): boolean {
    if (b.length < 1) return false;
    if (b[0] === 5) {
      this.phase = 'greeting';
    } else if (b[0] === 4) {
      this.version = 4;
      if (this.stage.password) this.finish(R.SOCKS4_NEEDS_PASSWORD);
      else this.phase = 'socks4';
    } else {
      this.finish(R.VERSION);
    }
    return true;
  }

  /** `VER NMETHODS METHODS...` (at most 257 bytes). */
  private greeting(b: Buffer): boolean {
    if (b.length < 2 || b.length < 2 + b[1]) return false;
    const methods = b.subarray(2, 2 + b[1]);
    this.consume(2 + b[1]);
    const wanted = this.stage.password ? 0x02 : 0x00;
    if (!methods.includes(wanted)) {
      this.finish(R.METHOD);
      return true;
    }
    this.socket.write(this.stage.password ? METHOD_PASSWORD : METHOD_NONE);
    this.phase = this.stage.password ? 'auth' : 'request';
    return true;
  }

  /** RFC 1929: `VER=1 ULEN UNAME PLEN PASSWD` (at most 513 bytes). */
  private auth(b: Buffer): boolean {
    if (b.length < 2) return false;
    if (b[0] !== 0x01) {
      this.finish(R.AUTH_VERSION);
      return true;
    }
    const ulen = b[1];
    if (b.length < 3 + ulen) return false;
    const plen = b[2 + ulen];
    if (b.length < 3 + ulen + plen) return false;
    const name = b.subarray(2, 2 + ulen);
    const password = b.subarray(3 + ulen, 3 + ulen + plen);
    this.consume(3 + ulen + plen);
    this.login(name, password);
    return true;
  }

  private login(name: Buffer, password: Buffer): void {
    const { failures, checker } = this.stage.logins;
    const source = this.ctx.client.address;
    // Refused at once, without an scrypt: the limit costs the gateway nothing to enforce.
    if (failures.blocked(source)) return this.finish(R.AUTH_LIMITED);
    const user = this.stage.user(name);
    this.wait();
    const wanted = (): boolean => !this.over && !failures.blocked(source);
    void checker.check(user, password, wanted).then((result) => this.checked(result, user, source));
  }

  private checked(result: LoginCheck, user: User | undefined, source: string): void {
    // Counted even if the client has left: logging in and hanging up must not be a way to make the gateway run scrypt without limit.
    if (result === 'bad') this.stage.logins.failures.failed(source);
    if (this.over) return;
    if (result === 'skipped') return this.finish(R.AUTH_LIMITED);
    if (result === 'bad') return this.finish(R.AUTH);
    this.ctx.login = user!.name;
    this.socket.write(AUTH_SUCCESS);
    this.proceed('request');
  }

  /** SOCKS5 request: `VER CMD RSV ATYP DST.ADDR DST.PORT` (at most 262 bytes). */
  private request(b: Buffer): boolean {
    if (b.length < 4) return false;
    if (b[0] !== 5) return this.refused(R.REQUEST_VERSION);
    // CONNECT only: BIND (2) and UDP ASSOCIATE (3) would open listeners and UDP relays no mapping governs.
    if (b[1] !== 0x01) return this.refused(R.COMMAND5);
    const atyp = b[3];
    if (atyp === 0x01) {
      if (b.length < 10) return false;
      const address = parseClientAddress(ipv4Text(b.readUInt32BE(4)))!;
      const port = b.readUInt16BE(8);
      this.consume(10);
      this.requested({ host: address.text, address }, port);
    } else if (atyp === 0x04) {
      if (b.length < 22) return false;
      const words = [b.readUInt32BE(4), b.readUInt32BE(8), b.readUInt32BE(12), b.readUInt32BE(16)];
      const address = canonical(parseClientAddress(ipv6Text(words))!);
      const port = b.readUInt16BE(20);
      this.consume(22);
      this.requested({ host: address.text, address }, port);
    } else if (atyp === 0x03) {
      if (b.length < 5) return false;
      const n = b[4];
      if (n === 0) return this.refused(R.EMPTY_NAME5);
      if (b.length < 7 + n) return false;
      const name = nameTarget(b.subarray(5, 5 + n));
      const port = b.readUInt16BE(5 + n);
      this.consume(7 + n);
      this.requested(name, port);
    } else {
      return this.refused(R.ADDRESS_TYPE);
    }
    return true;
  }

  /** SOCKS4: `VN=4 CD DSTPORT DSTIP USERID NUL`, and for 4a (DSTIP 0.0.0.x, x != 0) `HOST NUL`. */
  private socks4(b: Buffer): boolean {
    if (b.length < 8) return false;
    if (b[1] !== 0x01) return this.refused(R.COMMAND4);
    const port = b.readUInt16BE(2);
    const ip = b.readUInt32BE(4);
    const userEnd = b.indexOf(0, 8);
    if (userEnd < 0) return b.length - 8 > MAX_SOCKS4_FIELD ? this.refused(R.TOO_LONG4) : false;
    if (userEnd - 8 > MAX_SOCKS4_FIELD) return this.refused(R.TOO_LONG4);
    if (ip === 0 || ip > 0xff) {
      this.consume(userEnd + 1);
      const address = parseClientAddress(ipv4Text(ip))!;
      this.requested({ host: address.text, address }, port);
      return true;
    }
    const hostEnd = b.indexOf(0, userEnd + 1);
    if (hostEnd < 0) return b.length - userEnd - 1 > MAX_SOCKS4_FIELD ? this.refused(R.TOO_LONG4) : false;
    if (hostEnd - userEnd - 1 > MAX_SOCKS4_FIELD) return this.refused(R.TOO_LONG4);
    if (hostEnd === userEnd + 1) return this.refused(R.EMPTY_NAME4);
    const name = nameTarget(b.subarray(userEnd + 1, hostEnd));
    this.consume(hostEnd + 1);
    this.requested(name, port);
    return true;
  }

  /** The destination is read: checked, resolved if the mappings need an address, and handed on. */
  private requested(t: { host: string; address: ClientAddress | null } | null, port: number): void {
    const v5 = this.version === 5;
    if (t === null) return this.finish(v5 ? R.HOST5 : R.HOST4);
    if (port === 0) return this.finish(v5 ? R.PORT5 : R.PORT4);
    if (t.address === null && this.stage.resolveNames) {
      this.wait();
      void LOOKUPS.enter(() => !this.over).then((entered) => entered && this.resolve(t.host, port));
      return;
    }
    this.target(t.host, t.address, port);
  }

  private resolve(host: string, port: number): void {
    lookup(host, (err, text) => {
      LOOKUPS.leave();
      this.resolved(host, port, err ? null : parseClientAddress(text));
    });
  }

  private resolved(host: string, port: number, address: ClientAddress | null): void {
    if (this.over) return;
    // A name without an address stays a name: address blocks do not match it, name patterns may.
    this.target(host, address === null ? null : canonical(address), port);
  }

  private target(host: string, address: ClientAddress | null, port: number): void {
    if (address !== null && isUnspecified(address)) return this.finish(this.version === 5 ? R.UNSPECIFIED5 : R.UNSPECIFIED4);
    this.ctx.target = { host, address, port, label: hostPortLabel(host, port), version: this.version };
    this.finish(null);
  }

  private refused(r: FrontRefusal): true {
    this.finish(r);
    return true;
  }

  /** Stops reading while something async runs; bytes not yet parsed go back to the stream. */
  private wait(): void {
    this.phase = 'waiting';
    this.socket.pause();
    this.putBack();
  }

  /** The wait is over: read on in `phase`. */
  private proceed(phase: Phase): void {
    if (this.over) return;
    if (this.clientEnded) return this.finish(R.TRUNCATED);
    this.phase = phase;
    this.socket.resume();
  }

  private putBack(): void {
    if (this.buf.length > 0 && !this.socket.readableEnded) this.socket.unshift(this.buf);
    this.buf = EMPTY;
  }

  private finish(refusal: FrontRefusal | null): void {
    if (this.over) return;
    this.over = true;
    this.detach();
    this.socket.pause();
    // Bytes sent after the request are the client's first data: the relay forwards them.
    if (refusal === null) this.putBack();
    this.done(refusal, this.socket);
  }

  private detach(): void {
    const s = this.socket as SocksSocket;
    s[NEGOTIATION] = undefined;
    s.off('data', onSocksData);
    s.off('end', onSocksEnd);
    s.off('close', onSocksClose);
  }
}
