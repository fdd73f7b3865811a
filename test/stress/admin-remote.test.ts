import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGateway, loadConfigFile } from '../../src';
import { metricValue, onTeardown } from '../helpers/net';
import { createNamespace, netnsAvailable, requestFrom } from '../helpers/netns';

/**
 * The admin endpoint follows `admin.listen`: bound to a non-loopback address it answers clients
 * there, but `POST /reload` stays loopback-only. Every other test's client is on loopback, so
 * this one runs its client in a network namespace. Needs root and `ip netns`; skipped otherwise.
 */
const available = netnsAvailable();
if (!available) console.warn('[stress] skipping the remote admin test: "ip netns add" does not work here (it needs root and iproute2)');

describe('the admin endpoint seen from a client that is not on loopback', () => {
  (available ? test : test.skip)('answers /healthz and /status where admin.listen says, refuses POST /reload with 403 and reloads nothing', async () => {
    const ns = createNamespace();
    const dir = mkdtempSync(join(tmpdir(), 'mapgate-admin-remote-'));
    onTeardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'mappings.yaml');
    writeFileSync(file, `admin: { listen: "${ns.gatewayAddress}:0" }
log: { events: "off" }
services:
  - name: s
    port: 0
    bind: ["127.0.0.1"]
    destination: 127.0.0.1:9
`);
    const gw = createGateway(loadConfigFile(file), { defaultMetrics: false });
    await gw.start();
    onTeardown(() => gw.destroy());
    const admin = gw.adminAddress()!;
    expect(admin.host).toBe(ns.gatewayAddress);
    const base = `http://${ns.gatewayAddress}:${admin.port}`;
    // Reloads attempted so far, either result (a series appears with its first reload).
    const reloads = async (): Promise<number> => {
      let n = 0;
      for (const result of ['success', 'failure']) n += (await metricValue(gw, 'mapgate_config_reload_total', { result })) || 0;
      return n;
    };
    const before = await reloads();

    // Reachable from the namespace: the endpoint is where admin.listen put it.
    expect((await requestFrom(ns.name, 'GET', `${base}/healthz`)).status).toBe(200);
    const status = await requestFrom(ns.name, 'GET', `${base}/status`);
    expect(status.status).toBe(200);
    expect(JSON.parse(status.body)).toHaveProperty('services');

    // But a reload is not taken from there.
    expect(await requestFrom(ns.name, 'POST', `${base}/reload`)).toEqual({ status: 403, body: 'reload is accepted from loopback only\n' });
    expect(await reloads()).toBe(before);
    expect(gw.ready).toBe(true);
  }, 60_000);
});
