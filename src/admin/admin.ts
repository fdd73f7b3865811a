import * as http from 'node:http';
import { BindError } from '../errors';
import { STATUS_PAGE_HEADERS, STATUS_PAGE_HTML, StatusStreams } from './status-page';

/** What the admin endpoint serves; the gateway supplies each piece. */
export interface AdminHandlers {
  metrics(): Promise<{ contentType: string; body: string }>;
  /** Live (`/healthz`): the process serves. */
  healthy(): boolean;
  /** Ready (`/readyz`): accepting new connections; false while draining. */
  ready(): boolean;
  /**
   * Synchronous, or a promise (a cluster primary asks its workers, within a deadline): `/status`
   * and `/events` await it; `/events` takes no new snapshot until the previous one settled.
   */
  status(): unknown;
  /** `POST /reload`; absent when reloads are not supported. */
  reload?(): Promise<{ ok: boolean; message: string }>;
}

/** Request bodies are never needed; anything larger is refused. */
const MAX_BODY_BYTES = 1024;

function send(res: http.ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

const PATHS = ['/', '/events', '/metrics', '/healthz', '/readyz', '/status', '/reload'];

/**
 * An admin server whose `close()` also ends the open `/events` streams: they never go idle,
 * so `close()` alone (which only closes idle keep-alive sockets) would wait on them forever.
 */
class AdminServer extends http.Server {
  constructor(options: http.ServerOptions, listener: http.RequestListener, readonly streams: StatusStreams) {
    super(options, listener);
  }

  override close(callback?: (err?: Error) => void): this {
    this.streams.closeAll();
    return super.close(callback);
  }

  override closeAllConnections(): void {
    this.streams.closeAll();
    super.closeAllConnections();
  }
}

/**
 * The admin HTTP server: `/` (live status page), `/events` (its server-sent status stream),
 * `/metrics`, `/healthz`, `/readyz`, `/status`, `POST /reload`.
 * Hardened against garbage: small header limit, request and header timeouts, no bodies,
 * a bounded number of event streams.
 */
export function createAdminServer(h: AdminHandlers): http.Server {
  const streams = new StatusStreams(() => h.status());
  const server = new AdminServer({ maxHeaderSize: 8192, requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 5_000 }, onRequest, streams);
  server.on('clientError', onClientError);
  server.maxRequestsPerSocket = 1000;

  function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.on('error', noop);
    req.on('error', noop);
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES || req.headers['transfer-encoding'] !== undefined) {
      res.setHeader('connection', 'close');
      return send(res, 413, 'request body too large\n');
    }
    req.resume();
    const path = (req.url ?? '/').split('?')[0];
    const method = req.method ?? 'GET';
    const get = method === 'GET' || method === 'HEAD';
    if (path === '/' && get) {
      res.writeHead(200, { ...STATUS_PAGE_HEADERS, 'content-length': STATUS_PAGE_HTML.length });
      res.end(STATUS_PAGE_HTML);
    } else if (path === '/favicon.ico' && get) {
      // Browsers ask for it; a 204 keeps their consoles free of a 404 per page load.
      res.writeHead(204, { 'cache-control': 'max-age=86400' });
      res.end();
    } else if (path === '/events' && method === 'GET') {
      streams.open(req, res);
    } else if (path === '/metrics' && get) {
      h.metrics().then(
        (m) => send(res, 200, m.body, m.contentType),
        (err: Error) => send(res, 500, `metrics failed: ${err.message}\n`),
      );
    } else if (path === '/healthz' && get) {
      send(res, h.healthy() ? 200 : 503, h.healthy() ? 'ok\n' : 'unhealthy\n');
    } else if (path === '/readyz' && get) {
      const ready = h.ready();
      send(res, ready ? 200 : 503, ready ? 'ready\n' : 'draining\n');
    } else if (path === '/status' && get) {
      Promise.resolve(h.status()).then(
        (status) => send(res, 200, JSON.stringify(status), 'application/json'),
        (err: Error) => send(res, 500, `status failed: ${err.message}\n`),
      );
    } else if (path === '/reload' && method === 'POST' && h.reload) {
      // Reload is an operator's action: only from this host, even when admin listens wider.
      if (!isLoopback(req.socket.remoteAddress)) return send(res, 403, 'reload is accepted from loopback only\n');
      h.reload().then(
        (r) => send(res, r.ok ? 200 : 422, r.message + '\n'),
        (err: Error) => send(res, 500, `reload failed: ${err.message}\n`),
      );
    } else if (PATHS.includes(path)) {
      send(res, 405, 'method not allowed\n');
    } else {
      send(res, 404, 'not found\n');
    }
  }
  return server;
}

function onClientError(err: NodeJS.ErrnoException, socket: import('node:stream').Duplex): void {
  if (!socket.writable || err.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
  socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
}

function noop(): void {}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return a === '::1' || a.startsWith('127.');
}

/** Listens on host:port; rejects with a {@link BindError} naming the admin endpoint. */
export function listenAdmin(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      reject(new BindError('admin', host, port, err));
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ host, port });
  });
}
