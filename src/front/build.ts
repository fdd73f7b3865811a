import type { ServiceConfig, User } from '../config/types';
import { SocksHandshake } from './socks';
import { ProxyProtocolReceiver } from './proxy-protocol';
import type { FrontStage } from './stage';
import { TlsTermination } from './tls';

/**
 * The front stages a service's config asks for, in the order bytes arrive: the PROXY header
 * (sent before anything else, TLS included), then the TLS handshake or the SOCKS handshake
 * (which checks logins against `users`, the users in force). Built once per config.
 */
export function buildFrontStages(config: ServiceConfig, users: () => readonly User[]): readonly FrontStage[] {
  const stages: FrontStage[] = [];
  if (config.accept.proxyProtocol) stages.push(new ProxyProtocolReceiver(config.accept.proxyProtocol.from));
  if (config.accept.tls) stages.push(new TlsTermination(config.accept.tls));
  if (config.protocol === 'socks') stages.push(new SocksHandshake(config, users));
  return Object.freeze(stages);
}
