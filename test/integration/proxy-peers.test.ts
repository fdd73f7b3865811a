import { execFile } from 'node:child_process';
import * as http from 'node:http';
import * as net from 'node:net';
import { promisify } from 'node:util';
import { connect, listen, nextDisconnect, portOf, readUntilClose, recordEvents, startGateway, startTaggedServer, unusedPort, waitFor } from '../helpers/net';
import { CURL, describeWithPeers, HAPROXY, NGINX, startHaproxy, startNginx } from '../helpers/peers';

/**
 * The PROXY protocol against real peers: HAProxy in front of mapgate (`send-proxy`,
 * `send-proxy-v2`), nginx behind it (`listen ... proxy_protocol`), and curl's
 * `--haproxy-protocol` as a client. Every client connects from 127.0.0.9 (or 127.0.0.5),
 * so the address the far end reports can only have come through the headers.
 */

const run = promisify(execFile);

const yaml = (services: string): string => `
admin: { listen: "127.0.0.1:0" }
log: { events: "off" }
services:
${services}`;

/** A gateway whose service `name` takes PROXY headers from `from` and relays to 127.0.0.1:`up`. */
function startBehind(name: string, from: string, up: number): ReturnType<typeof startGateway> {
  return startGateway(yaml(`  - name: ${name}
    port: 0
    bind: [127.0.0.1]
    accept:
      proxyProtocol: { from: [${from}] }
    destination: 127.0.0.1:${up}
`));
}

describeWithPeers([[HAPROXY, 'haproxy']])('HAProxy in front: send-proxy and send-proxy-v2', () => {
  test.each(['send-proxy', 'send-proxy-v2'])('%s: mapgate sees the client HAProxy saw', async (option) => {
    const up = await startTaggedServer('up');
    const gw = await startBehind('behind', '127.0.0.1', up);
    const front = await unusedPort();
    await startHaproxy(`frontend in
  bind 127.0.0.1:${front}
  default_backend gw
backend gw
  server mapgate 127.0.0.1:${portOf(gw, 'behind')} ${option} source 127.0.0.1
`, front);
    // startHaproxy's readiness probe went through HAProxy too (as 127.0.0.1): look for our client.
    const events = recordEvents(gw);
    const s = await connect(front, '127.0.0.1', { localAddress: '127.0.0.9' } as net.NetConnectOpts);
    const from = `127.0.0.9:${s.localPort}`;
    const answer = readUntilClose(s);
    s.end('via haproxy');
    expect((await answer).data.toString()).toBe('up:via haproxy');
    await waitFor(() => events.some((e) => e.event === 'ClientDisconnect' && e.client === from), 5000, `a ClientDisconnect from ${from}`);
    expect(events.filter((e) => e.client.startsWith('127.0.0.9:')).map((e) => [e.event, e.client])).toEqual([['ClientConnect', from], ['ClientDisconnect', from]]);
  });
});

describeWithPeers([[NGINX, 'nginx']])('nginx behind: listen ... proxy_protocol', () => {
  test.each(['v1', 'v2'])('%s: nginx reports the client mapgate saw', async (version) => {
    const back = await unusedPort();
    await startNginx(`http {
  server {
    listen 127.0.0.1:${back} proxy_protocol;
    location / { return 200 "$proxy_protocol_addr:$proxy_protocol_port $remote_addr\\n"; }
  }
}`, back);
    const gw = await startGateway(yaml(`  - name: front
    port: 0
    bind: [127.0.0.1]
    destination: { host: 127.0.0.1, port: ${back}, proxyProtocol: ${version} }
`));
    const body = await new Promise<string>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: portOf(gw, 'front'), path: '/', localAddress: '127.0.0.9', agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve(`${text} ${req.socket?.localPort ?? ''}`));
      });
      req.on('error', reject);
    });
    const [reported, remote, localPort] = body.trim().split(/\s+/);
    expect(reported).toBe(`127.0.0.9:${localPort}`);
    // The TCP peer nginx saw is the gateway's upstream socket, not the client.
    expect(remote).toBe('127.0.0.1');
  });
});

describeWithPeers([[CURL, 'curl']])('curl --haproxy-protocol', () => {
  test('curl\'s v1 header is accepted and names curl\'s own address', async () => {
    const server = http.createServer((_req, res) => res.end('hello from behind\n'));
    const up = await listen(server);
    const gw = await startBehind('curl', '127.0.0.5', up);
    const done = nextDisconnect(gw);
    const { stdout } = await run('curl', ['-sS', '--max-time', '10', '--haproxy-protocol', '--interface', '127.0.0.5', `http://127.0.0.1:${portOf(gw, 'curl')}/`]);
    expect(stdout).toBe('hello from behind\n');
    expect((await done).client).toMatch(/^127\.0\.0\.5:\d+$/);
  });
});
