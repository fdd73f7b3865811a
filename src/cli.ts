#!/usr/bin/env -S node --max-semi-space-size=4
import { existsSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import * as http from 'node:http';
import * as tls from 'node:tls';
import { unprotectedAdminWarning } from './admin/admin';
import { hashPassword } from './auth/password';
import { resolveBind } from './config/bind';
import { loadConfigFile, parseConfig, type ExtraService, type ParseOptions } from './config/load';
import { parseTunnels, TunnelSpecError } from './config/tunnels';
import type { GatewayConfig } from './config/types';
import { ConfigError, formatProblem, MapgateError } from './errors';
import { createGateway } from './gateway';
import { isWorker, runPrimary, runWorker, workerCount } from './cluster';
import { handleSignals } from './signals';
import { VERSION } from './version';
import { interceptRules } from './intercept/rules';

const USAGE = `mapgate ${VERSION}: TCP mapping gateway

Usage:
  mapgate [run] [-c FILE] [-L TUNNEL]... [-g]
                              run the gateway (default command)
  mapgate check [-c FILE] [-L TUNNEL]... [-g]
                              validate the config: a one-line summary, or every error and exit 1
  mapgate reload [-c FILE]    make the running gateway reload its config (POST /reload on its admin endpoint)
  mapgate status [-c FILE] [--tag TAG]
                              print the running gateway's services and open connections as tables
                              (--tag: only the services with that tag, and their connections)
  mapgate passwd              read a password (one line) on stdin, print its salted scrypt hash
                              for users.NAME.password (SOCKS logins)
  mapgate intercept-rules [-c FILE] [--iptables]
                              print the firewall rules that redirect intercept ports arriving on
                              internal interfaces to the gateway (nftables; --iptables: a script)
  mapgate --help | --version

Options:
  -c, --config FILE   config file (default: $MAPGATE_CONFIG, else ./mappings.yaml; with -L and
                      neither, no file: just the tunnels)
  -L TUNNEL           an ad-hoc tunnel, added to the file's services (repeatable):
                      [tcp|ftp|socks/][listen-address:]listen-port:host:port, socks/ without
                      host:port; e.g. -L 8143:imap.corp.example:143, -L ftp/2121:ftp.example:21,
                      -L socks/1080. Listens on loopback unless a listen address is given
  -g                  -L tunnels without a listen address listen on the internal interfaces
                      (bind: internal) instead of loopback; refused with socks/ (an open proxy)

Exit codes: 0 ok, 1 invalid config or the command failed, 2 bad usage.`;

interface Args {
  command: string;
  /** The config file; null: none, `-L` tunnels only. */
  config: string | null;
  tag: string | null;
  /** `intercept-rules --iptables`. */
  iptables: boolean;
  /** The `-L` tunnels, parsed into services. */
  tunnels: ExtraService[];
  /** `-g` was given. */
  gatewayPorts: boolean;
  /** `config` is ./mappings.yaml because neither -c nor $MAPGATE_CONFIG named a file. */
  defaultConfig: boolean;
}

function parseArgs(argv: string[]): Args | number {
  let command = 'run';
  let config = process.env.MAPGATE_CONFIG || null;
  let sawCommand = false;
  let tag: string | null = null;
  let iptables = false;
  const tunnelSpecs: string[] = [];
  let gatewayPorts = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help' || a === 'help') {
      process.stdout.write(USAGE + '\n');
      return 0;
    }
    if (a === '-v' || a === '--version' || a === 'version') {
      process.stdout.write(VERSION + '\n');
      return 0;
    }
    if (a === '-c' || a === '--config') {
      const v = argv[++i];
      if (v === undefined) return usage(`${a} needs a file`);
      config = v;
    } else if (a.startsWith('--config=')) {
      config = a.slice('--config='.length);
    } else if (a === '-L' || (a.startsWith('-L') && a.length > 2)) {
      // `-L VALUE`, or ssh's `-LVALUE`.
      const v = a === '-L' ? argv[++i] : a.slice(2);
      if (v === undefined) return usage('-L needs a tunnel: [tcp|ftp|socks/][listen-address:]listen-port:host:port (e.g. -L 8143:imap.corp.example:143)');
      tunnelSpecs.push(v);
    } else if (a === '-g') {
      gatewayPorts = true;
    } else if (a === '--tag' || a.startsWith('--tag=')) {
      const v = a === '--tag' ? argv[++i] : a.slice('--tag='.length);
      if (v === undefined || v === '') return usage('--tag needs a tag');
      tag = v;
    } else if (a === '--iptables') {
      iptables = true;
    } else if (!sawCommand && ['run', 'check', 'reload', 'status', 'passwd', 'intercept-rules'].includes(a)) {
      command = a;
      sawCommand = true;
    } else {
      return usage(`unknown argument: ${a}`);
    }
  }
  if (command === 'passwd' && argv.length > 1) return usage('passwd takes no arguments: it reads the password on stdin');
  if (tag !== null && command !== 'status') return usage('--tag is an option of status');
  if (iptables && command !== 'intercept-rules') return usage('--iptables is an option of intercept-rules');
  if (tunnelSpecs.length > 0 && command !== 'run' && command !== 'check') return usage('-L is an option of run and check');
  if (gatewayPorts && tunnelSpecs.length === 0) return usage('-g applies to -L tunnels: give at least one -L');
  let tunnels: ExtraService[];
  try {
    tunnels = parseTunnels(tunnelSpecs, { gateway: gatewayPorts });
  } catch (err) {
    if (err instanceof TunnelSpecError) return usage(err.message);
    throw err;
  }
  // Tunnels alone need no file; ./mappings.yaml is read only when nothing else is asked for.
  const defaultConfig = config === null && tunnels.length === 0;
  if (defaultConfig) config = 'mappings.yaml';
  return { command, config, tag, iptables, tunnels, gatewayPorts, defaultConfig };
}

function usage(message: string): number {
  process.stderr.write(`mapgate: ${message}\n\n${USAGE}\n`);
  return 2;
}

/**
 * The config: the file's (none: a config with only `services:`, so every default applies) with the
 * `-L` tunnels appended. Throws {@link ConfigError}.
 */
function readConfig(file: string | null, tunnels: readonly ExtraService[], options: ParseOptions = {}): GatewayConfig {
  return file === null ? parseConfig('services: []\n', '<inline>', { ...options, extraServices: tunnels }) : loadConfigFile(file, { ...options, extraServices: tunnels });
}

/** What the config was read from, for messages: the file, the -L tunnels, or both. */
function sourceLabel(file: string | null, tunnels: readonly ExtraService[]): string {
  const t = `${tunnels.length} -L tunnel${tunnels.length === 1 ? '' : 's'}`;
  return file === null ? t : tunnels.length > 0 ? `${file} + ${t}` : file;
}

/** Loads the config or prints every problem; null means exit 1. */
function load(file: string | null, tunnels: readonly ExtraService[] = []): GatewayConfig | null {
  try {
    return readConfig(file, tunnels);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(err.problems.map(formatProblem).join('\n') + '\n');
      process.stderr.write(`mapgate: ${err.problems.length} problem${err.problems.length === 1 ? '' : 's'} in ${sourceLabel(file, tunnels)}\n`);
      return null;
    }
    throw err;
  }
}

function summary(c: GatewayConfig, label: string): string {
  const ports = c.services.reduce((n, s) => n + 1 + s.intercept.length, 0);
  const admin = c.admin ? `admin ${c.admin.host}:${c.admin.port}` : 'admin off';
  return `${label}: ok: ${c.services.length} service${c.services.length === 1 ? '' : 's'}, ${ports} port${ports === 1 ? '' : 's'}, ${c.users.length} user${c.users.length === 1 ? '' : 's'}, ${admin}`;
}

function logLine(record: object): void {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), ...record }) + '\n');
}

/** Whether Node was started with the young-generation cap every launcher passes (README, Performance). */
function youngGenerationCapped(): boolean {
  return [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => a.startsWith('--max-semi-space-size'));
}

/**
 * `-g` means the internal interfaces; when none is tagged internal (`interfaces:` in a file), that is
 * loopback alone, which `-g` was given to get away from: say so.
 */
function gatewayPortsWarning(config: GatewayConfig): string | null {
  const internal = resolveBind({ kind: 'internal' }, config.interfaces);
  if (internal.some((a) => a !== '::1' && !a.startsWith('127.'))) return null;
  return '-g: no interface is tagged internal (interfaces: in a config file), so the -L tunnels listen on loopback only';
}

/** How a reload re-reads the config: the file again with the same tunnels; without a file, the tunnels alone. */
function reloader(tunnels: readonly ExtraService[]): (file: string, options?: ParseOptions) => GatewayConfig {
  if (tunnels.length === 0) return (file, options) => loadConfigFile(file, options);
  return (file, options) => {
    if (file !== '<inline>') return readConfig(file, tunnels, options);
    logLine({ level: 'info', msg: 'reload: no config file to re-read; the -L tunnels stay as they are' });
    return readConfig(null, tunnels, options);
  };
}

async function run(args: Args): Promise<number> {
  // A cluster worker runs the config its primary validated and hands it over IPC: it never reads the file.
  if (isWorker) return runWorker(logLine);
  const config = load(args.config, args.tunnels);
  if (!config) return 1;
  const loadConfig = reloader(args.tunnels);
  const sparse = args.gatewayPorts ? gatewayPortsWarning(config) : null;
  if (sparse) logLine({ level: 'warn', msg: sparse });
  if (!youngGenerationCapped()) {
    logLine({ level: 'warn', msg: 'node runs without --max-semi-space-size=4: idle connections cost more memory (README, Performance); start mapgate with npm start, the mapgate binary or node --max-semi-space-size=4 dist/cli.js' });
  }
  const exposed = unprotectedAdminWarning(config.admin);
  if (exposed) logLine({ level: 'warn', msg: exposed });
  if (workerCount(config.workers) > 1) return runPrimary(config.file, config, logLine, loadConfig);
  // Watch the file (and its directory) for changes; re-read interface addresses (interfacePoll);
  // look for descriptor exhaustion every second.
  // Without a file (`<inline>`), nothing is watched.
  const gateway = createGateway(config, { watch: true, interfacePollMs: config.interfacePollMs, fdCheckMs: 1000, loadConfig });
  gateway.on('log', logLine);
  try {
    await gateway.start();
  } catch (err) {
    process.stderr.write(`mapgate: ${(err as Error).message}\n`);
    return 1;
  }
  const stopped = new Promise<number>((resolve) => {
    handleSignals({
      reload: () => void gateway.reloadFromFile(),
      drain(signal) {
        logLine({ level: 'info', msg: 'shutting down', signal, graceMs: config.shutdownGraceMs });
        gateway.close().then(() => {
          logLine({ level: 'info', msg: 'stopped' });
          resolve(0);
        }, () => resolve(1));
      },
      stopNow(signal) {
        logLine({ level: 'warn', msg: 'second signal: closing every connection now', signal });
        void gateway.destroy();
      },
    });
  });
  logLine({ level: 'info', msg: 'mapgate started', services: config.services.length, workers: 1, listeners: gateway.listenerLabels(), admin: gateway.adminAddress() });
  return stopped;
}

/** How long `status` and `reload` wait for the admin endpoint (ms). */
const ADMIN_TIMEOUT_MS = 10_000;

/**
 * Connects to an `admin.tls` endpoint and resolves once it presented exactly `certPem`'s
 * certificate (its SHA-256 fingerprint): the certificate names a host, not the address dialled,
 * so a name check would fail, and a pin says more than a chain would. Nothing is sent before.
 */
function connectPinned(host: string, port: number, certPem: string): Promise<tls.TLSSocket> {
  const expected = new X509Certificate(certPem).fingerprint256;
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port, rejectUnauthorized: false, minVersion: 'TLSv1.2', timeout: ADMIN_TIMEOUT_MS });
    const fail = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    socket.once('error', fail);
    socket.once('timeout', () => fail(new MapgateError('MAPGATE_ERR_TIMEOUT', `no TLS handshake with ${host}:${port}`)));
    socket.once('secureConnect', function onAdminSecureConnect() {
      const got = socket.getPeerCertificate().fingerprint256;
      if (got !== expected) {
        return fail(new MapgateError('MAPGATE_ERR_ADMIN_CERT', `${host}:${port} presents a certificate other than admin.tls.cert (SHA-256 ${got ?? 'none'}, expected ${expected}): not talking to it`));
      }
      socket.off('error', fail);
      socket.setTimeout(0);
      resolve(socket);
    });
  });
}

/** One request to the admin endpoint the config names, with its token, over TLS when it has admin.tls. */
async function adminRequest(config: GatewayConfig, method: string, path: string): Promise<{ status: number; body: string }> {
  if (!config.admin) throw new MapgateError('MAPGATE_ERR_NO_ADMIN', 'admin.listen is off: no admin endpoint to talk to');
  const { host, port, token } = config.admin;
  const socket = config.admin.tls ? await connectPinned(host, port, config.admin.tls.cert) : undefined;
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = token === undefined ? {} : { authorization: `Bearer ${token}` };
    const req = http.request({ host, port, method, path, headers, timeout: ADMIN_TIMEOUT_MS, ...(socket ? { createConnection: () => socket } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new MapgateError('MAPGATE_ERR_TIMEOUT', `no answer from ${host}:${port}`)));
    req.on('error', reject);
    req.end();
  });
}

interface StatusConnection { id: string; service: string; client: string; user: string | null; requested?: string | null; destination: string | null; seconds: number; bytesFromClient: number; bytesToClient: number }
interface StatusBody {
  services: Array<{ name: string; tags?: string[]; active: number; maxConnections: number; listeners: Array<{ address: string }> }>;
  connections: StatusConnection[];
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n';
}

async function status(file: string | null, tag: string | null): Promise<number> {
  const config = load(file);
  if (!config) return 1;
  const res = await adminRequest(config, 'GET', '/status');
  if (res.status !== 200) throw new MapgateError('MAPGATE_ERR_ADMIN', `admin endpoint answered ${res.status}`);
  const s = JSON.parse(res.body) as StatusBody;
  const services = tag === null ? s.services : s.services.filter((v) => v.tags?.includes(tag));
  const shown = new Set(services.map((v) => v.name));
  s.connections = s.connections.filter((c) => shown.has(c.service));
  process.stdout.write(table([['SERVICE', 'ACTIVE', 'MAX', 'TAGS', 'LISTENERS'],
    ...services.map((v) => [v.name, String(v.active), String(v.maxConnections), v.tags?.length ? v.tags.join(',') : '-', v.listeners.map((l) => l.address).join(' ')])]));
  process.stdout.write('\n');
  process.stdout.write(table([['ID', 'SERVICE', 'CLIENT', 'USER', 'DESTINATION', 'SECONDS', 'FROM_CLIENT', 'TO_CLIENT'],
    // A SOCKS connection shows where the client asked to go, then where it went.
    ...s.connections.map((c) => [c.id, c.service, c.client, c.user ?? '-', (c.requested ? `${c.requested}→` : '') + (c.destination ?? '-'), c.seconds.toFixed(1), String(c.bytesFromClient), String(c.bytesToClient)])]));
  return 0;
}

async function reload(file: string | null): Promise<number> {
  const config = load(file);
  if (!config) return 1;
  const res = await adminRequest(config, 'POST', '/reload');
  process.stdout.write(res.body);
  return res.status === 200 ? 0 : 1;
}

/** RFC 1929 carries a password in at most 255 bytes: a longer one could never log in. */
const MAX_PASSWORD_BYTES = 255;

/**
 * One line of `input`, without its line end (`\n` or `\r\n`), or what came before the end of
 * the input; null when interrupted (Ctrl-C). On a terminal, nothing is echoed (raw mode) and
 * backspace works; past MAX_PASSWORD_BYTES + 1 bytes the rest of the line is not kept.
 */
function readLine(input: NodeJS.ReadStream): Promise<Buffer | null> {
  const tty = input.isTTY === true;
  const bytes: number[] = [];
  return new Promise((resolve) => {
    const finish = (line: Buffer | null): void => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.pause();
      if (tty) {
        input.setRawMode(false);
        process.stderr.write('\n');
      }
      resolve(line);
    };
    function onEnd(): void {
      finish(Buffer.from(bytes));
    }
    function onData(chunk: Buffer): void {
      for (const c of chunk) {
        if (c === 0x0a || (tty && c === 0x0d)) {
          if (!tty && bytes[bytes.length - 1] === 0x0d) bytes.pop();
          return finish(Buffer.from(bytes));
        }
        if (tty && c === 0x03) return finish(null);
        if (tty && c === 0x04) return finish(Buffer.from(bytes));
        if (tty && (c === 0x7f || c === 0x08)) bytes.pop();
        else if (bytes.length <= MAX_PASSWORD_BYTES + 1) bytes.push(c);
      }
    }
    if (tty) {
      process.stderr.write('Password: ');
      input.setRawMode(true);
    }
    input.on('data', onData);
    input.on('end', onEnd);
    input.resume();
  });
}

/** `mapgate passwd`: the hash of the password on stdin, for `users.NAME.password`. */
async function passwd(): Promise<number> {
  const password = await readLine(process.stdin);
  if (password === null) return 130;
  if (password.length === 0) {
    process.stderr.write('mapgate: empty password: nothing hashed\n');
    return 1;
  }
  if (password.length > MAX_PASSWORD_BYTES) {
    process.stderr.write(`mapgate: the password is longer than ${MAX_PASSWORD_BYTES} bytes: SOCKS5 logins (RFC 1929) cannot carry it\n`);
    return 1;
  }
  process.stdout.write(`${await hashPassword(password)}\n`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (typeof args === 'number') return args;
  switch (args.command) {
    case 'check': {
      const config = load(args.config, args.tunnels);
      if (!config) return 1;
      process.stdout.write(summary(config, sourceLabel(args.config, args.tunnels)) + '\n');
      const exposed = unprotectedAdminWarning(config.admin);
      if (exposed) process.stderr.write(`mapgate: warning: ${exposed}\n`);
      const sparse = args.gatewayPorts ? gatewayPortsWarning(config) : null;
      if (sparse) process.stderr.write(`mapgate: warning: ${sparse}\n`);
      return 0;
    }
    // A gateway run with -L tunnels alone has no file: without one here, its default admin address.
    case 'status': return status(args.defaultConfig && !existsSync(args.config!) ? null : args.config, args.tag);
    case 'reload': return reload(args.config);
    case 'passwd': return passwd();
    case 'intercept-rules': {
      const config = load(args.config);
      if (!config) return 1;
      process.stdout.write(interceptRules(config, { format: args.iptables ? 'iptables' : 'nftables' }));
      return 0;
    }
    default: return run(args);
  }
}

main(process.argv.slice(2)).then(
  // Exit explicitly: a lingering keep-alive socket or timer must not hold a stopped gateway up.
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`mapgate: ${err.message}\n`);
    process.exit(1);
  },
);
