/**
 * The parts of prom-client mapgate uses, each required from its own module. The package's index
 * also loads Summary (with tdigest and bintrees) and Pushgateway (with node:https and node:zlib),
 * which a gateway never uses and which cost about 1 MiB in every process.
 */
import type * as Prom from 'prom-client';

/* eslint-disable @typescript-eslint/no-require-imports */
export const Registry: typeof Prom.Registry = require('prom-client/lib/registry');
export const Counter: typeof Prom.Counter = require('prom-client/lib/counter');
export const Gauge: typeof Prom.Gauge = require('prom-client/lib/gauge');
export const collectDefaultMetrics: typeof Prom.collectDefaultMetrics = require('prom-client/lib/defaultMetrics');
export const AggregatorRegistry: typeof Prom.AggregatorRegistry = require('prom-client/lib/cluster');
/* eslint-enable @typescript-eslint/no-require-imports */

export type Registry = Prom.Registry;
export type Counter<T extends string = string> = Prom.Counter<T>;
export type Gauge<T extends string = string> = Prom.Gauge<T>;
