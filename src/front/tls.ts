import type { Socket } from 'node:net';
import * as tls from 'node:tls';
import type { AcceptTls } from '../config/types';
import type { PeerCertificate } from '../route/identify';
import type { FrontContext, FrontRefusal, FrontStage } from './stage';

interface Pending {
  readonly ctx: FrontContext;
  readonly done: (refusal: FrontRefusal | null, socket: Socket) => void;
}

/**
 * `accept.tls`: the gateway terminates the client's TLS (TLS 1.2 at least). One `tls.Server`
 * per service config, never listening: each accepted socket is handed to it, so Node's own
 * server-side handshake runs (certificate verification, ALPN, `tlsClientError`) under the
 * connection's handshake deadline rather than the server's. A reload with new certificates
 * builds a new stage: new handshakes use it, open connections keep theirs.
 */
export class TlsTermination implements FrontStage {
  readonly kind = 'tls' as const;
  private readonly server: tls.Server;
  /** Handshakes in progress, by the raw socket handed to the server. */
  private readonly pending = new WeakMap<Socket, Pending>();

  constructor(private readonly config: AcceptTls) {
    this.server = tls.createServer({
      cert: config.cert,
      key: config.key,
      ca: config.clientCa ?? undefined,
      requestCert: config.clientCert !== 'none',
      // `required`: OpenSSL refuses a client without a certificate with a proper alert; one whose
      // certificate does not verify is refused below, with the verification error as the code.
      rejectUnauthorized: config.clientCert === 'required',
      minVersion: 'TLSv1.2',
      ALPNProtocols: config.alpn.length > 0 ? [...config.alpn] : undefined,
      // The connection's own deadline covers the handshake: no second timer per connection.
      handshakeTimeout: 0,
      pauseOnConnect: true,
    });
    this.server.on('secureConnection', (s: tls.TLSSocket) => this.onSecure(s));
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException, s: tls.TLSSocket) => this.onError(err, s));
  }

  run(socket: Socket, ctx: FrontContext, done: (refusal: FrontRefusal | null, socket: Socket) => void): void {
    this.pending.set(socket, { ctx, done });
    this.server.emit('connection', socket);
  }

  /** The raw socket a server-side TLS socket wraps: the key of {@link pending}. */
  private take(s: tls.TLSSocket): Pending | undefined {
    // Node keeps the wrapped socket as `_parent` (lib/_tls_wrap.js); there is no public accessor.
    const raw = (s as unknown as { _parent?: Socket })._parent;
    const p = raw ? this.pending.get(raw) : undefined;
    if (raw) this.pending.delete(raw);
    return p;
  }

  private onSecure(s: tls.TLSSocket): void {
    const p = this.take(s);
    if (!p) return void s.destroy();
    const peer = this.config.clientCert === 'none' ? null : s.getPeerCertificate();
    const presented = peer !== null && Object.keys(peer).length > 0;
    if (presented && !s.authorized) {
      // `optional` lets a client in without a certificate, never with one that does not verify.
      return p.done({ reason: 'tls-failed', code: String(s.authorizationError ?? 'UNABLE_TO_VERIFY') }, s);
    }
    p.ctx.tls = {
      sni: typeof s.servername === 'string' && s.servername ? s.servername.toLowerCase() : null,
      alpn: typeof s.alpnProtocol === 'string' ? s.alpnProtocol : null,
      certificate: presented ? certificateFields(peer!) : null,
    };
    p.done(null, s);
  }

  private onError(err: NodeJS.ErrnoException, s: tls.TLSSocket): void {
    const p = this.take(s);
    s.destroy();
    if (!p) return;
    // A certificate that did not verify under `required` surfaces as a reset; its reason is here.
    p.done({ reason: 'tls-failed', code: String(s.authorizationError ?? err.code ?? 'EUNKNOWN') }, s);
  }
}

const asList = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Subject and subject alternative names of a client certificate, as users are matched by them. */
export function certificateFields(c: tls.PeerCertificate): PeerCertificate {
  const subject = (c.subject ?? {}) as unknown as Record<string, string | string[] | undefined>;
  const san = parseSubjectAltName(c.subjectaltname ?? '');
  return {
    cn: asList(subject.CN),
    ou: asList(subject.OU),
    o: asList(subject.O),
    dns: san.get('DNS') ?? [],
    uri: san.get('URI') ?? [],
    email: san.get('email') ?? [],
  };
}

/**
 * Node's `subjectaltname` text: `DNS:a.example, URI:spiffe://x, email:a@b`; an entry holding a
 * comma or quote is written as a JSON string (`DNS:"a,b"`, since CVE-2021-44532).
 */
export function parseSubjectAltName(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const re = /([A-Za-z][A-Za-z ]*):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;
  for (let m = re.exec(text); m !== null && m[0] !== ''; m = re.exec(text)) {
    let value = m[2];
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        continue;
      }
    }
    const list = out.get(m[1]) ?? [];
    list.push(value);
    out.set(m[1], list);
  }
  return out;
}
