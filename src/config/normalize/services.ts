import { isIP } from 'node:net';
import { interfaceExists, resolveBind, WILDCARDS, type InterfaceTable, type InterfaceTags } from '../bind';
import { quote, type Context, type PathSeg } from '../context';
import { DEFAULTS } from '../defaults';
import { hostPortLabel, hostPortProblem, isHost, parseHostPort } from '../parse-values';
import type { AcceptConfig, BindSpec, Destination, MappingRule, Schedule, ServiceConfig, UpstreamTls } from '../types';
import { limitsConfig } from './limits';
import { protocolSettings } from './protocols';
import { targetsConfig } from './targets';
import { acceptTls, upstreamTls } from './tls';
import { asList, cidrs, duration, isObj } from './values';

/** What every service's normalizer needs from the rest of the file. */
export interface ServiceEnv {
  /** Directory relative TLS paths resolve against. */
  readonly baseDir: string;
  readonly table: InterfaceTable;
  readonly tags: InterfaceTags;
  /** Every user name `users` defines, for the mappings that name one. */
  readonly userNames: ReadonlySet<string>;
  /** Whether some user has a password (SOCKS logins). */
  readonly passwords: boolean;
  /** Every schedule `schedules` defines, by name. */
  readonly schedules: Readonly<Record<string, Schedule>>;
  /** The ports `port: auto` services hold in the running gateway (a reload), by name. */
  readonly autoPorts?: ReadonlyMap<string, number>;
  /** The `defaults` section. */
  readonly defaults: Record<string, unknown>;
}

function acceptConfig(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): AcceptConfig {
  const o = isObj(value) ? value : {};
  const pp = isObj(o.proxyProtocol) ? o.proxyProtocol : null;
  return Object.freeze({
    tls: acceptTls(ctx, [...path, 'tls'], o.tls, baseDir),
    proxyProtocol: pp ? Object.freeze({ from: Object.freeze(cidrs(ctx, [...path, 'proxyProtocol', 'from'], pp.from)) }) : null,
  });
}

function destination(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): Destination | null {
  let host: string;
  let port: number;
  let tls: UpstreamTls | null = null;
  let proxyProtocol: 1 | 2 | null = null;
  if (typeof value === 'string') {
    const hp = parseHostPort(value);
    if (!hp) {
      ctx.add(path, `${quote(value)}: ${hostPortProblem(value) ?? 'not host:port'}`);
      return null;
    }
    ({ host, port } = hp);
  } else if (isObj(value) && typeof value.host === 'string' && typeof value.port === 'number') {
    host = value.host.startsWith('[') && value.host.endsWith(']') ? value.host.slice(1, -1) : value.host;
    port = value.port;
    if (!isHost(host)) {
      ctx.add([...path, 'host'], `${quote(value.host)} is not a host name or IP address`);
      return null;
    }
    tls = upstreamTls(ctx, [...path, 'tls'], value.tls, host, baseDir);
    proxyProtocol = value.proxyProtocol === 'v1' ? 1 : value.proxyProtocol === 'v2' ? 2 : null;
  } else {
    return null;
  }
  return Object.freeze({ host, port, tls, proxyProtocol, label: hostPortLabel(host, port) });
}

function destinations(ctx: Context, path: PathSeg[], value: unknown, baseDir: string): Destination[] {
  if (Array.isArray(value)) {
    return value.map((v, i) => destination(ctx, [...path, i], v, baseDir)).filter((d): d is Destination => d !== null);
  }
  const d = value === undefined ? null : destination(ctx, path, value, baseDir);
  return d ? [d] : [];
}

function bindSpec(ctx: Context, path: PathSeg[], value: unknown, table: InterfaceTable): BindSpec {
  if (value === undefined || value === 'internal') return Object.freeze({ kind: 'internal' });
  if (value === 'all') return Object.freeze({ kind: 'all' });
  // Any other single string was refused by the schema; reporting it again as a list entry would repeat it.
  if (!Array.isArray(value)) return Object.freeze({ kind: 'list', interfaces: Object.freeze([]), addresses: Object.freeze([]) });
  const interfaces: string[] = [];
  const addresses: string[] = [];
  asList(value).forEach((item, i) => {
    if (typeof item !== 'string') return;
    if (item === 'internal' || item === 'all') ctx.add([...path, i], `"${item}" cannot be part of a list: write bind: ${item}`);
    else if (isIP(item)) addresses.push(item);
    else if (interfaceExists(item, table)) interfaces.push(item);
    else ctx.add([...path, i], `${quote(item)} is neither an IP address nor an interface of this host (interfaces: ${Object.keys(table).join(', ') || 'none'})`);
  });
  return Object.freeze({ kind: 'list', interfaces: Object.freeze(interfaces), addresses: Object.freeze(addresses) });
}

/** The owner of a listening endpoint that `address:port` would collide with, if any. */
function clashWith(endpoints: ReadonlyMap<string, string>, address: string, port: number): string | undefined {
  for (const [key, owner] of endpoints) {
    const cut = key.lastIndexOf('|');
    const a = key.slice(0, cut);
    if (Number(key.slice(cut + 1)) === port && (a === address || WILDCARDS.has(a) || WILDCARDS.has(address))) {
      return `${owner} on ${a}`;
    }
  }
  return undefined;
}

/**
 * `services`: each with its port, bindings, front stages (accept), default and specific mappings
 * and timeouts; cross-field rules (duplicate names, two services on one address:port, unknown
 * users, sni without TLS) added with their positions.
 */
export function servicesConfig(ctx: Context, value: unknown, env: ServiceEnv): ServiceConfig[] {
  const defaults = env.defaults;
  const dConnect = duration(ctx, ['defaults', 'connectTimeout'], defaults.connectTimeout, DEFAULTS.connectTimeout);
  const dIdle = duration(ctx, ['defaults', 'idleTimeout'], defaults.idleTimeout, DEFAULTS.idleTimeout);
  const dMax = typeof defaults.maxConnections === 'number' ? defaults.maxConnections : DEFAULTS.maxConnections;
  const dHandshake = duration(ctx, ['defaults', 'handshakeTimeout'], defaults.handshakeTimeout, DEFAULTS.handshakeTimeout);
  const dLimits = limitsConfig(defaults.limits);
  const scheduleNames = Object.keys(env.schedules);
  const services: ServiceConfig[] = [];
  const names = new Map<string, number>();
  const endpoints = new Map<string, string>();
  asList(value).forEach((s, si) => {
    if (!isObj(s)) return;
    const path: PathSeg[] = ['services', si];
    const name = typeof s.name === 'string' ? s.name : `#${si}`;
    if (typeof s.name === 'string') {
      if (names.has(s.name)) ctx.add([...path, 'name'], `duplicate service name "${s.name}" (first at services[${names.get(s.name)}])`);
      else names.set(s.name, si);
    }
    // A `port: auto` service that already holds a port (a reload) holds it in this check too.
    const held = s.port === 'auto' ? env.autoPorts?.get(name) : undefined;
    const port = typeof s.port === 'number' ? s.port : held ?? 0;
    const bind = bindSpec(ctx, [...path, 'bind'], s.bind, env.table);
    const intercept = asList(s.intercept).filter((p): p is number => typeof p === 'number');

    const addresses = resolveBind(bind, env.tags, env.table);
    const self = `service "${name}"`;
    const ports: Array<[number, PathSeg[], string]> = [
      [port, [...path, 'port'], held === undefined ? self : `${self} (port: auto gave it ${held})`],
      ...intercept.map((p, i): [number, PathSeg[], string] => [p, [...path, 'intercept', i], self]),
    ];
    for (const [p, where, owner] of ports) {
      if (p === 0) continue;
      const clash = addresses.map((a) => clashWith(endpoints, a, p)).find((c) => c !== undefined);
      if (clash && owner !== self) ctx.add(where, `port: auto holds port ${p} for this service, and ${clash} now asks for it: give that one another port`);
      else if (clash) ctx.add(where, `port ${p} is already used by ${clash}`);
      for (const address of addresses) endpoints.set(`${address}|${p}`, owner);
    }

    const accept = acceptConfig(ctx, [...path, 'accept'], s.accept, env.baseDir);
    const acceptsTls = isObj(s.accept) && s.accept.tls !== undefined;
    const settings = protocolSettings(ctx, path, s, env);
    const socks = settings.protocol === 'socks';
    const mappings: MappingRule[] = [];
    asList(s.mappings).forEach((m, mi) => {
      if (!isObj(m)) return;
      const mpath: PathSeg[] = [...path, 'mappings', mi];
      const user = typeof m.user === 'string' ? m.user : null;
      if (user !== null && !env.userNames.has(user)) {
        ctx.add([...mpath, 'user'], `unknown user "${user}" (${env.userNames.size ? `users defines: ${[...env.userNames].join(', ')}` : 'no users are defined'})`);
      }
      const schedule = typeof m.schedule === 'string' ? env.schedules[m.schedule] ?? null : null;
      if (typeof m.schedule === 'string' && !Object.hasOwn(env.schedules, m.schedule)) {
        ctx.add([...mpath, 'schedule'], `unknown schedule "${m.schedule}" (${scheduleNames.length ? `schedules defines: ${scheduleNames.join(', ')}` : 'no schedules are defined'})`);
      }
      if (m.endAtClose === true && m.schedule === undefined) ctx.add([...mpath, 'endAtClose'], 'needs a schedule: add schedule: NAME to the mapping', true);
      if (m.sni !== undefined && !acceptsTls) ctx.add([...mpath, 'sni'], 'matches only on a binding that accepts TLS: add accept.tls to the service', true);
      const action = m.action === 'reject' ? 'reject' : 'forward';
      if (action === 'reject' && m.destination !== undefined) ctx.add([...mpath, 'destination'], 'a mapping with action: reject takes no destination', true);
      // An unknown action was reported by the schema; guessing "forward" would add a second, misleading problem.
      const knownAction = m.action === undefined || m.action === 'forward' || m.action === 'reject';
      if (m.to !== undefined && !socks) ctx.add([...mpath, 'to'], 'matches what a SOCKS client asks for: only on a service with protocol: socks', true);
      if (socks) {
        // Never an open proxy: a mapping that forwards says what it allows.
        if (knownAction && action === 'forward' && m.to === undefined) ctx.add(mpath, 'a SOCKS mapping that forwards needs to: [...] (the destinations it allows; "*" for any)');
      } else if (knownAction && action === 'forward' && m.destination === undefined) {
        ctx.add(mpath, 'needs a destination (or action: reject)');
      }
      mappings.push(Object.freeze({
        index: mi,
        user,
        sources: m.source === undefined ? null : Object.freeze(cidrs(ctx, [...mpath, 'source'], m.source)),
        sni: m.sni === undefined ? null : Object.freeze(asList(m.sni).filter((n): n is string => typeof n === 'string').map((n) => n.toLowerCase().replace(/\.$/, ''))),
        schedule,
        endAtClose: m.endAtClose === true && schedule !== null,
        to: m.to === undefined ? null : Object.freeze(targetsConfig(ctx, [...mpath, 'to'], m.to)),
        action,
        destinations: Object.freeze(destinations(ctx, [...mpath, 'destination'], m.destination, env.baseDir)),
      }));
    });

    services.push(Object.freeze({
      name,
      tags: Object.freeze(asList(s.tags).filter((t): t is string => typeof t === 'string')),
      comment: typeof s.comment === 'string' ? s.comment : null,
      ...settings,
      autoPort: s.port === 'auto',
      port,
      bind,
      intercept: Object.freeze(intercept),
      accept,
      handshakeTimeoutMs: s.handshakeTimeout === undefined ? dHandshake : duration(ctx, [...path, 'handshakeTimeout'], s.handshakeTimeout, DEFAULTS.handshakeTimeout),
      destinations: Object.freeze(destinations(ctx, [...path, 'destination'], s.destination, env.baseDir)),
      mappings: Object.freeze(mappings),
      connectTimeoutMs: s.connectTimeout === undefined ? dConnect : duration(ctx, [...path, 'connectTimeout'], s.connectTimeout, DEFAULTS.connectTimeout),
      idleTimeoutMs: s.idleTimeout === undefined ? dIdle : duration(ctx, [...path, 'idleTimeout'], s.idleTimeout, DEFAULTS.idleTimeout),
      maxConnections: typeof s.maxConnections === 'number' ? s.maxConnections : dMax,
      limits: limitsConfig(s.limits, dLimits),
    }));
  });
  return services;
}
