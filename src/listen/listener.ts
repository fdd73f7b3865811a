import * as net from 'node:net';
import { hostPortLabel } from '../config/parse-values';

/**
 * Opens a TCP listener for relaying: paused sockets (no byte is read before the upstream is
 * ready), half-open allowed, Nagle off. Resolves once listening; rejects with the bind error,
 * with the one-shot listeners removed either way.
 */
export function listenTcp(address: string, port: number, onConnection: (socket: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, onConnection);
  return new Promise((resolve, reject) => {
    function onError(err: Error): void {
      server.off('listening', onListening);
      reject(err);
    }
    function onListening(): void {
      server.off('error', onError);
      resolve(server);
    }
    server.once('error', onError);
    server.once('listening', onListening);
    // `::` listens dual-stack; every specific address listens on that address only.
    server.listen({ host: address, port, ipv6Only: false, backlog: 1024 });
  });
}

/** `address:port` of a listening server, IPv6 bracketed. */
export function serverLabel(server: net.Server): string {
  const a = server.address() as net.AddressInfo;
  return hostPortLabel(a.address, a.port);
}
