import type { ServiceConfig } from '../config/types';
import { ftpProtocol } from './ftp';
import type { ProtocolHandler } from './protocol';
import { socksProtocol } from './socks';

/** The protocol handler a service's config asks for; null for plain TCP (the fast path). Built once per config. */
export function buildProtocol(config: ServiceConfig): ProtocolHandler | null {
  switch (config.protocol) {
    case 'ftp': return ftpProtocol(config);
    case 'socks': return socksProtocol(config);
    default: return null;
  }
}
