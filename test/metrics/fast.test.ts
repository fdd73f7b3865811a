import { AggregatorRegistry, Registry } from 'prom-client';
import { FastCounter, FastGauge, FastHistogram } from '../../src/metrics/fast';

describe('fast metrics in a prom-client registry', () => {
  test('exposition of counters, gauges and histograms', async () => {
    const reg = new Registry();
    const c = new FastCounter('t_total', 'A counter.', reg);
    const g = new FastGauge('t_gauge', 'A gauge.', reg);
    const h = new FastHistogram('t_seconds', 'A histogram.', [0.1, 1], reg);
    c.child({ service: 'a', outcome: 'x' }).value += 3;
    c.child({ service: 'a', outcome: 'x' }).value++;
    g.child({ service: 'a' }).value = 7;
    const hc = h.child({ service: 'a' });
    for (const v of [0.05, 0.1, 0.5, 2]) hc.observe(v);
    expect(await reg.metrics()).toBe([
      '# HELP t_total A counter.', '# TYPE t_total counter', 't_total{service="a",outcome="x"} 4', '',
      '# HELP t_gauge A gauge.', '# TYPE t_gauge gauge', 't_gauge{service="a"} 7', '',
      '# HELP t_seconds A histogram.', '# TYPE t_seconds histogram',
      't_seconds_bucket{service="a",le="0.1"} 2', 't_seconds_bucket{service="a",le="1"} 3', 't_seconds_bucket{service="a",le="+Inf"} 4',
      't_seconds_sum{service="a"} 2.65', 't_seconds_count{service="a"} 4', '',
    ].join('\n'));
  });

  test('cluster aggregation sums counters and histograms, and honours a gauge aggregator', async () => {
    const workers = [0, 1].map(() => {
      const reg = new Registry();
      const c = new FastCounter('t_total', 'A counter.', reg);
      const g = new FastGauge('t_listeners', 'Same in every worker.', reg, 'max');
      const h = new FastHistogram('t_seconds', 'A histogram.', [1], reg);
      c.child({ s: 'a' }).value = 2;
      g.child({ s: 'a' }).value = 1;
      h.child({ s: 'a' }).observe(0.5);
      return reg;
    });
    const merged = await AggregatorRegistry.aggregate(await Promise.all(workers.map((r) => r.getMetricsAsJSON()))).metrics();
    expect(merged).toContain('t_total{s="a"} 4');
    expect(merged).toContain('t_listeners{s="a"} 1');
    expect(merged).toContain('t_seconds_bucket{s="a",le="1"} 2');
    expect(merged).toContain('t_seconds_count{s="a"} 2');
  });
});
