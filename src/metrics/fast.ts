import type { Registry } from './prom';

/**
 * Counters, gauges and histograms for the per-connection path. prom-client's own metrics hash
 * their label set and validate it on every `inc`/`observe`, even through a bound child; these
 * keep one plain object per label set, bound once (per service), so an update is a field
 * increment. They register in a prom-client Registry like any other metric (the registry only
 * calls `get()`), so exposition, cluster aggregation and the rest of the registry are prom-client's.
 */

type Labels = Readonly<Record<string, string>>;
type Aggregator = 'sum' | 'max' | 'first' | 'omit';

interface Sample { labels: Labels; value: number; metricName?: string }

abstract class FastMetric<C> {
  protected readonly children = new Map<string, { labels: Labels; child: C }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
    registry: Registry,
    readonly aggregator: Aggregator = 'sum',
  ) {
    registry.registerMetric(this as never);
  }

  /** The child for a label set, created on first use and kept: bind it once, then update freely. */
  child(labels: Labels): C {
    const key = JSON.stringify(labels);
    let entry = this.children.get(key);
    if (!entry) {
      entry = { labels: { ...labels }, child: this.create() };
      this.children.set(key, entry);
    }
    return entry.child;
  }

  /** Forgets the series of one label value (e.g. a service gone from the config). */
  remove(label: string, value: string): void {
    for (const [key, e] of this.children) if (e.labels[label] === value) this.children.delete(key);
  }

  protected abstract create(): C;
  protected abstract samples(): Sample[];

  /** Called before every read of the values (a scrape), to bring them up to date. */
  collect: (() => void) | null = null;

  get(): { name: string; help: string; type: string; aggregator: Aggregator; values: Sample[] } {
    this.collect?.();
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.samples() };
  }

  reset(): void {
    this.children.clear();
  }
}

/** A counter or gauge value; mutate `value` directly. */
export interface ValueChild { value: number }

/** A counter or a gauge: one number per label set. */
class FastValue extends FastMetric<ValueChild> {
  protected create(): ValueChild { return { value: 0 }; }
  protected samples(): Sample[] {
    return [...this.children.values()].map((e) => ({ labels: e.labels, value: e.child.value }));
  }
}

export class FastCounter extends FastValue {
  constructor(name: string, help: string, registry: Registry, aggregator?: Aggregator) {
    super(name, help, 'counter', registry, aggregator);
  }
}

export class FastGauge extends FastValue {
  constructor(name: string, help: string, registry: Registry, aggregator?: Aggregator) {
    super(name, help, 'gauge', registry, aggregator);
  }
}

/** Observations of one label set: counts per bucket (not cumulative), sum and count. */
export class HistogramChild {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }
  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    if (i < b.length) this.counts[i]++;
    this.sum += v;
    this.count++;
  }
}

export class FastHistogram extends FastMetric<HistogramChild> {
  constructor(name: string, help: string, private readonly bounds: readonly number[], registry: Registry) {
    super(name, help, 'histogram', registry);
  }
  protected create(): HistogramChild { return new HistogramChild(this.bounds); }
  protected samples(): Sample[] {
    const out: Sample[] = [];
    for (const { labels, child } of this.children.values()) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += child.counts[i];
        out.push({ labels: { ...labels, le: String(le) }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      out.push({ labels: { ...labels, le: '+Inf' }, value: child.count, metricName: `${this.name}_bucket` });
      out.push({ labels, value: child.sum, metricName: `${this.name}_sum` });
      out.push({ labels, value: child.count, metricName: `${this.name}_count` });
    }
    return out;
  }
}
