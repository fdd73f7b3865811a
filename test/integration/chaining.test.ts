import { execFile, spawn } from 'node:child_process';
import * as http from 'node:http';
import * as net from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ClientConnectEvent } from '../../src/events/events';
import { listen, portOf, recordEvents, roundTrip, startGateway, startTaggedServer, waitFor } from '../helpers/net';
import { collectLines } from '../helpers/process';

/**
 * Gateway chaining (WinGate's SSL mapping from one gateway to another): gateway A's destination
 * is gateway B over TLS with a client certificate; B requires client certificates and routes A
 * as the user its certificate names. Third-party TLS clients (openssl s_client, curl --cert)
 * reach B the same way.
 */

const FIXTURES = join(__dirname, '..', 'fixtures');
const F = (name: string): string => join(FIXTURES, name);
const run = promisify(execFile);

/** An upstream that answers the first chunk with `tag:chunk` and closes. */
async function startOneShot(tag: string): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', (d) => s.end(`${tag}:${d}`));
  });
  return listen(server);
}

async function startB(): Promise<{ gw: Awaited<ReturnType<typeof startGateway>>; port: number }> {
  const [chained, alice] = await Promise.all([startTaggedServer('chained'), startOneShot('alice')]);
  const web = await listen(http.createServer((_req, res) => res.end('ops over https\n')));
  const gw = await startGateway(`
admin: { listen: "127.0.0.1:0" }
log: { events: "off" }
users:
  gateway-a: { certificates: [{ cn: gateway-a, ou: gateways }] }
  alice: { certificates: [{ cn: alice }] }
  ops: { certificates: [{ uri: "spiffe://corp.example/ops" }] }
services:
  - name: b
    port: 0
    bind: [127.0.0.1]
    accept:
      tls: { cert: server.pem, key: server.key, clientCa: users-ca.pem }
    mappings:
      - user: gateway-a
        destination: 127.0.0.1:${chained}
      - user: alice
        destination: 127.0.0.1:${alice}
      - user: ops
        destination: 127.0.0.1:${web}
      - source: 0.0.0.0/0
        action: reject
`, { baseDir: FIXTURES });
  return { gw, port: portOf(gw, 'b') };
}

describe('gateway chaining', () => {
  test('A reaches B over TLS with its certificate; B routes A as the user "gateway-a"', async () => {
    const b = await startB();
    const a = await startGateway(`
admin: { listen: "127.0.0.1:0" }
log: { events: "off" }
services:
  - name: a
    port: 0
    bind: [127.0.0.1]
    destination:
      host: 127.0.0.1
      port: ${b.port}
      tls: { servername: localhost, ca: ca.pem, cert: gateway-a.pem, key: gateway-a.key }
`, { baseDir: FIXTURES });
    const [eventsA, eventsB] = [recordEvents(a), recordEvents(b.gw)];
    expect((await roundTrip(portOf(a, 'a'), 'through two gateways')).toString()).toBe('chained:through two gateways');
    await waitFor(() => eventsA.length === 2 && eventsB.length === 2);
    expect(eventsA[0]).toMatchObject({ event: 'ClientConnect', tls: true, user: null });
    expect(eventsB[0]).toMatchObject({ event: 'ClientConnect', user: 'gateway-a', auth: 'certificate', sni: 'localhost' });
    expect(eventsB[1]).toMatchObject({ reason: 'client-closed', bytesFromClient: 20 });
  });

  test('openssl s_client with alice\'s certificate is routed as alice', async () => {
    const b = await startB();
    const events = recordEvents(b.gw);
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${b.port}`, '-servername', 'localhost', '-CAfile', F('ca.pem'),
      '-cert', F('alice.pem'), '-key', F('alice.key'), '-verify_return_error', '-quiet'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = collectLines(child);
    child.stdin!.write('hello from openssl\n');
    expect(await out.exit).toBe(0);
    expect(out.stdout.join('\n')).toBe('alice:hello from openssl');
    await waitFor(() => events.length === 2);
    expect(events[0] as ClientConnectEvent).toMatchObject({ user: 'alice', auth: 'certificate' });
  });

  test('curl --cert: a URI SAN makes the client "ops"; a verified certificate of nobody is rejected by the last mapping', async () => {
    const b = await startB();
    const url = `https://localhost:${b.port}/`;
    const resolve = `localhost:${b.port}:127.0.0.1`;
    const ops = await run('curl', ['-sS', '--max-time', '10', '--resolve', resolve, '--cacert', F('ca.pem'), '--cert', F('ops.pem'), '--key', F('ops.key'), url]);
    expect(ops.stdout).toBe('ops over https\n');
    const events = recordEvents(b.gw);
    await expect(run('curl', ['-sS', '--max-time', '10', '--resolve', resolve, '--cacert', F('ca.pem'), '--cert', F('mallory.pem'), '--key', F('mallory.key'), url]))
      .rejects.toMatchObject({ code: expect.any(Number) });
    // The ops connection's own ClientDisconnect may land after the recorder started: look for mallory's.
    await waitFor(() => events.some((e) => e.event === 'ClientDisconnect' && e.reason === 'rejected'), 5000, 'the rejected connection\'s events');
    expect(events.filter((e) => e.user === null).map((e) => [e.event, e.auth, (e as { reason?: string }).reason ?? null])).toEqual([['ClientConnect', null, null], ['ClientDisconnect', null, 'rejected']]);
  });
});
