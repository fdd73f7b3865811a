import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { oneLine, type Context, type PathSeg } from '../context';
import type { AcceptTls, AdminTls, UpstreamTls } from '../types';
import { isObj, readPem } from './values';

/** TLS material: the upstream leg's, a binding's (accept.tls) and the admin endpoint's. */

export function upstreamTls(ctx: Context, path: PathSeg[], value: unknown, host: string, baseDir: string): UpstreamTls | null {
  if (value === undefined || value === false) return null;
  const o = isObj(value) ? value : {};
  const servername = typeof o.servername === 'string' ? o.servername : host;
  const tls: UpstreamTls = Object.freeze({
    servername,
    ca: readPem(ctx, [...path, 'ca'], o.ca, baseDir),
    cert: readPem(ctx, [...path, 'cert'], o.cert, baseDir),
    key: readPem(ctx, [...path, 'key'], o.key, baseDir),
    verify: o.verify !== false,
  });
  if ((o.cert === undefined) !== (o.key === undefined)) {
    ctx.add(path, 'cert and key must be given together');
  }
  try {
    createSecureContext({ ca: tls.ca ?? undefined, cert: tls.cert ?? undefined, key: tls.key ?? undefined });
  } catch (err) {
    ctx.add(path, `unusable TLS material: ${(err as Error).message}`);
  }
  return tls;
}

/** OpenSSL's reason without Node's prefix, for a config message. */
function opensslReason(err: unknown): string {
  const e = err as { message?: string; code?: string };
  return `${oneLine(String(e.message ?? err))}${e.code ? ` (${e.code})` : ''}`;
}

export /** The certificates of a PEM bundle, or why it is not one. */
function certificatesIn(pem: string): X509Certificate[] | string {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (!blocks) return 'holds no certificate ("-----BEGIN CERTIFICATE-----")';
  try {
    return blocks.map((b) => new X509Certificate(b));
  } catch (err) {
    return `is not a valid certificate: ${opensslReason(err)}`;
  }
}

/** `accept.tls`: the binding's certificate and key (checked to work together), client CAs, ALPN. */
/**
 * A server's `cert` and `key` (files or inline PEM): read, the certificate parsed, and the two
 * checked to work together, or null with the problem at `cert` (OpenSSL's reason included).
 */
function serverPair(ctx: Context, path: PathSeg[], value: Record<string, unknown>, baseDir: string): { cert: string; key: string; notAfter: number } | null {
  const cert = readPem(ctx, [...path, 'cert'], value.cert, baseDir);
  const key = readPem(ctx, [...path, 'key'], value.key, baseDir);
  if (cert === null || key === null) return null;
  const chain = certificatesIn(cert);
  if (typeof chain === 'string') {
    ctx.add([...path, 'cert'], `the certificate ${chain}`);
    return null;
  }
  try {
    createSecureContext({ cert, key, minVersion: 'TLSv1.2' });
  } catch (err) {
    ctx.add([...path, 'cert'], `unusable with its key: ${opensslReason(err)}`);
    return null;
  }
  return { cert, key, notAfter: Date.parse(chain[0].validTo) };
}

export function acceptTls(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): AcceptTls | null {
  if (!isObj(value)) return null;
  const pair = serverPair(ctx, path, value, baseDir);
  const clientCa = value.clientCa === undefined ? null : readPem(ctx, [...path, 'clientCa'], value.clientCa, baseDir);
  if (pair === null || (value.clientCa !== undefined && clientCa === null)) return null;
  if (clientCa !== null) {
    const cas = certificatesIn(clientCa);
    if (typeof cas === 'string') {
      ctx.add([...path, 'clientCa'], `the client CA ${cas}`);
      return null;
    }
  }
  if (value.clientCert !== undefined && clientCa === null) ctx.add([...path, 'clientCert'], 'needs clientCa: the CA client certificates are verified against', true);
  const clientCert = clientCa === null ? 'none' : value.clientCert === 'optional' ? 'optional' : 'required';
  const alpn = Array.isArray(value.alpn) ? value.alpn.filter((a): a is string => typeof a === 'string') : [];
  return Object.freeze({ cert: pair.cert, key: pair.key, clientCa, clientCert, alpn: Object.freeze(alpn), notAfter: pair.notAfter });
}

export /** `admin.tls`: the endpoint's certificate and key, checked to work together (TLS 1.2 or later). */
function adminTls(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): AdminTls | null {
  if (!isObj(value)) return null;
  const pair = serverPair(ctx, path, value, baseDir);
  return pair ? Object.freeze({ cert: pair.cert, key: pair.key }) : null;
}
