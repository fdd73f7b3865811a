import type { Context, PathSeg } from '../context';
import type { FtpSettings, ServiceProtocol, SocksSettings } from '../types';
import { duration, isObj } from './values';

/** What every service's protocol settings need from the rest of the file. */
interface ProtocolEnv {
  /** Whether some user has a password (a SOCKS login needs one). */
  readonly passwords: boolean;
}

const FTP_DEFAULTS = { dataTimeout: '30s', maxDataChannels: 4 };

function ftpSettings(ctx: Context, path: PathSeg[], value: unknown): FtpSettings {
  const o = isObj(value) ? value : {};
  let passivePorts: FtpSettings['passivePorts'] = null;
  if (typeof o.passivePorts === 'string') {
    const [from, to] = o.passivePorts.split('-').map(Number);
    if (to > 65535) ctx.add([...path, 'passivePorts'], `${o.passivePorts}: ports go up to 65535`);
    else if (from > to) ctx.add([...path, 'passivePorts'], `${o.passivePorts}: the first port must not be above the last`);
    else if (from < 1024) ctx.add([...path, 'passivePorts'], `${o.passivePorts}: data ports must be 1024 or above`);
    passivePorts = Object.freeze({ from, to });
  }
  return Object.freeze({
    passivePorts,
    allowForeignPassive: o.allowForeignPassive === true,
    dataTimeoutMs: duration(ctx, [...path, 'dataTimeout'], o.dataTimeout, FTP_DEFAULTS.dataTimeout),
    maxDataChannels: typeof o.maxDataChannels === 'number' ? o.maxDataChannels : FTP_DEFAULTS.maxDataChannels,
  });
}

/**
 * A service's `protocol` and its settings (`ftp:`, `socks:`), and what each protocol cannot do
 * (TLS on an FTP service's data channels; a default destination on a SOCKS service, which would
 * make it an open proxy by another name).
 */
export function protocolSettings(ctx: Context, path: PathSeg[], s: Record<string, unknown>, env: ProtocolEnv): {
  protocol: ServiceProtocol; ftp: FtpSettings | null; socks: SocksSettings | null;
} {
  const protocol: ServiceProtocol = s.protocol === 'ftp' || s.protocol === 'socks' ? s.protocol : 'tcp';
  if (s.ftp !== undefined && protocol !== 'ftp') ctx.add([...path, 'ftp'], 'only with protocol: ftp', true);
  if (s.socks !== undefined && protocol !== 'socks') ctx.add([...path, 'socks'], 'only with protocol: socks', true);
  let ftp: FtpSettings | null = null;
  let socks: SocksSettings | null = null;
  if (protocol === 'ftp') {
    ftp = ftpSettings(ctx, [...path, 'ftp'], s.ftp);
    if (isObj(s.accept) && s.accept.tls !== undefined) {
      ctx.add([...path, 'accept', 'tls'], 'an FTP service cannot accept TLS: its data channels would be plain (see README, FTP)', true);
    }
    if (isObj(s.accept) && s.accept.proxyProtocol !== undefined) {
      ctx.add([...path, 'accept', 'proxyProtocol'], 'an FTP service cannot take a PROXY header: its data channels check the client by its TCP address', true);
    }
    // Data channels are plain TCP straight to the server: TLS or a PROXY header on the control leg alone would mislead.
    const upstreams: Array<[PathSeg[], unknown]> = [[[...path, 'destination'], s.destination]];
    if (Array.isArray(s.mappings)) s.mappings.forEach((m, i) => isObj(m) && upstreams.push([[...path, 'mappings', i, 'destination'], m.destination]));
    for (const [at, d] of upstreams) {
      (Array.isArray(d) ? d : [d]).forEach((one, j) => {
        if (!isObj(one)) return;
        const here = Array.isArray(d) ? [...at, j] : at;
        if (one.tls !== undefined) ctx.add([...here, 'tls'], 'an FTP destination cannot use TLS: its data channels would be plain', true);
        if (one.proxyProtocol !== undefined) ctx.add([...here, 'proxyProtocol'], 'an FTP destination cannot take a PROXY header: its data channels carry none', true);
      });
    }
  }
  if (protocol === 'socks') {
    const o = isObj(s.socks) ? s.socks : {};
    socks = Object.freeze({ auth: o.auth === 'none' ? 'none' : 'password' });
    if (s.destination !== undefined) {
      ctx.add([...path, 'destination'], 'a SOCKS service has no default destination: mappings with to: [...] say what clients may reach', true);
    }
    if (isObj(s.accept) && s.accept.tls !== undefined) ctx.add([...path, 'accept', 'tls'], 'a SOCKS service does not accept TLS (clients speak SOCKS first)', true);
    // An unknown auth was reported by the schema; a second problem about passwords would mislead.
    const knownAuth = !isObj(s.socks) || s.socks.auth === undefined || s.socks.auth === 'password' || s.socks.auth === 'none';
    if (knownAuth && socks.auth === 'password' && !env.passwords) {
      const where = isObj(s.socks) && s.socks.auth !== undefined ? [...path, 'socks', 'auth'] : path;
      ctx.add(where, 'SOCKS logins (auth: password, the default) need users with a password: add one from `mapgate passwd`, or set socks: { auth: none }');
    }
  }
  return { protocol, ftp, socks };
}
