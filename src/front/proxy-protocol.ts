import type { Socket } from 'node:net';
import { anyContains, parseClientAddress, type Cidr } from '../config/cidr';
import { parseProxyHeader } from './proxy-header';
import type { FrontContext, FrontRefusal, FrontStage } from './stage';

/** The largest header read: v2's fixed part and the most its length field can say. */
const MAX_HEADER = 16 + 0xffff;

const UNTRUSTED: FrontRefusal = Object.freeze({ reason: 'proxy-protocol', code: 'MAPGATE_ERR_PROXY_UNTRUSTED' });
const MALFORMED: FrontRefusal = Object.freeze({ reason: 'proxy-protocol', code: 'MAPGATE_ERR_PROXY_HEADER' });

/**
 * `accept.proxyProtocol`: every connection must come from one of `from` and begin with a PROXY
 * header (v1 or v2), read whole however the segments fall; the header's source becomes the
 * client. Anything else is refused, never guessed at: a connection from elsewhere is closed
 * before a byte of it is read (HAProxy's rule: only trusted senders may say who the client is).
 */
export class ProxyProtocolReceiver implements FrontStage {
  readonly kind = 'proxy-protocol' as const;
  constructor(private readonly from: readonly Cidr[]) {}

  run(socket: Socket, ctx: FrontContext, done: (refusal: FrontRefusal | null, socket: Socket) => void): void {
    const peer = parseClientAddress(ctx.client.address);
    if (peer === null || !anyContains(this.from, peer)) return done(UNTRUSTED, socket);
    let buf: Buffer = Buffer.alloc(0);
    const finish = (refusal: FrontRefusal | null, rest: Buffer | null = null): void => {
      socket.pause();
      socket.off('data', onData);
      socket.off('end', onEnd);
      // The client's first bytes may share a segment with the header: they are its, not ours.
      // Put back once paused, so no 'data' event can carry them off before the next stage reads.
      if (rest !== null && rest.length > 0) socket.unshift(rest);
      done(refusal, socket);
    };
    function onEnd(): void {
      finish(MALFORMED);
    }
    function onData(chunk: Buffer): void {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const r = parseProxyHeader(buf);
      if (r.state === 'more') {
        if (buf.length >= MAX_HEADER) finish(MALFORMED);
        return;
      }
      if (r.state === 'invalid') return finish(MALFORMED);
      if (r.header.command === 'proxy' && r.header.source && r.header.destination) {
        ctx.client = r.header.source;
        ctx.local = r.header.destination;
      }
      finish(null, buf.subarray(r.length));
    }
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.resume();
  }
}
