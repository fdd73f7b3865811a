import { isIPv4, type Socket } from 'node:net';
import type { FtpSettings, ServiceConfig } from '../../config/types';
import { endWith, type ProtocolOwner, type Relaying } from '../protocol';
import {
  canonicalAddress, findEpsvPort, findPasvAddress, formatEprtArg, formatHostPort, parseCommand, parseEprtArg, parsePortArg,
  ReplyReader, sameAddress, splice, type EprtArg, type Found, type HostPort,
} from './commands';
import { DataChannel, type DataChannelOwner, type DataPlan } from './data-channel';
import { LineSplitter, lineEnd, lineText } from './lines';

/** The error code of a control connection closed for a line longer than `MAX_LINE_BYTES` (lines.ts). */
export const FTP_LINE_ERROR = 'MAPGATE_ERR_FTP_LINE';
/** The error code of a control connection closed by a fault of the session itself. */
export const FTP_INTERNAL_ERROR = 'MAPGATE_ERR_FTP_INTERNAL';

/** Ports below this are never data ports: a PORT, EPRT, 227 or 229 naming one is refused (OpenBSD ftp-proxy's MIN_PORT). */
export const MIN_DATA_PORT = 1024;

/** Settings of a service whose config has no `ftp:` (it always has one for `protocol: ftp`). */
const DEFAULT_FTP: FtpSettings = { passivePorts: null, allowForeignPassive: false, dataTimeoutMs: 30_000, maxDataChannels: 4 };

/** How often the idle check samples and data-channel bytes are added to the totals, at most (ms). */
const TICK_MS = 1000;

/** Commands forwarded and not answered yet, at most: a client that pipelines more is read no further until replies come. */
const MAX_PIPELINED = 64;

/** Stands in {@link FtpSession}'s list of unanswered commands for the greeting: a reply nobody asked for, but expected. */
const GREETING = '';

/** The replies the gateway gives itself, in place of the server's. */
export const REPLIES = {
  auth: '534 Request denied for policy reason: mapgate cannot proxy FTP over TLS (see README)\r\n',
  security: (verb: string): string => `503 ${verb} not allowed: no security exchange through mapgate (see README)\r\n`,
  longAddress: '502 Command not implemented through mapgate: use EPRT or EPSV.\r\n',
  illegalPort: (verb: string): string => `500 Illegal ${verb} command.\r\n`,
  syntax: '501 Syntax error in parameters or arguments.\r\n',
  family: '522 Network protocol not supported, use (1,2)\r\n',
  tooMany: '425 Too many open data connections.\r\n',
  noPort: "425 Can't open data connection: the gateway has no data port free.\r\n",
  foreign: "425 Can't open data connection: the server named another host.\r\n",
  unreadable: "425 Can't open data connection: the gateway could not read the server's reply.\r\n",
  lowPort: "425 Can't open data connection: the server named a port below 1024.\r\n",
  useEpsv: "425 Can't open data connection: the server gave an IPv4 address to a client on IPv6, use EPSV.\r\n",
  clientLine: '500 Command line too long; closing control connection.\r\n',
  serverLine: '421 Service not available: the server sent a line too long; closing control connection.\r\n',
  idle: '421 Timeout: no traffic; closing control connection.\r\n',
} as const;

/** FEAT lines a client must not see: features the gateway refuses (a client that sees `AUTH TLS` may insist on it). */
const HIDDEN_FEATURES = /^\s+(?:AUTH|PBSZ|PROT|CCC|ADAT|LPRT|LPSV)(?:\s|$)/i;

type Side = 'client' | 'upstream';

/**
 * One direction of the control channel: lines read from `from`, handled one at a time in order,
 * written to `to`. While a line's handling is asynchronous (a data listener being bound) the
 * later lines wait in `queue` and `from` is paused; so is it while a socket this direction wrote
 * to has a full buffer (`waiting`). The queue holds at most what one read brought.
 */
class Direction {
  readonly splitter = new LineSplitter();
  readonly queue: Buffer[] = [];
  /** A line's handling is pending. */
  busy = false;
  /** `from` sent its FIN; `to` gets ours once every line before it is handled. */
  ended = false;
  finished = false;
  /** Sockets this direction wrote to whose 'drain' it waits for before reading on. */
  readonly waiting = new Set<Socket>();

  constructor(readonly from: Socket, readonly to: Socket, readonly side: Side) {}

  get settled(): boolean { return !this.busy && this.queue.length === 0; }
}

/** Both control sockets point at their session, so the handlers below are shared functions. */
const SESSION = Symbol('mapgate.ftp.session');
type SessionSocket = Socket & { [SESSION]?: FtpSession };

/**
 * The control channel of one FTP connection, run instead of the plain relay (see README, FTP).
 *
 * - Both directions are read as lines ({@link LineSplitter}); a line longer than the bound closes
 *   the connection (error {@link FTP_LINE_ERROR}), as OpenBSD's ftp-proxy does.
 * - Replies: the last line of a `227` (PASV) or `229` (EPSV) reply is rewritten to name the
 *   gateway address the client connected to and a port of a {@link DataChannel} listening there;
 *   no server address reaches the client. Continuation lines of multi-line replies pass as they are.
 * - Commands: `PORT`/`EPRT` naming the client's own address are replaced by the gateway's address
 *   on the server's side and a data channel's port; any other address is refused (bounce
 *   protection) and never forwarded. `AUTH`, and the commands that only follow a security exchange,
 *   are answered by the gateway: after TLS nothing could be rewritten. `LPRT`/`LPSV` are refused.
 * - Backpressure both ways, half-close forwarded, errors on one side destroy the other.
 * - Idle: nothing moved on the control connection nor on any of its data channels for
 *   `idleTimeoutMs` (0: never) closes it with a `421`; sampled every idle/8, at most every second.
 * - Data channels: at most `maxDataChannels` listening or open; a new PASV/PORT closes a listener
 *   nobody connected to (the server forgets its previous one too); all close with the control
 *   connection. Their bytes are added to the connection's totals every tick and when they end.
 *
 * Tells its owner exactly once, once both control sockets are closed and every data channel is.
 */
export class FtpSession implements Relaying, DataChannelOwner {
  private readonly toServer: Direction;
  private readonly toClient: Direction;
  private readonly replies = new ReplyReader();
  private readonly channels = new Set<DataChannel>();
  private readonly ftp: FtpSettings;
  private readonly idleTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  /** The client, and the gateway address it connected to. */
  private readonly clientAddress: string;
  private readonly clientGateway: string;
  /** The server, and the gateway address the server sees the control connection come from. */
  private readonly serverAddress: string;
  private readonly serverGateway: string;
  private reason: string | null = null;
  private error: string | null = null;
  private open = 2;
  /** No more lines are handled: the session is being torn down. */
  private closing = false;
  private done = false;
  /**
   * Verbs forwarded to the server whose final reply has not come yet, oldest first (the greeting
   * first of all): which command a reply answers, and when the gateway's own reply may go out.
   */
  private readonly sent: string[] = [GREETING];
  /** The gateway's own replies, waiting for every reply to the commands forwarded before them. */
  private localWaiters: Array<() => void> = [];
  private readonly tick: NodeJS.Timeout;
  private moved = -1;
  private lastMoved = Date.now();
  /** What data channels that ended had moved, so the idle check sees a steady sum. */
  private sideMoved = 0;

  constructor(
    private readonly client: Socket,
    private readonly upstream: Socket,
    config: ServiceConfig,
    private readonly owner: ProtocolOwner,
  ) {
    this.ftp = config.ftp ?? DEFAULT_FTP;
    this.idleTimeoutMs = config.idleTimeoutMs;
    this.connectTimeoutMs = config.connectTimeoutMs;
    this.clientAddress = canonicalAddress(client.remoteAddress) ?? '';
    this.clientGateway = canonicalAddress(client.localAddress) ?? '';
    this.serverAddress = canonicalAddress(upstream.remoteAddress) ?? '';
    this.serverGateway = canonicalAddress(upstream.localAddress) ?? '';
    this.toServer = new Direction(client, upstream, 'client');
    this.toClient = new Direction(upstream, client, 'upstream');
    for (const s of [client, upstream] as SessionSocket[]) {
      s[SESSION] = this;
      s.on('error', onSocketError);
      s.on('data', onSocketData);
      s.on('end', onSocketEnd);
      s.on('drain', onSocketDrain);
      s.on('close', onSocketClose);
    }
    const idle = this.idleTimeoutMs;
    this.tick = setInterval(onTick, idle > 0 ? Math.min(TICK_MS, Math.max(1, Math.floor(idle / 8))) : TICK_MS, this);
    // Connections keep the process alive by themselves; the tick must not.
    this.tick.unref();
    for (const dir of [this.toServer, this.toClient]) {
      // A FIN that came while the upstream was dialled has been read already.
      if (dir.from.readableEnded) this.readEnd(dir.from);
      else dir.from.resume();
    }
  }

  /** Ends the session now: every data channel and both control sockets closed, with `reason`. */
  abort(reason: string): void {
    // A client already gone keeps its reason, as in the plain relay.
    if (!this.client.destroyed) this.force(reason, null);
    this.teardown();
    this.client.destroy();
    this.upstream.destroy();
  }

  countSideBytes(fromClient: number, toClient: number): void {
    this.owner.countSideBytes(fromClient, toClient);
  }

  channelDone(channel: DataChannel): void {
    if (!this.channels.delete(channel)) return;
    this.sideMoved += channel.moved();
  }

  // ---- socket events

  private dirOf(socket: Socket): Direction {
    return socket === this.client ? this.toServer : this.toClient;
  }

  read(socket: Socket, chunk: Buffer): void {
    if (this.closing) return;
    const dir = this.dirOf(socket);
    if (!dir.splitter.push(chunk, dir.queue)) return this.lineTooLong(dir.side);
    this.pump(dir);
  }

  readEnd(socket: Socket): void {
    this.settle(socket === this.client ? 'client-closed' : 'upstream-closed', null);
    const dir = this.dirOf(socket);
    dir.ended = true;
    this.pump(dir);
  }

  drained(socket: Socket): void {
    for (const dir of [this.toServer, this.toClient]) if (dir.waiting.delete(socket)) this.flow(dir);
  }

  socketError(socket: Socket, err: NodeJS.ErrnoException): void {
    const client = socket === this.client;
    this.settle(client ? 'client-closed' : 'upstream-closed', err.code ?? 'EUNKNOWN');
    (client ? this.upstream : this.client).destroy();
  }

  socketClosed(socket: Socket): void {
    const other = socket === this.client ? this.upstream : this.client;
    this.settle(socket === this.client ? 'client-closed' : 'upstream-closed', null);
    // The other side flushes what it still has to write, then closes (as the plain relay does);
    // while closing, the client is ended with a last reply and closes by itself.
    if (!other.destroyed && !this.closing) other.destroySoon();
    if (--this.open > 0 || this.done) return;
    this.done = true;
    this.teardown();
    this.owner.relayDone({ end: this.reason ?? 'client-closed', error: this.error });
  }

  /** Samples progress for the idle timeout, and counts what data channels moved so far. */
  sample(): void {
    const { client, upstream } = this;
    let moved = this.sideMoved + client.bytesRead + upstream.bytesRead
      + client.bytesWritten - client.writableLength + upstream.bytesWritten - upstream.writableLength;
    for (const ch of this.channels) {
      moved += ch.moved();
      ch.flushBytes();
    }
    const now = Date.now();
    if (moved !== this.moved) {
      this.moved = moved;
      this.lastMoved = now;
    } else if (this.idleTimeoutMs > 0 && now - this.lastMoved >= this.idleTimeoutMs && !this.closing) {
      this.closeWith('idle-timeout', null, REPLIES.idle);
    }
  }

  // ---- lines, in order

  private pump(dir: Direction): void {
    while (!this.closing && !dir.busy && dir.queue.length > 0 && !this.throttled(dir)) {
      const line = dir.queue.shift()!;
      const pending = dir === this.toServer ? this.command(line) : this.reply(line);
      if (pending) {
        dir.busy = true;
        pending.then(() => {
          dir.busy = false;
          this.pump(dir);
        }, () => this.failed());
      }
    }
    if (this.closing) return;
    if (dir.settled) {
      if (dir === this.toClient) this.repliesDone();
      if (dir.ended && !dir.finished) {
        // An unterminated last line is handled like any other before the FIN goes on.
        const rest = dir.splitter.rest();
        if (rest) {
          dir.queue.push(rest);
          return this.pump(dir);
        }
        dir.finished = true;
        if (!dir.to.destroyed) dir.to.end();
      }
    }
    this.flow(dir);
  }

  /** The client has as many commands unanswered as it may: its next ones wait. */
  private throttled(dir: Direction): boolean {
    return dir === this.toServer && this.sent.length >= MAX_PIPELINED;
  }

  /**
   * Every reply read so far is handled: the gateway's own replies go out once nothing forwarded
   * before them is unanswered (or the server has closed: nothing more will be answered), and a
   * client held back for pipelining too much reads on.
   */
  private repliesDone(): void {
    const { toClient } = this;
    while (this.localWaiters.length > 0 && toClient.settled && (this.sent.length === 0 || toClient.ended)) this.localWaiters.shift()!();
    if (this.toServer.queue.length > 0 && !this.toServer.busy && !this.throttled(this.toServer)) this.pump(this.toServer);
    else this.flow(this.toServer);
  }

  /** Reads on, unless a line is pending or a socket written to is full. */
  private flow(dir: Direction): void {
    if (this.closing || dir.ended) return;
    if (dir.busy || dir.waiting.size > 0 || this.throttled(dir)) dir.from.pause();
    else dir.from.resume();
  }

  private write(dir: Direction, socket: Socket, data: Buffer | string): void {
    if (socket.destroyed || socket.writableEnded) return;
    if (!socket.write(data)) dir.waiting.add(socket);
  }

  /**
   * Answers the client in the server's place, in order: after the replies to every command
   * forwarded before (a pipelining client reads them as if the server had answered); the client's
   * next command waits until it is written.
   */
  private replyLocal(text: string): void | Promise<void> {
    if (this.sent.length === 0 && this.toClient.settled) return this.write(this.toServer, this.client, text);
    return new Promise((resolve) => {
      this.localWaiters.push(() => {
        this.write(this.toServer, this.client, text);
        resolve();
      });
    });
  }

  /** Sends a command on to the server; its reply is expected in turn. */
  private forward(verb: string, line: Buffer | string): void {
    this.sent.push(verb);
    this.write(this.toServer, this.upstream, line);
  }

  // ---- commands (client to server)

  private command(line: Buffer): void | Promise<void> {
    const { verb, arg } = parseCommand(line);
    switch (verb) {
      case 'PORT': return this.active(verb, parsePortArg(arg));
      case 'EPRT': return this.active(verb, parseEprtArg(arg));
      // After TLS the gateway could read nothing: no 227 to rewrite, no PORT to check.
      case 'AUTH': return this.replyLocal(REPLIES.auth);
      // These only follow a security exchange (RFC 2228, RFC 4217); MIC/CONF/ENC would carry commands we cannot read.
      case 'PBSZ': case 'PROT': case 'CCC': case 'ADAT': case 'MIC': case 'CONF': case 'ENC':
        return this.replyLocal(REPLIES.security(verb));
      // RFC 1639's long addresses: not rewritten, so never forwarded.
      case 'LPRT': case 'LPSV': return this.replyLocal(REPLIES.longAddress);
    }
    this.forward(verb, line);
  }

  /** PORT or EPRT: checked against the client's address, then replaced by a data channel of ours. */
  private active(verb: 'PORT' | 'EPRT', target: HostPort | EprtArg): void | Promise<void> {
    if (target === null) return this.replyLocal(REPLIES.syntax);
    if (target === 'unsupported-family') return this.replyLocal(REPLIES.family);
    // Bounce protection: data goes only to the client's own address, never to a port below 1024.
    if (!sameAddress(target.host, this.clientAddress) || target.port < MIN_DATA_PORT) return this.replyLocal(REPLIES.illegalPort(verb));
    return this.activeChannel(verb, target.port);
  }

  private async activeChannel(verb: 'PORT' | 'EPRT', clientPort: number): Promise<void> {
    const host = this.serverGateway;
    const port = await this.openChannel({
      mode: 'active', listenHost: host, peer: this.serverAddress,
      target: { host: this.clientAddress, port: clientPort, localAddress: this.clientGateway },
    });
    if (typeof port === 'string') return this.replyLocal(port === 'limit' ? REPLIES.tooMany : REPLIES.noPort);
    const command = verb === 'PORT' && isIPv4(host) ? `PORT ${formatHostPort(host, port)}\r\n` : `EPRT ${formatEprtArg(host, port)}\r\n`;
    this.forward(verb, command);
  }

  // ---- replies (server to client)

  private reply(line: Buffer): void | Promise<void> {
    const text = lineText(line);
    const code = this.replies.final(text);
    if (code === null) {
      if (this.sent[0] === 'FEAT' && this.replies.inside && HIDDEN_FEATURES.test(text)) return;
      return this.write(this.toClient, this.client, line);
    }
    // 1xx replies are preliminary: the command's final reply is still to come.
    if (code.charCodeAt(0) !== 0x31) this.answered(code);
    if (code === '227') return this.passive(line, text, findPasvAddress(text), true);
    if (code === '229') {
      const found = findEpsvPort(text);
      return this.passive(line, text, found && { ...found, value: { host: this.serverAddress, port: found.value } }, false);
    }
    this.write(this.toClient, this.client, line);
  }

  /** The oldest unanswered command has its final reply (a reply nobody asked for, a 421 before closing, finds none). */
  private answered(code: string): void {
    const verb = this.sent.shift();
    if ((verb === 'PORT' || verb === 'EPRT') && code.charCodeAt(0) !== 0x32) {
      // The server refused our PORT: nobody will connect to its listener.
      for (const ch of [...this.channels]) if (ch.plan.mode === 'active' && ch.state === 'listening') ch.close();
    }
  }

  /** A 227 or 229: where the server listens, replaced by where the gateway listens for the client. */
  private passive(line: Buffer, text: string, found: Found<HostPort> | null, pasv: boolean): void | Promise<void> {
    const refusal = this.passiveRefusal(found, pasv);
    if (refusal) return this.write(this.toClient, this.client, refusal);
    return this.passiveChannel(line, text, found!, pasv);
  }

  private passiveRefusal(found: Found<HostPort> | null, pasv: boolean): string | null {
    if (!found) return REPLIES.unreadable;
    // A 227 can only name IPv4: a client on IPv6 must use EPSV.
    if (pasv && !isIPv4(this.clientGateway)) return REPLIES.useEpsv;
    if (pasv && !this.ftp.allowForeignPassive && !sameAddress(found.value.host, this.serverAddress)) return REPLIES.foreign;
    if (found.value.port < MIN_DATA_PORT) return REPLIES.lowPort;
    return null;
  }

  private async passiveChannel(line: Buffer, text: string, found: Found<HostPort>, pasv: boolean): Promise<void> {
    const port = await this.openChannel({
      mode: 'passive', listenHost: this.clientGateway, peer: this.clientAddress,
      target: { host: found.value.host, port: found.value.port, localAddress: sameFamily(found.value.host, this.serverGateway) ? this.serverGateway : undefined },
    });
    if (typeof port === 'string') return this.write(this.toClient, this.client, port === 'limit' ? REPLIES.tooMany : REPLIES.noPort);
    const ours = pasv ? formatHostPort(this.clientGateway, port) : String(port);
    this.write(this.toClient, this.client, Buffer.from(splice(text, found, ours) + (lineEnd(line) || '\r\n'), 'latin1'));
  }

  // ---- data channels

  /** A new data channel listening for its one connection: its port, or why not (`limit`, a system code). */
  private async openChannel(p: Pick<DataPlan, 'mode' | 'listenHost' | 'peer' | 'target'>): Promise<number | string> {
    // A control socket already gone has no address: never listen on every interface instead.
    if (p.listenHost === '' || p.peer === '') return 'EADDRNOTAVAIL';
    // A listener nobody connected to is superseded: the server has forgotten its side of it too.
    for (const ch of [...this.channels]) if (ch.state === 'listening') ch.close();
    if (this.channels.size >= this.ftp.maxDataChannels) return 'limit';
    const channel = new DataChannel({
      ...p, ports: this.ftp.passivePorts, acceptTimeoutMs: this.ftp.dataTimeoutMs,
      connectTimeoutMs: this.connectTimeoutMs, idleTimeoutMs: this.idleTimeoutMs,
    }, this);
    this.channels.add(channel);
    return channel.listen();
  }

  // ---- ending

  /** Records why the session ends; the first reason wins. */
  private settle(reason: string, error: string | null): void {
    if (this.reason === null) {
      this.reason = reason;
      this.error = error;
    }
  }

  /** The gateway's decision is the reason, even after one side had half-closed. */
  private force(reason: string, error: string | null): void {
    if (this.done) return;
    this.reason = reason;
    this.error = error;
  }

  /** Stops handling lines, closes every data channel and the tick. */
  private teardown(): void {
    this.closing = true;
    clearInterval(this.tick);
    for (const ch of [...this.channels]) ch.close();
  }

  /** Closes the upstream now and the client after a last reply. */
  private closeWith(reason: string, error: string | null, reply: string): void {
    this.force(reason, error);
    this.teardown();
    this.upstream.destroy();
    if (!this.client.destroyed) endWith(this.client, Buffer.from(reply, 'latin1'));
  }

  private lineTooLong(side: Side): void {
    this.closeWith(side === 'client' ? 'client-closed' : 'upstream-closed', FTP_LINE_ERROR, side === 'client' ? REPLIES.clientLine : REPLIES.serverLine);
  }

  /** A line's handling threw: a bug, never a crash of the gateway. */
  private failed(): void {
    this.closeWith('upstream-closed', FTP_INTERNAL_ERROR, '421 Service not available: gateway error; closing control connection.\r\n');
  }
}

/** Whether two addresses are of one family (a foreign 227 may name IPv4 to a gateway that reaches the server over IPv6). */
function sameFamily(a: string, b: string): boolean {
  return isIPv4(a) === isIPv4(b);
}

function onSocketData(this: SessionSocket, chunk: Buffer): void {
  this[SESSION]!.read(this, chunk);
}

function onSocketEnd(this: SessionSocket): void {
  this[SESSION]!.readEnd(this);
}

function onSocketDrain(this: SessionSocket): void {
  this[SESSION]!.drained(this);
}

function onSocketError(this: SessionSocket, err: NodeJS.ErrnoException): void {
  this[SESSION]!.socketError(this, err);
}

function onSocketClose(this: SessionSocket): void {
  this[SESSION]!.socketClosed(this);
}

function onTick(session: FtpSession): void {
  session.sample();
}
