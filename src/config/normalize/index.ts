import { networkInterfaces } from 'node:os';
import type { InterfaceTable } from '../bind';
import type { Context } from '../context';
import { DEFAULTS } from '../defaults';
import type { GatewayConfig } from '../types';
import { adminConfig } from './admin';
import { schedulesConfig } from './schedules';
import { servicesConfig } from './services';
import { usersConfig } from './users';
import { duration, isObj } from './values';

/** What normalizing needs besides the document. */
export interface NormalizeOptions {
  /** Directory that relative TLS file paths resolve against; defaults to the working directory. */
  baseDir?: string;
  /** The host's interfaces (for `bind` checks); defaults to `os.networkInterfaces()`. */
  interfaces?: InterfaceTable;
  /**
   * The ports `port: auto` services of a running gateway hold, by service name: a reload checks
   * them like written ports, so a service given one of them is refused where it says so.
   */
  autoPorts?: ReadonlyMap<string, number>;
}

/**
 * The schema-valid document as the gateway's frozen, typed config: durations in ms, CIDRs and
 * PEM material read, every section through its own normalizer. Problems go to `ctx`; returns
 * null when there is nothing to build from.
 */
export function normalize(data: unknown, ctx: Context, options: NormalizeOptions): GatewayConfig | null {
  if (!isObj(data)) return null;
  const baseDir = options.baseDir ?? process.cwd();
  const table = options.interfaces ?? networkInterfaces();
  const defaults = isObj(data.defaults) ? data.defaults : {};
  const tags: Record<string, 'internal' | 'external'> = {};
  if (isObj(data.interfaces)) {
    for (const [k, v] of Object.entries(data.interfaces)) if (v === 'internal' || v === 'external') tags[k] = v;
  }
  const admin = adminConfig(ctx, data.admin, baseDir);
  const { users, names } = usersConfig(ctx, data.users);
  const schedules = schedulesConfig(ctx, data.schedules);
  const services = servicesConfig(ctx, data.services, { baseDir, table, tags, userNames: names, passwords: users.some((u) => u.password !== null), schedules, defaults, autoPorts: options.autoPorts });
  const workers = data.workers === 'auto' ? 'auto' : typeof data.workers === 'number' ? data.workers : 1;
  return Object.freeze({
    file: ctx.file,
    interfaces: Object.freeze(tags),
    admin,
    events: isObj(data.log) && typeof data.log.events === 'string' ? data.log.events : DEFAULTS.events,
    shutdownGraceMs: duration(ctx, ['shutdownGrace'], data.shutdownGrace, DEFAULTS.shutdownGrace),
    interfacePollMs: duration(ctx, ['interfacePoll'], data.interfacePoll, DEFAULTS.interfacePoll),
    files: Object.freeze([...ctx.files].sort()),
    workers,
    users: Object.freeze(users),
    schedules,
    services: Object.freeze(services),
  });
}
