import * as net from 'node:net';

/**
 * The `i`th of many distinct loopback client addresses, `127.B.x.y` with B from `base` up: the
 * whole of 127/8 is local on Linux, so a client socket can bind any of them. The last octet
 * skips 0 and 255, 254 addresses per /24.
 */
export function floodAddress(i: number, base: number): string {
  const perB = 254 * 256;
  const b = base + Math.floor(i / perB);
  if (b > 254) throw new RangeError(`flood address ${i} from 127.${base}/8 is past 127.254`);
  const rest = i % perB;
  return `127.${b}.${Math.floor(rest / 254)}.${1 + (rest % 254)}`;
}

/** What a client saw of one connection: let in (its probe came back) or closed without a byte. */
export interface Probe {
  readonly admitted: boolean;
  /** The client's port: with its address, the `client` of the gateway's events. */
  readonly localPort: number;
  /** Open while `hold` and admitted; destroyed otherwise. */
  readonly socket: net.Socket;
}

/**
 * Connects to 127.0.0.1:`port` from `localAddress` and sends one byte through an echo upstream:
 * admitted when it comes back, refused when the gateway closes first (a limit closes a client
 * without a byte). Without `hold`, the socket is then reset (`resetAndDestroy`), so the client
 * leaves no TIME_WAIT behind; a held socket is the caller's to destroy. Rejects after
 * `timeoutMs` if neither happens, or if the connection itself fails.
 */
export function probe(port: number, localAddress: string, options: { hold?: boolean; timeoutMs?: number } = {}): Promise<Probe> {
  const { hold = false, timeoutMs = 10_000 } = options;
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    let connected = false;
    let localPort = 0;
    let done = false;
    const timer = setTimeout(onProbeTimeout, timeoutMs);
    function settle(admitted: boolean): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onProbeData);
      // A refused socket is closed already.
      if (admitted && !hold) socket.resetAndDestroy();
      resolve({ admitted, localPort, socket });
    }
    function onProbeTimeout(): void {
      if (done) return;
      done = true;
      socket.destroy();
      reject(new Error(`probe from ${localAddress}: neither echoed nor closed within ${timeoutMs} ms`));
    }
    function onProbeData(): void {
      settle(true);
    }
    function onProbeClose(): void {
      if (connected) return settle(false);
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`probe from ${localAddress}: the connection failed before it was established`));
    }
    // A refusal may reach us as a reset (the gateway destroyed a socket holding our unread byte).
    socket.on('error', () => {});
    socket.once('close', onProbeClose);
    socket.on('data', onProbeData);
    socket.once('connect', () => {
      connected = true;
      // Read now: a socket the gateway closed has no local port any more.
      localPort = socket.localPort ?? 0;
      socket.write('p');
    });
  });
}

/**
 * Runs `task(i)` for i in [0, count), at most `inFlight` at once, stopping early at `deadline`
 * (ms since the epoch); resolves how many ran. A task's rejection rejects the whole run.
 */
export async function bounded(count: number, inFlight: number, deadline: number, task: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  async function worker(): Promise<void> {
    while (next < count && Date.now() < deadline) await task(next++);
  }
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, worker));
  return next;
}
