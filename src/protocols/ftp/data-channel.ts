import * as net from 'node:net';
import { Relay, type RelayOwner } from '../../relay/relay';
import { canonicalAddress } from './commands';

/** What a data channel tells the FTP session that owns it. */
export interface DataChannelOwner {
  /** Adds bytes the channel moved to the control connection's totals (client's view: from / to the client). */
  countSideBytes(fromClient: number, toClient: number): void;
  /** The channel has ended, whichever way; called exactly once, after its last bytes were counted. */
  channelDone(channel: DataChannel): void;
}

/**
 * One data connection to set up: where the gateway listens for it, whom it accepts, where it
 * relays to. Passive (PASV/EPSV): the client connects to the gateway, the gateway to the server.
 * Active (PORT/EPRT): the server connects to the gateway, the gateway to the client's listener.
 */
export interface DataPlan {
  readonly mode: 'passive' | 'active';
  /** The gateway address the listener binds (the one the connecting peer reaches us at). */
  readonly listenHost: string;
  /** Ports to try (from a random one on, EADDRINUSE → the next); null: any free port. */
  readonly ports: { readonly from: number; readonly to: number } | null;
  /** The only address a connection is accepted from (the control connection's peer on that side). */
  readonly peer: string;
  /**
   * Where the accepted connection is relayed, and the gateway address to connect from: the one of
   * the control connection on that side (a server that checks, as vsftpd does, sees the same client).
   */
  readonly target: { readonly host: string; readonly port: number; readonly localAddress: string | undefined };
  /** A listener nobody connected to closes after this (ms). */
  readonly acceptTimeoutMs: number;
  /** Connecting to `target` (ms; 0: no limit but the system's). */
  readonly connectTimeoutMs: number;
  /** The relay's idle timeout (ms; 0: none). */
  readonly idleTimeoutMs: number;
}

type State = 'new' | 'listening' | 'connecting' | 'relaying' | 'closed';

/** Each socket and listener of a channel points at it, so the handlers are shared functions. */
const CHANNEL = Symbol('mapgate.ftp.channel');
type ChannelSocket = net.Socket & { [CHANNEL]?: DataChannel };
type ChannelServer = net.Server & { [CHANNEL]?: DataChannel };

/**
 * An FTP data channel: a listener of its own (never part of the gateway's listener plan, so a
 * reload or an interface poll cannot close it) for exactly one connection, accepted only from
 * `plan.peer` — any other source is reset at once (bounce protection, as nf_conntrack_ftp's
 * expectations and OpenBSD ftp-proxy's pf rules allow only that peer) and the listener keeps
 * waiting for the right one. The accepted connection is relayed to `plan.target` with the plain
 * {@link Relay} (backpressure, half-close, idle timeout). Its bytes count in the control
 * connection's totals when it ends, and on every {@link flushBytes} before.
 */
export class DataChannel implements RelayOwner {
  state: State = 'new';
  /** The port it listens on, once listening. */
  port = 0;
  private server: ChannelServer | null = null;
  private accepted: ChannelSocket | null = null;
  private dialed: ChannelSocket | null = null;
  private relay: Relay | null = null;
  private timer: NodeJS.Timeout | null = null;
  private countedFrom = 0;
  private countedTo = 0;

  constructor(readonly plan: DataPlan, private readonly owner: DataChannelOwner) {}

  /**
   * Binds the listener; resolves its port, or the system's error code when it cannot listen
   * (`EADDRINUSE` once every port of the range was taken; `ECANCELED` if closed meanwhile).
   */
  async listen(): Promise<number | string> {
    const { ports } = this.plan;
    const count = ports ? ports.to - ports.from + 1 : 1;
    const first = ports ? Math.floor(Math.random() * count) : 0;
    let code = 'EADDRINUSE';
    for (let i = 0; i < count; i++) {
      const port = ports ? ports.from + ((first + i) % count) : 0;
      const result = await this.tryListen(port);
      if (this.state === 'closed') {
        if (typeof result !== 'string') result.close();
        return 'ECANCELED';
      }
      if (typeof result !== 'string') {
        this.server = result;
        this.state = 'listening';
        this.port = (result.address() as net.AddressInfo).port;
        this.timer = setTimeout(onTimeout, this.plan.acceptTimeoutMs, this);
        return this.port;
      }
      code = result;
      if (code !== 'EADDRINUSE') break;
    }
    this.close();
    return code;
  }

  private tryListen(port: number): Promise<ChannelServer | string> {
    return new Promise((resolve) => {
      const server: ChannelServer = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
      server[CHANNEL] = this;
      const onError = (err: NodeJS.ErrnoException): void => resolve(err.code ?? 'EUNKNOWN');
      server.once('error', onError);
      // exclusive: in a cluster worker a shared handle would hand the connection to any worker.
      server.listen({ host: this.plan.listenHost, port, exclusive: true }, () => {
        server.off('error', onError);
        server.on('error', onServerError);
        server.on('connection', onConnection);
        resolve(server);
      });
    });
  }

  /** A connection reached the listener. */
  accept(socket: ChannelSocket): void {
    socket.on('error', onEarlyError);
    if (this.state !== 'listening') {
      socket.destroy();
      return;
    }
    if (canonicalAddress(socket.remoteAddress) !== this.plan.peer) {
      // Reset at once; the listener goes on waiting for the right peer.
      socket.resetAndDestroy();
      return;
    }
    // Exactly one connection: the listener closes now.
    this.closeServer();
    this.clearTimer();
    this.state = 'connecting';
    socket[CHANNEL] = this;
    this.accepted = socket;
    socket.once('close', onEarlyClose);
    const { target, connectTimeoutMs } = this.plan;
    const dialed: ChannelSocket = net.connect({ host: target.host, port: target.port, localAddress: target.localAddress, allowHalfOpen: true });
    dialed[CHANNEL] = this;
    this.dialed = dialed;
    dialed.on('error', onEarlyError);
    dialed.once('close', onEarlyClose);
    dialed.once('connect', onDialed);
    if (connectTimeoutMs > 0) this.timer = setTimeout(onTimeout, connectTimeoutMs, this);
  }

  /** The other leg is connected: relay the two. */
  connected(): void {
    this.clearTimer();
    const accepted = this.accepted!;
    const dialed = this.dialed!;
    for (const s of [accepted, dialed]) {
      s.off('error', onEarlyError);
      s.off('close', onEarlyClose);
    }
    this.state = 'relaying';
    const [client, server] = this.plan.mode === 'passive' ? [accepted, dialed] : [dialed, accepted];
    this.relay = new Relay(client, server, this.plan.idleTimeoutMs, this);
    // The relay resumes its client side; an accepted server side (active mode) is paused too.
    server.resume();
  }

  /** The client's leg: whose bytes are the control connection's, seen from the client. */
  private get clientSide(): net.Socket | null {
    return this.plan.mode === 'passive' ? this.accepted : this.dialed;
  }

  /** Bytes moved on both legs so far (each socket's reads, and writes handed to the kernel): the session's idle check. */
  moved(): number {
    let n = 0;
    for (const s of [this.accepted, this.dialed]) if (s) n += s.bytesRead + s.bytesWritten - s.writableLength;
    return n;
  }

  /** Counts in the control connection's totals what the client's leg moved since the last call. */
  flushBytes(): void {
    const s = this.clientSide;
    if (!s) return;
    const from = s.bytesRead - this.countedFrom;
    const to = s.bytesWritten - this.countedTo;
    if (from === 0 && to === 0) return;
    this.countedFrom += from;
    this.countedTo += to;
    this.owner.countSideBytes(from, to);
  }

  /** The relay ended (both legs closed). */
  relayDone(): void {
    this.relay = null;
    this.close();
  }

  /** Closes the listener and both legs now; the owner hears of it once. Idempotent. */
  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.clearTimer();
    this.closeServer();
    this.relay?.abort('closed');
    this.relay = null;
    this.accepted?.destroy();
    this.dialed?.destroy();
    this.flushBytes();
    this.owner.channelDone(this);
  }

  private closeServer(): void {
    if (!this.server) return;
    this.server.close();
    this.server = null;
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

function onConnection(this: ChannelServer, socket: net.Socket): void {
  this[CHANNEL]!.accept(socket);
}

function onServerError(this: ChannelServer): void {
  // An accept error (EMFILE) ends this channel; the control connection goes on.
  this[CHANNEL]!.close();
}

function onEarlyError(this: ChannelSocket): void {
  // Before the relay: the close that follows ends the channel.
}

function onEarlyClose(this: ChannelSocket): void {
  this[CHANNEL]?.close();
}

function onDialed(this: ChannelSocket): void {
  const ch = this[CHANNEL]!;
  if (ch.state === 'connecting') ch.connected();
}

/** Nobody connected to the listener in time, or the other leg did not connect in time. */
function onTimeout(ch: DataChannel): void {
  ch.close();
}
