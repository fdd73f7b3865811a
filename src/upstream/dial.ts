import * as net from 'node:net';
import * as tls from 'node:tls';
import { LRUCache } from 'lru-cache';
import type { Destination } from '../config/types';
import { ConnectTimeoutError, MapgateError } from '../errors';
import { UPSTREAM_READ, UPSTREAM_TLS_READ } from '../relay/relay';

/** Why one attempt failed: the connection never opened, timed out, or its TLS handshake failed. */
export type DialFailureKind = 'connect-failed' | 'connect-timeout' | 'tls-failed';

export interface DialFailure {
  readonly destination: Destination;
  readonly kind: DialFailureKind;
  /** Error code: `ECONNREFUSED`, `MAPGATE_ERR_CONNECT_TIMEOUT`, `UNABLE_TO_VERIFY_LEAF_SIGNATURE`, ... */
  readonly code: string;
  readonly error: Error;
}

export interface DialSuccess {
  readonly socket: net.Socket;
  readonly destination: Destination;
  /** Position of `destination` in the failover list (0 = first). */
  readonly index: number;
  /** Seconds from the attempt that succeeded to its connection (and TLS handshake) being ready. */
  readonly connectSeconds: number;
  readonly tlsResumed: boolean;
}

export interface DialCallbacks {
  /** Called for each failed attempt, before the next destination is tried. */
  onFailure(failure: DialFailure): void;
  /** Called once: with the upstream, or with the last failure when every destination failed. */
  onDone(result: DialSuccess | null, lastFailure: DialFailure | null): void;
  /** The PROXY header to send first to a destination that asks for one (`proxyProtocol: v1 | v2`). */
  proxyHeader(version: 1 | 2): Buffer;
}

/**
 * TLS sessions of upstream connections, one per destination, so a second connection to the
 * same destination resumes instead of doing a full handshake. Keyed by the destination object,
 * so two mappings with different client certificates never share a session.
 */
export class TlsSessionCache {
  private readonly sessions: LRUCache<Destination, Buffer>;
  private readonly contexts = new WeakMap<Destination, tls.SecureContext>();
  constructor(max = 1024) {
    this.sessions = new LRUCache({ max });
  }
  get(d: Destination): Buffer | undefined { return this.sessions.get(d); }
  set(d: Destination, session: Buffer): void { this.sessions.set(d, session); }
  get size(): number { return this.sessions.size; }

  /** One secure context per destination: the CA bundle and key are parsed once, not per connection. */
  context(d: Destination): tls.SecureContext {
    let ctx = this.contexts.get(d);
    if (!ctx) {
      const t = d.tls!;
      ctx = tls.createSecureContext({
        ca: t.ca ?? undefined,
        cert: t.cert ?? undefined,
        key: t.key ?? undefined,
        minVersion: 'TLSv1.2',
      });
      this.contexts.set(d, ctx);
    }
    return ctx;
  }
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.length > 0 && code.length <= 64 ? code : 'EUNKNOWN';
}

/**
 * Dials destinations in order until one connects (and, with TLS, completes a verified
 * handshake) within `connectTimeoutMs` each. Returns a handle whose `cancel()` abandons the dial.
 */
export class Dial {
  private index = -1;
  private socket: net.Socket | null = null;
  private timer: NodeJS.Timeout | null = null;
  private started = 0;
  private connected = false;
  private finished = false;
  private lastFailure: DialFailure | null = null;

  constructor(
    private readonly destinations: readonly Destination[],
    private readonly connectTimeoutMs: number,
    private readonly sessions: TlsSessionCache,
    private readonly callbacks: DialCallbacks,
  ) {
    this.next();
  }

  /** Abandons the dial: destroys a pending socket; no callback fires afterwards. */
  cancel(): void {
    if (this.finished) return;
    this.finished = true;
    this.clear();
    this.socket?.destroy();
    this.socket = null;
  }

  private next(): void {
    this.index++;
    if (this.index >= this.destinations.length) {
      this.finished = true;
      this.callbacks.onDone(null, this.lastFailure);
      return;
    }
    const d = this.destinations[this.index];
    this.connected = false;
    this.started = performance.now();
    let socket: net.Socket;
    let tcp: net.Socket | undefined;
    try {
      if (d.proxyProtocol) {
        // The header goes first on the TCP connection, before a TLS handshake (HAProxy's send-proxy).
        // Under TLS the TLS layer reads this socket, never our callback.
        tcp = net.connect({ host: d.host, port: d.port, allowHalfOpen: true, noDelay: true, onread: d.tls ? undefined : UPSTREAM_READ });
        tcp.write(this.callbacks.proxyHeader(d.proxyProtocol));
      }
      socket = d.tls ? this.connectTls(d, tcp) : tcp ?? net.connect({ host: d.host, port: d.port, allowHalfOpen: true, noDelay: true, onread: UPSTREAM_READ });
    } catch (err) {
      // Synchronous throws (bad options) are failures like any other, never crashes.
      tcp?.destroy();
      this.fail('connect-failed', err as Error);
      return;
    }
    this.socket = socket;
    socket.on('error', this.onError);
    // Only a TLS dial needs to know when TCP connected (a later error is a failed handshake).
    if (d.tls) {
      (tcp ?? socket).once('connect', this.onConnect);
      socket.once('secureConnect', this.onReady);
    } else {
      socket.once('connect', this.onReady);
    }
    if (this.connectTimeoutMs > 0) this.timer = setTimeout(this.onTimeout, this.connectTimeoutMs);
  }

  private connectTls(d: Destination, tcp: net.Socket | undefined): tls.TLSSocket {
    const t = d.tls!;
    const socket = tls.connect({
      host: d.host,
      port: d.port,
      socket: tcp,
      // RFC 6066: SNI carries host names only, never an IP literal.
      servername: net.isIP(t.servername) ? undefined : t.servername,
      secureContext: this.sessions.context(d),
      rejectUnauthorized: t.verify,
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(t.servername, cert),
      session: this.sessions.get(d),
      minVersion: 'TLSv1.2',
      allowHalfOpen: true,
      // Node ignores onread over a given socket (the PROXY-header case): that one reads as usual.
      onread: tcp ? undefined : UPSTREAM_TLS_READ,
    } as tls.ConnectionOptions);
    socket.on('session', (session: Buffer) => this.sessions.set(d, session));
    return socket;
  }

  private readonly onConnect = (): void => {
    this.connected = true;
  };

  private readonly onReady = (): void => {
    if (this.finished) return;
    const socket = this.socket!;
    this.clear();
    this.finished = true;
    socket.removeListener('error', this.onError);
    const d = this.destinations[this.index];
    const resumed = d.tls ? (socket as tls.TLSSocket).isSessionReused() : false;
    this.callbacks.onDone({ socket, destination: d, index: this.index, connectSeconds: (performance.now() - this.started) / 1000, tlsResumed: resumed }, null);
  };

  private readonly onError = (err: Error): void => {
    if (this.finished) return;
    const d = this.destinations[this.index];
    this.fail(d.tls && this.connected ? 'tls-failed' : 'connect-failed', err);
  };

  private readonly onTimeout = (): void => {
    if (this.finished) return;
    const d = this.destinations[this.index];
    this.fail('connect-timeout', new ConnectTimeoutError(d.label, this.connectTimeoutMs));
  };

  private fail(kind: DialFailureKind, error: Error): void {
    this.clear();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.removeListener('error', this.onError);
      socket.on('error', ignore);
      socket.destroy();
    }
    const failure: DialFailure = { destination: this.destinations[this.index], kind, code: error instanceof MapgateError ? error.code : errorCode(error), error };
    this.lastFailure = failure;
    this.callbacks.onFailure(failure);
    if (!this.finished) this.next();
  }

  private clear(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

function ignore(): void {}
