import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGateway, loadConfigFile } from '../../src';
import { metricValue, onTeardown } from '../helpers/net';
import { createNamespace, netnsAvailable, requestFrom } from '../helpers/netns';

/**
 * `admin.token` seen from a client that is not on loopback (a network namespace, as in
 * admin-remote.test.ts): the token opens /status there, and `POST /reload` stays refused with
 * 403 even with the token, and with 401 without it. Needs root and `ip netns`; skipped otherwise.
 */
const available = netnsAvailable();
if (!available) console.warn('[stress] skipping the remote admin token test: "ip netns add" does not work here (it needs root and iproute2)');

const TOKEN = 'remote-token-4a7c9e1b3d5f';

describe('admin.token seen from a client that is not on loopback', () => {
  (available ? test : test.skip)('the token opens /status; POST /reload is 401 without it and 403 with it, and reloads nothing', async () => {
    const ns = createNamespace();
    const dir = mkdtempSync(join(tmpdir(), 'mapgate-admin-remote-token-'));
    onTeardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'mappings.yaml');
    writeFileSync(file, `admin: { listen: "${ns.gatewayAddress}:0", token: "${TOKEN}" }
log: { events: "off" }
services:
  - { name: s, port: 0, bind: ["127.0.0.1"], destination: "127.0.0.1:9" }
`);
    const gw = createGateway(loadConfigFile(file), { defaultMetrics: false });
    await gw.start();
    onTeardown(() => gw.destroy());
    const base = `http://${ns.gatewayAddress}:${gw.adminAddress()!.port}`;
    const reloads = async (): Promise<number> => {
      let n = 0;
      for (const result of ['success', 'failure']) n += (await metricValue(gw, 'mapgate_config_reload_total', { result })) || 0;
      return n;
    };
    const before = await reloads();

    expect((await requestFrom(ns.name, 'GET', `${base}/healthz`)).status).toBe(200);
    expect(await requestFrom(ns.name, 'GET', `${base}/status`)).toEqual({ status: 401, body: 'unauthorized\n' });
    const status = await requestFrom(ns.name, 'GET', `${base}/status`, `Bearer ${TOKEN}`);
    expect(status.status).toBe(200);
    expect(JSON.parse(status.body)).toHaveProperty('services');

    expect(await requestFrom(ns.name, 'POST', `${base}/reload`)).toEqual({ status: 401, body: 'unauthorized\n' });
    expect(await requestFrom(ns.name, 'POST', `${base}/reload`, `Bearer ${TOKEN}`)).toEqual({ status: 403, body: 'reload is accepted from loopback only\n' });
    expect(await reloads()).toBe(before);
    expect(gw.ready).toBe(true);
  }, 60_000);
});
