import type { ServiceConfig } from '../config/types';
import { ProxyProtocolReceiver } from './proxy-protocol';
import type { FrontStage } from './stage';
import { TlsTermination } from './tls';

/**
 * The front stages a service's config asks for, in the order bytes arrive: the PROXY header
 * (sent before anything else, TLS included), then the TLS handshake. Built once per config.
 */
export function buildFrontStages(config: ServiceConfig): readonly FrontStage[] {
  const stages: FrontStage[] = [];
  if (config.accept.proxyProtocol) stages.push(new ProxyProtocolReceiver(config.accept.proxyProtocol.from));
  if (config.accept.tls) stages.push(new TlsTermination(config.accept.tls));
  return Object.freeze(stages);
}
