import type { Connection, ServiceState } from './connection';
import type { ServiceConfig } from './config/types';
import { sameService } from './config/diff';
import { buildFrontStages } from './front/build';
import type { Metrics, ServiceMetrics } from './metrics/metrics';
import { Limiter } from './policy/limits';
import { buildProtocol } from './protocols/build';
import type { User } from './config/types';

/**
 * The services a gateway runs and the connections it has open: each service's config in force,
 * its front stages and bound metrics; services a reload removed whose series stay in /metrics
 * until their last connection ends; every connection counted open.
 */
export class ServiceRegistry {
  private readonly services = new Map<string, ServiceState>();
  /** Services a reload removed whose series stay in /metrics until their last connection ends. */
  private readonly retired = new Map<string, { readonly metrics: ServiceMetrics; readonly limiter: Limiter }>();
  /** Every connection counted open (connections add and remove themselves). */
  readonly open = new Set<Connection>();

  /** @param limiterSources rate buckets each service keeps at most (one per client address). */
  constructor(
    private readonly metrics: Metrics,
    /** The users in force, for stages that check logins (SOCKS). */
    private readonly users: () => readonly User[],
    private readonly limiterSources?: number,
  ) {}

  get(name: string): ServiceState | undefined { return this.services.get(name); }
  values(): IterableIterator<ServiceState> { return this.services.values(); }

  /** Adds a state for every service of `configs` not known yet (a reload in preparation); returns their names. */
  addNew(configs: readonly ServiceConfig[]): string[] {
    const added: string[] = [];
    for (const config of configs) {
      if (this.services.has(config.name)) continue;
      const state: ServiceState = {
        config, front: buildFrontStages(config, this.users), protocol: buildProtocol(config),
        metrics: this.metrics.service(config.name, config.maxConnections),
        // Back before its old connections ended: they still hold their places in its limits.
        limiter: this.retired.get(config.name)?.limiter ?? new Limiter(this.limiterSources),
      };
      state.metrics.setCertificateExpiry(config.accept.tls?.notAfter ?? null);
      this.metrics.setServiceTags(config.name, config.tags);
      state.metrics.trackSources(() => state.limiter.trackedSources);
      this.services.set(config.name, state);
      added.push(config.name);
    }
    return added;
  }

  /** Undoes {@link addNew} for a refused reload: the states and every metric series they started. */
  forget(names: readonly string[]): void {
    for (const name of names) {
      this.services.delete(name);
      // A removed service still draining shares those series; they go when its last connection does.
      if (!this.retired.has(name)) this.metrics.removeService(name);
    }
  }

  /**
   * Puts `configs` in force: each service's config (changed ones get new front stages, so new
   * handshakes use new certificates), its limits and certificate expiry; `removed` services
   * retire. Call after {@link addNew} for the same configs.
   */
  commit(configs: readonly ServiceConfig[], added: readonly string[], removed: readonly string[]): void {
    for (const config of configs) {
      const state = this.services.get(config.name)!;
      if (!sameService(state.config, config)) {
        state.front = buildFrontStages(config, this.users);
        state.protocol = buildProtocol(config);
      }
      state.config = config;
      state.metrics.setMax(config.maxConnections);
      state.metrics.setCertificateExpiry(config.accept.tls?.notAfter ?? null);
      this.metrics.setServiceTags(config.name, config.tags);
    }
    // Back in the config before its old connections ended: its series simply go on counting.
    for (const name of added) this.retired.delete(name);
    for (const name of removed) {
      const state = this.services.get(name);
      if (!state) continue;
      this.services.delete(name);
      this.retired.set(name, { metrics: state.metrics, limiter: state.limiter });
      this.ended(name);
    }
  }

  /** A connection of `service` ended: a retired service's series leave /metrics with its last one. */
  ended(service: string): void {
    if (this.retired.size === 0) return;
    const metrics = this.retired.get(service)?.metrics;
    if (!metrics || metrics.active.value > 0) return;
    this.retired.delete(service);
    this.metrics.removeService(service);
  }
}
