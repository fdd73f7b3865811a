import { parseConfig } from '../../src/config/load';
import type { GatewayConfig } from '../../src/config/types';
import { planListeners } from '../../src/listen/plan';

/** The host as the plan sees it: loopback only. */
const TABLE = { lo: [{ address: '127.0.0.1', family: 'IPv4', internal: true, netmask: '255.0.0.0', mac: '00:00:00:00:00:00', cidr: '127.0.0.1/8' }] } as never;

describe('the listener plan', () => {
  test('a socket two services ask for goes to the first one; the other is listed as a clash, never handed the socket', () => {
    const written = parseConfig(`
services:
  - { name: a, port: 40001, bind: [127.0.0.1], destination: "x.example:1" }
  - { name: b, port: 40002, bind: [127.0.0.1], intercept: [40003], destination: "x.example:1" }
`, 'p.yaml', { interfaces: TABLE });
    // As a config can come to meet itself after the check (interfaces that change under
    // bind: internal): b now asks for a's port.
    const [a, b] = written.services;
    const met: GatewayConfig = { ...written, services: [a, { ...b, port: a.port }] };
    const plan = planListeners(met, TABLE);
    expect(plan.specs.map((s) => [s.service, s.address, s.port])).toEqual([['a', '127.0.0.1', 40001], ['b', '127.0.0.1', 40003]]);
    expect(plan.clashes).toEqual(['b@127.0.0.1:40001']);
    expect(planListeners(written, TABLE).clashes).toEqual([]);
  });
});
