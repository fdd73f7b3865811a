import { createHash, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import { hostPortLabel } from '../config/parse-values';
import type { AdminConfig, AdminTls } from '../config/types';
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
  /**
   * The `admin` settings in force. Read when the server is made (`tls` makes it HTTPS), then at
   * every request (the token) and every new connection (the certificate), so what a reload
   * changes applies at once. Absent, or null from the start: no token, plain HTTP.
   */
  settings?(): AdminConfig | null;
}

/** Request bodies are never needed; anything larger is refused. */
const MAX_BODY_BYTES = 1024;

function send(res: http.ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8', headers: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...headers });
  res.end(body);
}

const PATHS = ['/', '/events', '/metrics', '/healthz', '/readyz', '/status', '/reload'];

/** Paths a probe must reach without a token: they tell nothing about clients. */
const OPEN_PATHS = new Set(['/healthz', '/readyz']);

/**
 * A browser asks for Basic credentials (and resends them to the same origin, `/events` too,
 * which EventSource cannot give a header of its own); a program sends the bearer token. One
 * challenge per header line: together they read `Bearer realm="mapgate", Basic realm="mapgate",
 * charset="UTF-8"` (RFC 9110 §11.6.1), but Chromium takes each line for one challenge and would
 * see only Bearer, which it cannot answer, in a single line.
 */
const CHALLENGES = ['Bearer realm="mapgate"', 'Basic realm="mapgate", charset="UTF-8"'];

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** The secret an `Authorization` header carries: a bearer token, or the password of HTTP Basic. */
function presented(header: string | undefined): string | null {
  if (!header) return null;
  const space = header.indexOf(' ');
  if (space < 0) return null;
  const scheme = header.slice(0, space).toLowerCase();
  const value = header.slice(space + 1).trim();
  if (scheme === 'bearer') return value;
  if (scheme !== 'basic') return null;
  // RFC 7617: "user-id:password", the user-id without a colon; the user name is not checked.
  const pair = Buffer.from(value, 'base64').toString('utf8');
  const colon = pair.indexOf(':');
  return colon < 0 ? null : pair.slice(colon + 1);
}

/** Whether the request carries `token`, compared in constant time (digests of equal length). */
function authorized(req: http.IncomingMessage, token: string): boolean {
  const secret = presented(req.headers.authorization);
  return secret !== null && timingSafeEqual(sha256(secret), sha256(token));
}

/** Whether `host` (of `admin.listen`) is reachable from this host only. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || isLoopback(host);
}

/**
 * What of `admin` only a restart changes: the address, and whether it speaks HTTPS (a server is
 * one or the other). The token and the certificate of a reload apply at once.
 */
export function adminRestartKey(admin: AdminConfig | null): string {
  return admin ? `${hostPortLabel(admin.host, admin.port)} ${admin.tls ? 'https' : 'http'}` : 'off';
}

/**
 * The warning `mapgate run` logs and `mapgate check` prints when the endpoint listens beyond
 * loopback without a token (refusing would break deployments that listen on a pod IP for
 * Prometheus); null when there is nothing to warn about.
 */
export function unprotectedAdminWarning(admin: AdminConfig | null): string | null {
  if (!admin || admin.token !== undefined || isLoopbackHost(admin.host)) return null;
  return `admin.listen ${hostPortLabel(admin.host, admin.port)} is not loopback and admin.token is not set: whoever reaches it sees /status and the live page (client addresses and users); set admin.token (and admin.tls)`;
}

/**
 * Makes the server's `close()` and `closeAllConnections()` end the open `/events` streams first:
 * they never go idle, so `close()` alone (which only closes idle keep-alive sockets) would wait
 * on them forever. Patched on the instance, so the HTTP and the HTTPS server share it.
 */
function endStreamsOnClose(server: http.Server | https.Server, streams: StatusStreams): void {
  const close = server.close.bind(server);
  const closeAllConnections = server.closeAllConnections.bind(server);
  server.close = function closeAdmin(callback?: (err?: Error) => void) {
    streams.closeAll();
    return close(callback);
  };
  server.closeAllConnections = function closeAllAdminConnections() {
    streams.closeAll();
    closeAllConnections();
  };
}

/** Settings for a TLS context of the admin endpoint. */
function secureOptions(tls: AdminTls): https.ServerOptions {
  return { cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' };
}

/**
 * The admin HTTP server: `/` (live status page), `/events` (its server-sent status stream),
 * `/metrics`, `/healthz`, `/readyz`, `/status`, `POST /reload`.
 * Hardened against garbage: small header limit, request and header timeouts, no bodies,
 * a bounded number of event streams.
 *
 * With a token in {@link AdminHandlers.settings}, every path but `/healthz` and `/readyz` needs
 * it (bearer, or Basic password) or gets 401; an `/events` stream opened with a token that a
 * reload replaced is ended at its next tick. With `tls`, it serves HTTPS only (TLS 1.2 or later).
 */
export function createAdminServer(h: AdminHandlers): http.Server {
  let settings = h.settings?.() ?? null;
  // A reload to `listen: off` takes effect at the restart; until then the protection stays.
  const current = (): AdminConfig | null => (settings = h.settings?.() ?? settings);
  /** Open `/events` streams and the token they were opened with. */
  const grantedStreams = new Map<http.ServerResponse, string | undefined>();
  const streams = new StatusStreams(() => {
    endRevokedStreams();
    return h.status();
  });
  const options: http.ServerOptions = { maxHeaderSize: 8192, requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 5_000 };
  const tls = settings?.tls;
  const secure = tls ? https.createServer({ ...options, ...secureOptions(tls), handshakeTimeout: 5_000 }, onRequest) : null;
  const server = secure ?? http.createServer(options, onRequest);
  endStreamsOnClose(server, streams);
  server.on('clientError', onClientError);
  server.maxRequestsPerSocket = 1000;
  if (secure && tls) {
    let inForce = tls;
    // Before tls.Server's own 'connection' listener, which makes the TLS socket with the context
    // then in force: a certificate a reload brought is served from the next connection on.
    server.prependListener('connection', function onAdminConnection() {
      const next = current()?.tls;
      if (!next || (next.cert === inForce.cert && next.key === inForce.key)) return;
      inForce = next;
      try {
        secure.setSecureContext(secureOptions(next));
      } catch {
        // The loader checked the pair; should it fail here all the same, the previous one serves on.
      }
    });
  }

  function endRevokedStreams(): void {
    const token = current()?.token;
    if (token === undefined) return;
    for (const [res, grantedWith] of grantedStreams) if (grantedWith !== token) res.socket?.destroy();
  }

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
    const token = current()?.token;
    if (token !== undefined && !OPEN_PATHS.has(path) && !authorized(req, token)) {
      return send(res, 401, 'unauthorized\n', undefined, { 'www-authenticate': CHALLENGES });
    }
    if (path === '/' && get) {
      res.writeHead(200, { ...STATUS_PAGE_HEADERS, 'content-length': STATUS_PAGE_HTML.length });
      res.end(STATUS_PAGE_HTML);
    } else if (path === '/favicon.ico' && get) {
      // Browsers ask for it; a 204 keeps their consoles free of a 404 per page load.
      res.writeHead(204, { 'cache-control': 'max-age=86400' });
      res.end();
    } else if (path === '/events' && method === 'GET') {
      grantedStreams.set(res, token);
      res.on('close', function onGrantedStreamClose() { grantedStreams.delete(res); });
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
