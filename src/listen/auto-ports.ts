import * as net from 'node:net';
import { resolveBind, type InterfaceTable } from '../config/bind';
import type { GatewayConfig, ServiceConfig } from '../config/types';

/** Ports tried before giving up on finding one free on every address of a service. */
const ATTEMPTS = 20;

function bindOnce(address: string, port: number): Promise<net.Server | null> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(null));
    server.listen({ host: address, port, exclusive: true }, () => resolve(server));
  });
}

function closeAll(servers: Array<net.Server | null>): Promise<void> {
  return Promise.all(servers.map((s) => (s ? new Promise<void>((r) => s.close(() => r())) : undefined))).then(() => undefined);
}

/** A port free on every one of `addresses` right now (the OS picks it on the first), not one of `avoid`, or null. */
async function freePort(addresses: readonly string[], avoid: ReadonlySet<number>): Promise<number | null> {
  const where = addresses.length > 0 ? addresses : ['::'];
  for (let i = 0; i < ATTEMPTS; i++) {
    const first = await bindOnce(where[0], 0);
    if (!first) return null;
    const port = (first.address() as net.AddressInfo).port;
    // A port the config writes for another service, not bound yet: free now, taken in a moment.
    const rest = avoid.has(port) ? [null] : await Promise.all(where.slice(1).map((a) => bindOnce(a, port)));
    await closeAll([first, ...rest]);
    if (rest.every((s) => s !== null)) return port;
  }
  return null;
}

/**
 * The ports of `port: auto` services. A service gets one port for all its addresses (the OS picks
 * a free one on the first, checked free on the others), keeps it for as long as the config says
 * `port: auto` for it, and a config handed over with the port already chosen (a cluster primary's,
 * to its workers) keeps that one. The probe closes before the real listeners bind; a port taken in
 * between fails that bind as any taken port does.
 */
export class AutoPorts {
  private readonly ports = new Map<string, number>();
  /** The ports the last {@link assign} picked afresh (not kept ones), for the log. */
  picked: Array<{ service: string; port: number }> = [];

  /** The ports held now, by service: a reload's config is checked against them (`NormalizeOptions.autoPorts`). */
  held(): ReadonlyMap<string, number> {
    return new Map(this.ports);
  }

  /** `config` with every `port: auto` service given its port. */
  async assign(config: GatewayConfig, table: InterfaceTable): Promise<GatewayConfig> {
    this.picked = [];
    if (!config.services.some((s) => s.autoPort)) {
      this.ports.clear();
      return config;
    }
    const services: ServiceConfig[] = [];
    const auto = new Set<string>();
    // Ports the config writes out: never picked, and a held one a written one now asks for moves.
    const written = new Set(config.services.flatMap((s) => (s.autoPort ? s.intercept : [s.port, ...s.intercept])));
    for (const s of config.services) {
      if (!s.autoPort) {
        services.push(s);
        continue;
      }
      auto.add(s.name);
      let port = s.port !== 0 ? s.port : this.ports.get(s.name) ?? null;
      if (port !== null && written.has(port) && s.port === 0) port = null;
      if (port === null) {
        port = await freePort(resolveBind(s.bind, config.interfaces, table), written);
        if (port !== null) this.picked.push({ service: s.name, port });
      }
      // None found: port 0 lets each listener take its own, and the start-up log says which.
      if (port !== null) this.ports.set(s.name, port);
      services.push(Object.freeze({ ...s, port: port ?? 0 }));
    }
    for (const name of [...this.ports.keys()]) if (!auto.has(name)) this.ports.delete(name);
    return Object.freeze({ ...config, services: Object.freeze(services) });
  }
}
