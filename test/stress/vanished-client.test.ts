import { connect } from '../helpers/net';
import { createNamespace, ip, netnsAvailable } from '../helpers/netns';
import { sleep, spawnNode, startGatewayProcess, startUpstream, waitLine, type GatewayEvent } from './procs';
import { join } from 'node:path';
import type { ClientDisconnectEvent } from '../../src/events/events';

const READER = join(__dirname, 'reader.js');
const IDLE_MS = 2000;

/**
 * A client that vanishes mid-transfer, sending neither FIN nor RST (a cable pulled, a laptop
 * closed): loopback cannot lose packets, so the client runs in a network namespace of its own,
 * reached over a veth pair, and its link is taken down. Needs root and `ip netns`; skipped
 * otherwise.
 */
const available = netnsAvailable();
if (!available) console.warn('[stress] skipping the vanished-client test: "ip netns add" does not work here (it needs root and iproute2)');

describe('a client that disappears mid-transfer without FIN or RST', () => {
  (available ? test : test.skip)('the gateway closes it at idleTimeout (reason idle-timeout) and keeps serving', async () => {
    const ns = createNamespace();
    const { gatewayAddress, clientAddress } = ns;
    const upstream = await startUpstream(['stream', '4096']);
    const gw = await startGatewayProcess(`
services:
  - name: s
    port: 0
    bind: ["127.0.0.1", "${gatewayAddress}"]
    idleTimeout: ${IDLE_MS}ms
    destination: 127.0.0.1:${upstream.port}
`);
    const reader = spawnNode([READER, gatewayAddress, String(gw.port('s', gatewayAddress))], { prefix: ['ip', 'netns', 'exec', ns.name] });
    // Mid-transfer: at least 1 MB has arrived, and it keeps coming.
    for (let i = 0; i < 100; i++) {
      const from = reader.stdout.length;
      const p = JSON.parse(await waitLine(reader, 'progress ', 5000, from)) as { bytes: number; wrong: number };
      if (p.bytes >= 1024 * 1024) break;
    }
    const fromNamespace = (e: GatewayEvent): boolean => e.client.startsWith(`${clientAddress}:`);
    expect(gw.events().filter(fromNamespace).map((e) => e.event)).toEqual(['ClientConnect']);

    // The link goes down somewhere while this synchronous command runs (spawning `ip netns exec`
    // takes ~100-200 ms): the lower bound counts from before it, the upper bound from after.
    const issued = Date.now();
    ip('netns', 'exec', ns.name, 'ip', 'link', 'set', ns.device, 'down');
    const down = Date.now();
    let gone: ClientDisconnectEvent | undefined;
    while (!gone && Date.now() - down < IDLE_MS + 15_000) {
      await sleep(50);
      gone = gw.events().find((e): e is ClientDisconnectEvent => e.event === 'ClientDisconnect' && fromNamespace(e));
    }
    const elapsed = Date.now() - down;
    const last = JSON.parse(await waitLine(reader, 'progress ', 5000, reader.stdout.length)) as { bytes: number; wrong: number };
    console.log(`[stress] vanished client: link down after ${last.bytes} bytes; the gateway closed it ${elapsed} ms later ` +
      `(idleTimeout ${IDLE_MS} ms): ${JSON.stringify(gone && { reason: gone.reason, bytesToClient: gone.bytesToClient, durationMs: gone.durationMs })}`);
    expect(gone).toMatchObject({ reason: 'idle-timeout', error: null });
    expect(gone!.bytesToClient).toBeGreaterThan(1024 * 1024);
    // Nothing reached the client: from its side the connection is still open.
    expect(last.wrong).toBe(0);
    expect(reader.stdout.some((l) => l.startsWith('closed '))).toBe(false);

    // The upstream leg went with it, and the gateway keeps serving the same service.
    const deadline = Date.now() + 5000;
    while ((await upstream.stats()).open > 0 && Date.now() < deadline) await sleep(100);
    expect((await upstream.stats()).open).toBe(0);
    const c = await connect(gw.port('s', '127.0.0.1'));
    const got: Buffer[] = [];
    let n = 0;
    c.on('data', (d: Buffer) => {
      got.push(d);
      n += d.length;
      if (n >= 256 * 1024) c.pause();
    });
    const until = Date.now() + 5000;
    while (n < 256 * 1024 && Date.now() < until) await sleep(20);
    const data = Buffer.concat(got);
    expect(data.length).toBeGreaterThanOrEqual(256 * 1024);
    expect(data.every((b, i) => b === i % 251)).toBe(true);
    c.destroy();
    expect(gw.run.child.exitCode).toBeNull();

    // Closed not before the idle timeout ran out, and not long after: from the moment the link
    // went down no byte moves either way (the send queue fills at once), which is what the README
    // says idleTimeout measures. The slack covers event-log flushing and polling on a busy machine.
    expect(elapsed + (down - issued)).toBeGreaterThanOrEqual(IDLE_MS - 100);
    expect(elapsed).toBeLessThan(IDLE_MS + 1000);
  }, 60_000);
});
