import type { GatewayConfig } from '../config/types';
import { resolveBind, type InterfaceTable } from '../config/bind';
import { hostPortLabel } from '../config/parse-values';

/** One socket the config asks for. Its key is what makes it "the same listener" across reloads. */
export interface ListenSpec {
  readonly key: string;
  readonly service: string;
  readonly address: string;
  readonly port: number;
  readonly intercept: boolean;
  /**
   * Written in the config (a literal address, or the wildcard of `bind: all`): failing to bind it is
   * an error. Otherwise it was read off an interface, which may not be usable yet (IPv6 duplicate
   * address detection) or any more; the gateway then retries it at the next interface poll.
   */
  readonly literal: boolean;
}

/** The listeners a config asks for on this host now. */
export interface ListenPlan {
  readonly specs: readonly ListenSpec[];
  /** Services whose bindings have no address on this host now (an interface lost its addresses). */
  readonly addressless: readonly string[];
  /**
   * `service@address:port` of sockets a service asks for that an earlier service of the config
   * already has (the config check refuses written clashes; interfaces that change under
   * `bind: internal` can still make two services meet): the earlier one keeps the socket.
   */
  readonly clashes: readonly string[];
}

/**
 * Plans the listeners of `config` for the interfaces in `table`. A fixed port is keyed by
 * address:port, so a reload that keeps it keeps the socket; port 0 (tests) is keyed by its
 * service too. Never throws: a service with no address is listed in `addressless`; a socket two
 * services ask for goes to the first, the other is listed in `clashes`.
 */
export function planListeners(config: GatewayConfig, table: InterfaceTable): ListenPlan {
  const specs: ListenSpec[] = [];
  const addressless: string[] = [];
  const clashes: string[] = [];
  const owners = new Map<string, string>();
  for (const svc of config.services) {
    const addresses = resolveBind(svc.bind, config.interfaces, table);
    if (addresses.length === 0) addressless.push(svc.name);
    const ports: Array<[number, boolean, number]> = [[svc.port, false, 0], ...svc.intercept.map((p, i): [number, boolean, number] => [p, true, i])];
    for (const address of addresses) {
      const literal = svc.bind.kind === 'all' || (svc.bind.kind === 'list' && svc.bind.addresses.includes(address));
      for (const [port, intercept, i] of ports) {
        const key = port === 0 ? `${address}|0|${svc.name}|${intercept ? i : 'port'}` : `${address}|${port}`;
        const owner = owners.get(key);
        if (owner !== undefined) {
          if (owner !== svc.name) clashes.push(`${svc.name}@${hostPortLabel(address, port)}`);
          continue;
        }
        owners.set(key, svc.name);
        specs.push({ key, service: svc.name, address, port, intercept, literal });
      }
    }
  }
  return { specs, addressless, clashes };
}
