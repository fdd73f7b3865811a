import type { ServiceConfig } from '../../config/types';
import { endWith, type ProtocolHandler } from '../protocol';
import { FtpSession } from './session';

/**
 * `protocol: ftp`: the control channel is run by an {@link FtpSession} (227/229 and PORT/EPRT
 * rewritten, data channels of the gateway's own, AUTH TLS refused); a client refused or whose
 * server cannot be reached reads `421` before the close, as RFC 959 has servers say it.
 */
export function ftpProtocol(_config: ServiceConfig): ProtocolHandler {
  return {
    refused(client, reason) {
      endWith(client, Buffer.from(`421 Service not available (${reason}), closing control connection.\r\n`, 'latin1'));
    },
    relay(client, upstream, config, owner) {
      return new FtpSession(client, upstream, config, owner);
    },
  };
}
