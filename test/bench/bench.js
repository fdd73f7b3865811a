#!/usr/bin/env node
'use strict';
/**
 * mapgate's benchmark against its peers (issues 5 and 13). See test/bench/README.md.
 *
 *   node test/bench/bench.js [--quick] [--rounds N] [--only KEY,...] [--idle N] [--keep]
 *     keys: mapgate haproxy nginx socat rinetd bare tcp-proxy-js node-tcp-proxy mapgate-w2 haproxy-nt2 socks ftp
 *   node test/bench/bench.js --profile [mapgate|bare] [--quick]   conn/s run under node --cpu-prof
 *   node test/bench/bench.js --npm-peers   install the npm proxies into test/bench/.peers now, and exit
 *
 * Progress goes to stderr; the result table (markdown) to stdout. Every process it starts is
 * killed by PID at the end, on error and on SIGINT/SIGTERM. The npm proxies (tcp-proxy-js,
 * node-tcp-proxy) are installed once into test/bench/.peers, never into the project.
 */
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { PROTOCOL_KEYS, benchProtocols } = require('./protocols');

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');

// ---------------------------------------------------------------------------------------------
// Options

function parseOptions(argv) {
  const o = { quick: false, rounds: null, only: null, idle: null, keep: false, profile: null, npmPeers: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') o.quick = true;
    else if (a === '--keep') o.keep = true;
    else if (a === '--npm-peers') o.npmPeers = true;
    else if (a === '--profile') o.profile = ['mapgate', 'bare'].includes(argv[i + 1]) ? argv[++i] : 'mapgate';
    else if (a === '--rounds') o.rounds = positiveInt(a, argv[++i]);
    else if (a === '--idle') o.idle = positiveInt(a, argv[++i]);
    else if (a === '--only') o.only = String(argv[++i] || '').split(',').filter(Boolean);
    else if (a === '-h' || a === '--help') {
      process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').slice(2, 14).join('\n') + '\n');
      process.exit(0);
    } else {
      process.stderr.write(`bench: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  return o;
}

function positiveInt(flag, v) {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`bench: ${flag} needs a positive integer\n`);
    process.exit(2);
  }
  return n;
}

const opts = parseOptions(process.argv.slice(2));

/** Durations in seconds, counts; --quick is for checking that everything works: a few minutes. */
const D = opts.quick
  ? { rounds: 1, iperfSecs: 1, wrkSecs: 2, warmSecs: 1, idleConns: 500, slowConns: 8, slowSecs: 2, profileSecs: 5, deadlineSecs: 600 }
  : { rounds: 3, iperfSecs: 5, wrkSecs: 8, warmSecs: 2, idleConns: 2000, slowConns: 16, slowSecs: 8, profileSecs: 10, deadlineSecs: 3600 };
if (opts.rounds) D.rounds = opts.rounds;
if (opts.idle) D.idleConns = Math.min(opts.idle, 4000); // held twice over (see idleMemory): the fd limit must stay far away
const CONN_CLIENTS = 32;
const LATENCY_CLIENTS = 64;
const SLOW_READ_BYTES_PER_SEC = 1024 * 1024;
const SLOW_READER_LIMIT_MB = 64;
// A proxy that ignores backpressure (node-tcp-proxy) queues whatever the upstream sends: the
// slow-reader test stops once it has grown this much, and the table shows "> 1024".
const SLOW_READER_ABORT_MB = 1024;
// On a shared machine no proxy may take it down: one past this is killed, the round reports it.
const MEMORY_GUARD_MB = 4096;
const IDLE_SETTLE = opts.quick ? { minMs: 1000, maxMs: 3000 } : { minMs: 2000, maxMs: 8000 };

const CPUS = os.cpus().length;
const PIN = CPUS >= 2;
/** The unpinned rows' affinity: every core (the harness pins itself to core 1, children inherit that). */
const ALL_CORES = `0-${CPUS - 1}`;
const CLK_TCK = (() => {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100; } catch { return 100; }
})();

function log(msg) {
  process.stderr.write(`[bench ${elapsed()}] ${msg}\n`);
}
const T0 = Date.now();
function elapsed() { return `${((Date.now() - T0) / 1000).toFixed(0).padStart(4)}s`; }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Processes: every one we start is recorded, and killed by PID (with its descendants) at the end.

const started = new Set();

function which(cmd) {
  for (const dir of (process.env.PATH || '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(dir, cmd);
    try { fs.accessSync(p, fs.constants.X_OK); return p; } catch { /* next */ }
  }
  return null;
}

/** Spawns `cmd args` pinned to `core` (when pinning), output to files in the work dir. */
function startProcess(name, cmd, args, core) {
  const pinned = PIN && core !== null ? ['taskset', ['-c', String(core), cmd, ...args]] : [cmd, args];
  const out = fs.openSync(path.join(WORK, `${name}.out`), 'a');
  const err = fs.openSync(path.join(WORK, `${name}.err`), 'a');
  const child = spawn(pinned[0], pinned[1], { stdio: ['ignore', out, err], cwd: WORK });
  fs.closeSync(out);
  fs.closeSync(err);
  child.benchName = name;
  child.exited = false;
  started.add(child);
  child.on('exit', (code, signal) => {
    child.exited = true;
    child.exitInfo = signal || code;
  });
  child.on('error', (e) => {
    child.exited = true;
    child.exitInfo = e.message;
  });
  return child;
}

/** Runs a command to completion (bounded by `timeoutMs`), returning its stdout. */
function run(cmd, args, core, timeoutMs) {
  return new Promise((resolve, reject) => {
    const pinned = PIN && core !== null ? ['taskset', ['-c', String(core), cmd, ...args]] : [cmd, args];
    const child = spawn(pinned[0], pinned[1], { stdio: ['ignore', 'pipe', 'pipe'] });
    started.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => {
      killTree(child.pid, 'SIGKILL');
      reject(new Error(`${cmd} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); started.delete(child); reject(e); });
    child.on('close', (code) => {
      clearTimeout(timer);
      started.delete(child);
      if (code === 0) resolve(out);
      else reject(Object.assign(new Error(`${cmd} exited ${code}: ${(err || out).trim().split('\n').slice(-3).join(' | ')}`), { stderr: err }));
    });
  });
}

/** pid → child pids, from /proc. */
function childrenMap() {
  const map = new Map();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (!stat) continue;
    if (!map.has(stat.ppid)) map.set(stat.ppid, []);
    map.get(stat.ppid).push(Number(entry));
  }
  return map;
}

function descendants(pid, map = childrenMap()) {
  const out = [];
  const stack = [...(map.get(pid) || [])];
  while (stack.length > 0 && out.length < 100_000) {
    const p = stack.pop();
    out.push(p);
    stack.push(...(map.get(p) || []));
  }
  return out;
}

function killTree(pid, signal) {
  if (!pid) return;
  for (const p of [pid, ...descendants(pid)]) {
    try { process.kill(p, signal); } catch { /* already gone */ }
  }
}

async function stopAll() {
  await stopProcesses([...started]);
}

/** Stops the given processes (and their descendants) by PID: SIGTERM, then SIGKILL after 3 s. */
async function stopProcesses(children) {
  const trees = children.filter((c) => c.pid && !c.exited).map((c) => [c.pid, ...descendants(c.pid)]);
  for (const pids of trees) for (const p of pids) { try { process.kill(p, 'SIGTERM'); } catch { /* gone */ } }
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && trees.some((pids) => pids.some(alive))) await sleep(50);
  for (const pids of trees) for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
  for (const c of children) started.delete(c);
}

function alive(pid) {
  const s = readStat(pid);
  return s !== null && s.state !== 'Z';
}

// ---------------------------------------------------------------------------------------------
// /proc readings

/** Fields of /proc/PID/stat after the command name: state, ppid, CPU ticks. */
function readStat(pid) {
  let text;
  try { text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { return null; }
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state); utime is field 14, stime 15, cutime 16, cstime 17.
  return { state: f[0], ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]), childTicks: Number(f[13]) + Number(f[14]) };
}

/**
 * CPU time (µs) of a proxy: its processes, the children they reaped (socat forks one per
 * connection) and the children still alive. A delta of two readings is the CPU spent between them.
 */
function cpuMicros(rootPids) {
  const map = childrenMap();
  let ticks = 0;
  for (const pid of rootPids) {
    const s = readStat(pid);
    if (!s) continue;
    ticks += s.ticks + s.childTicks;
    for (const d of descendants(pid, map)) {
      const ds = readStat(d);
      if (ds) ticks += ds.ticks + ds.childTicks;
    }
  }
  return (ticks * 1e6) / CLK_TCK;
}

function statusKiB(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch { return 0; }
}

function pssKiB(pid) {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    if (m) return Number(m[1]);
  } catch { /* older kernel */ }
  return statusKiB(pid, 'VmRSS');
}

/**
 * Memory (KiB) of a proxy: VmRSS of its own processes, plus its children's. Per-connection
 * children (socat's fork(2)s, `childMem: 'pss'`, the default) count their Pss, so the pages they
 * share copy-on-write with their parent are not counted once per connection. mapgate's cluster
 * workers (`childMem: 'rss'`) are processes of their own (node:cluster spawns, it does not
 * fork), sharing only the node binary's file pages: they count their VmRSS, like the primary.
 */
function memKiB(rootPids, childMem = 'pss') {
  const map = childrenMap();
  let kib = 0;
  for (const pid of rootPids) {
    kib += statusKiB(pid, 'VmRSS');
    for (const d of descendants(pid, map)) kib += childMem === 'rss' ? statusKiB(d, 'VmRSS') : pssKiB(d);
  }
  return kib;
}

/** The proxy's memory, summed over its processes as its definition says. */
function proxyKiB(p) {
  return memKiB(p.pids, p.childMem);
}

// ---------------------------------------------------------------------------------------------
// Sockets

/** Distinct free loopback ports (the external peers cannot report a port-0 bind back to us). */
async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      await new Promise((resolve, reject) => { s.once('error', reject); s.listen(0, '127.0.0.1', resolve); });
      servers.push(s);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

async function waitPort(port, timeoutMs, watch) {
  const deadline = Date.now() + timeoutMs;
  const children = [].concat(watch || []);
  while (Date.now() < deadline) {
    const child = children.find((c) => c.exited);
    if (child) throw new Error(`${child.benchName} exited (${child.exitInfo}): see ${path.join(WORK, child.benchName + '.err')}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

function httpGet(port, pathName = '/', timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathName, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET :${port}${pathName} timed out`)));
    req.on('error', reject);
  });
}

/** Opens a connection to the data upstream through `port` and waits for its "h": end to end. */
function holdConnection(port, timeoutMs) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => { s.destroy(); resolve(null); }, timeoutMs);
    s.on('error', () => { clearTimeout(timer); s.destroy(); resolve(null); });
    s.once('connect', () => s.write('H'));
    s.once('data', (d) => {
      clearTimeout(timer);
      resolve(d[0] === 0x68 ? s : (s.destroy(), null));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Upstreams and proxies

let WORK = '';

/** Upstreams on the load generator's core: iperf3 server, HTTP (nginx or Node), data server. */
async function startUpstreams(ports) {
  const ups = { iperf: ports[0], http: ports[1], data: ports[2], httpServer: null };
  const iperf = startProcess('iperf3-server', 'iperf3', ['-s', '-p', String(ups.iperf), '-B', '127.0.0.1'], 1);
  const nodeArgs = [path.join(__dirname, 'upstream.js'), '--data', String(ups.data)];
  const nginx = which('nginx');
  let httpChild = null;
  if (nginx) {
    const conf = path.join(WORK, 'nginx-http.conf');
    fs.writeFileSync(conf, `daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid ${WORK}/nginx-http.pid;
error_log ${WORK}/nginx-http.log warn;
events { worker_connections 10000; }
http {
  access_log off;
  client_body_temp_path ${WORK}/nginx-http-body;
  proxy_temp_path ${WORK}/nginx-http-proxy;
  fastcgi_temp_path ${WORK}/nginx-http-fastcgi;
  uwsgi_temp_path ${WORK}/nginx-http-uwsgi;
  scgi_temp_path ${WORK}/nginx-http-scgi;
  keepalive_requests 10000000;
  keepalive_timeout 75s;
  server {
    listen 127.0.0.1:${ups.http} backlog=4096;
    location / { default_type text/plain; return 200 "ok\\n"; }
  }
}
`);
    httpChild = startProcess('nginx-http', nginx, ['-p', WORK, '-c', conf, '-e', `${WORK}/nginx-http.log`], 1);
    ups.httpServer = 'nginx';
  } else {
    nodeArgs.push('--http', String(ups.http));
    ups.httpServer = 'node:http';
  }
  const node = startProcess('upstream', process.execPath, nodeArgs, 1);
  await waitPort(ups.iperf, 10_000, iperf);
  await waitPort(ups.data, 10_000, node);
  await waitPort(ups.http, 10_000, httpChild || node);
  const res = await httpGet(ups.http);
  if (res.status !== 200 || res.body !== 'ok\n') throw new Error(`HTTP upstream answered ${res.status} ${JSON.stringify(res.body)}`);
  return ups;
}

// ---------------------------------------------------------------------------------------------
// The npm proxies: installed by the bench into its own folder, once, never into the project
// (package.json and package-lock.json stay as they are). Pinned versions, so rows compare.

const PEERS_DIR = path.join(__dirname, '.peers');
const NPM_PEERS = { 'tcp-proxy.js': '1.5.0', 'node-tcp-proxy': '0.0.28' };
let npmInstall = null;

function installedVersion(name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(PEERS_DIR, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch { return null; }
}

/** True once `name@NPM_PEERS[name]` is in PEERS_DIR (installing them the first time), else why not. */
async function npmPeer(name) {
  const version = NPM_PEERS[name];
  if (installedVersion(name) === version) return true;
  if (!npmInstall) npmInstall = installNpmPeers();
  const failed = await npmInstall;
  if (installedVersion(name) === version) return true;
  return `npm install ${name}@${version} into ${path.relative(ROOT, PEERS_DIR)} failed${failed ? ` (offline?): ${failed}` : ''}`;
}

/**
 * Installs every pinned npm peer in one `npm install`: with no package.json in PEERS_DIR, npm
 * treats what it did not install in this call as extraneous and removes it. Resolves to null
 * or the error's message.
 */
async function installNpmPeers() {
  const specs = Object.entries(NPM_PEERS).map(([name, version]) => `${name}@${version}`);
  if (!which('npm')) return 'npm not found';
  log(`installing ${specs.join(' ')} into ${path.relative(ROOT, PEERS_DIR)} (once; later runs reuse them)`);
  fs.mkdirSync(PEERS_DIR, { recursive: true });
  try {
    // --prefix: into PEERS_DIR/node_modules; --no-save, --no-package-lock: no manifest or
    // lockfile written, here or in the project.
    await run('npm', ['install', '--prefix', PEERS_DIR, '--no-save', '--no-package-lock', '--no-audit', '--no-fund',
      '--loglevel=error', ...specs], null, 180_000);
    return null;
  } catch (err) {
    // npm ends with advice and a log path; its first lines say what failed (code, errno, request).
    const said = String(err.stderr || '').split('\n').map((l) => l.replace(/^npm (error|ERR!)\s*/, '').trim())
      .filter((l) => l && !/complete log|behind a proxy|network connectivity|^\s*$/i.test(l));
    return said.length ? said.slice(0, 2).join('; ') : err.message;
  }
}

/**
 * The proxies. `start(listen, ups)` starts one forwarding listen.iperf/http/data to the
 * upstreams, on core 0 (the unpinned rows: on every core), and returns the root processes to
 * measure. `available()` (sync or async) returns true or why the row is skipped: a missing binary,
 * an npm package that could not be installed. `admin`: the proxy is up once its admin port is
 * (mapgate's primary listens there after every worker is ready). `childMem`: see memKiB.
 */
const PROXIES = [
  {
    key: 'mapgate', label: 'mapgate', admin: true,
    available: () => fs.existsSync(CLI) || 'dist/cli.js missing: run npm run build',
    start: (l, ups) => startMapgate(l, ups, false),
  },
  {
    key: 'haproxy', label: 'HAProxy (mode tcp)',
    available: () => !!which('haproxy') || 'haproxy not installed',
    start: (l, ups) => startHaproxy(l, ups, 'haproxy', 1, 0),
  },
  {
    key: 'nginx', label: 'nginx stream',
    available() {
      if (!which('nginx')) return 'nginx not installed';
      return !!streamModule() || 'nginx stream module missing (libnginx-mod-stream)';
    },
    start(l, ups) {
      const conf = path.join(WORK, 'nginx-stream.conf');
      const mod = streamModule();
      const server = (port, target) => `  server { listen 127.0.0.1:${port} backlog=4096; proxy_pass 127.0.0.1:${target}; proxy_timeout 30m; }\n`;
      fs.writeFileSync(conf, `${mod === 'builtin' ? '' : `load_module ${mod};\n`}daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid ${WORK}/nginx-stream.pid;
error_log ${WORK}/nginx-stream.log warn;
events { worker_connections 10000; }
stream {
${server(l.iperf, ups.iperf)}${server(l.http, ups.http)}${server(l.data, ups.data)}}
`);
      return [startProcess('nginx-stream', which('nginx'), ['-p', WORK, '-c', conf, '-e', `${WORK}/nginx-stream.log`], 0)];
    },
  },
  {
    key: 'socat', label: 'socat (fork)',
    available: () => !!which('socat') || 'socat not installed',
    start(l, ups) {
      return [[l.iperf, ups.iperf], [l.http, ups.http], [l.data, ups.data]].map(([port, target], i) =>
        startProcess(`socat-${i}`, which('socat'), [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,backlog=4096`, `TCP:127.0.0.1:${target}`], 0));
    },
  },
  {
    key: 'rinetd', label: 'rinetd',
    available: () => !!which('rinetd') || 'rinetd not installed',
    start(l, ups) {
      const conf = path.join(WORK, 'rinetd.conf');
      fs.writeFileSync(conf, [[l.iperf, ups.iperf], [l.http, ups.http], [l.data, ups.data]]
        .map(([port, target]) => `127.0.0.1 ${port} 127.0.0.1 ${target}`).join('\n') + '\n');
      return [startProcess('rinetd', which('rinetd'), ['-f', '-c', conf], 0)];
    },
  },
  {
    key: 'bare', label: 'bare Node pipe proxy',
    available: () => true,
    start: (l, ups) => [startNodeRunner('bare-proxy', l, ups)],
  },
  {
    key: 'tcp-proxy-js', label: `tcp-proxy.js ${NPM_PEERS['tcp-proxy.js']} (npm)`,
    available: () => npmPeer('tcp-proxy.js'),
    start: (l, ups) => [startNodeRunner('tcp-proxy-js', l, ups)],
  },
  {
    key: 'node-tcp-proxy', label: `node-tcp-proxy ${NPM_PEERS['node-tcp-proxy']} (npm)`,
    available: () => npmPeer('node-tcp-proxy'),
    start: (l, ups) => [startNodeRunner('node-tcp-proxy', l, ups)],
  },
  {
    key: 'mapgate-w2', label: 'mapgate `workers: 2` (unpinned)', admin: true, childMem: 'rss',
    available: () => fs.existsSync(CLI) || 'dist/cli.js missing: run npm run build',
    start: (l, ups) => startMapgate(l, ups, false, { key: 'mapgate-w2', workers: 2, core: ALL_CORES }),
  },
  {
    key: 'haproxy-nt2', label: 'HAProxy `nbthread 2` (unpinned)',
    available: () => !!which('haproxy') || 'haproxy not installed',
    start: (l, ups) => startHaproxy(l, ups, 'haproxy-nt2', 2, ALL_CORES),
  },
];

/** HAProxy in `mode tcp` with `threads` threads, on `core` (0, or ALL_CORES). */
function startHaproxy(l, ups, name, threads, core) {
  const conf = path.join(WORK, `${name}.cfg`);
  const block = (svc, port, target) => `listen ${svc}\n  bind 127.0.0.1:${port}\n  server s1 127.0.0.1:${target}\n`;
  fs.writeFileSync(conf, `global
  nbthread ${threads}
  maxconn 9000
defaults
  mode tcp
  maxconn 9000
  timeout connect 5s
  timeout client 30m
  timeout server 30m
${block('iperf', l.iperf, ups.iperf)}${block('http', l.http, ups.http)}${block('data', l.data, ups.data)}`);
  return [startProcess(name, which('haproxy'), ['-f', conf, '-db'], core)];
}

/** One of the Node runners in this folder (bare-proxy.js, tcp-proxy-js.js, ...) on core 0, plain `node`. */
function startNodeRunner(name, l, ups) {
  return startProcess(name, process.execPath, [path.join(__dirname, `${name}.js`),
    `${l.iperf}:127.0.0.1:${ups.iperf}`, `${l.http}:127.0.0.1:${ups.http}`, `${l.data}:127.0.0.1:${ups.data}`], 0);
}

function streamModule() {
  try {
    if (/--with-stream(\s|$)/.test(execFileSync(which('nginx'), ['-V'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }))) return 'builtin';
  } catch { /* fall through to the module */ }
  for (const p of ['/usr/lib/nginx/modules/ngx_stream_module.so', '/usr/share/nginx/modules/ngx_stream_module.so']) {
    if (fs.existsSync(p)) return p;
  }
  return null;
}

/**
 * mapgate with everything on: a user table and mapping rules evaluated per connection, events
 * logged to a file, metrics served on the admin endpoint. `workers` > 1 adds `workers: N`; the
 * config and events file are named after `key`.
 */
function startMapgate(l, ups, profile, { key = 'mapgate', workers = 1, core = 0 } = {}) {
  const conf = path.join(WORK, `${key}.yaml`);
  const service = (name, port, target) => `  - name: ${name}
    port: ${port}
    bind: [127.0.0.1]
    destination: 127.0.0.1:${target}
    mappings:
      - source: [192.0.2.0/24]
        action: reject
      - user: bench
        destination: 127.0.0.1:${target}
`;
  fs.writeFileSync(conf, `${workers > 1 ? `workers: ${workers}\n` : ''}admin:
  listen: 127.0.0.1:${l.admin}
log:
  events: ${eventsFile(key)}
shutdownGrace: 1s
defaults:
  connectTimeout: 5s
  idleTimeout: 30m
  maxConnections: 9000
users:
  bench: { sources: [127.0.0.0/8] }
services:
${service('iperf', l.iperf, ups.iperf)}${service('http', l.http, ups.http)}${service('data', l.data, ups.data)}`);
  const nodeArgs = [...mapgateNodeFlags(), ...(profile ? ['--cpu-prof', '--cpu-prof-dir', path.join(WORK, 'profile')] : [])];
  return [startProcess(key, process.execPath, [...nodeArgs, CLI, 'run', '-c', conf], core)];
}

function eventsFile(key) {
  return path.join(WORK, `${key}-events.jsonl`);
}

/** The Node flags mapgate runs with, as deployed: those on its `#!/usr/bin/env -S node ...` line. */
function mapgateNodeFlags() {
  return fs.readFileSync(CLI, 'utf8').split('\n', 1)[0].split(' ').filter((w) => w.startsWith('--'));
}

/** Starts a proxy and checks each of its three ports forwards end to end. */
async function launch(proxy, ups) {
  const [iperf, httpPort, data, admin] = await freePorts(4);
  const listen = { iperf, http: httpPort, data, admin };
  const children = proxy.start(listen, ups);
  for (const port of [iperf, httpPort, data, ...(proxy.admin ? [admin] : [])]) await waitPort(port, 15_000, children);
  await sleep(200);
  const dead = children.find((c) => c.exited);
  if (dead) throw new Error(`${dead.benchName} exited (${dead.exitInfo})`);
  const res = await httpGet(httpPort);
  if (res.status !== 200 || res.body !== 'ok\n') throw new Error(`HTTP through the proxy answered ${res.status}`);
  const held = await holdConnection(data, 5000);
  if (!held) throw new Error('data port does not reach the data upstream');
  held.destroy();
  return { ...proxy, listen, children, pids: children.map((c) => c.pid) };
}

// ---------------------------------------------------------------------------------------------
// Measurements

/**
 * iperf3 through the proxy; Gbit/s received. Upload: the client sends (client → upstream);
 * download (`reverse`, `iperf3 -R`): the server behind the proxy sends (upstream → client).
 */
async function iperf(p, streams, secs, reverse = false) {
  let lastErr = null;
  const args = ['-c', '127.0.0.1', '-p', String(p.listen.iperf), '-t', String(secs), '-P', String(streams), '-J', '--connect-timeout', '3000'];
  if (reverse) args.push('-R');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const out = await run('iperf3', args, 1, (secs + 15) * 1000);
      const j = JSON.parse(out);
      if (j.error) throw new Error(j.error);
      return j.end.sum_received.bits_per_second / 1e9;
    } catch (err) {
      lastErr = err;
      // iperf3's server takes a moment to be free again after a test ("the server is busy").
      await sleep(1000);
    }
  }
  throw lastErr;
}

/** wrk against the HTTP port; returns requests, rate, p99 (ms) and error counts. */
async function wrk(p, conns, secs, { close = false, latency = false } = {}) {
  const args = ['-t', '1', '-c', String(conns), '-d', `${secs}s`, '--timeout', '2s'];
  if (close) args.push('-H', 'Connection: close');
  if (latency) args.push('--latency');
  args.push(`http://127.0.0.1:${p.listen.http}/`);
  const out = await run('wrk', args, 1, (secs + 15) * 1000);
  const num = (re) => { const m = re.exec(out); return m ? Number(m[1]) : null; };
  const requests = num(/(\d+) requests in/);
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const result = {
    requests,
    rate: num(/Requests\/sec:\s+([\d.]+)/),
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/) || 0,
    errors: errs ? { connect: +errs[1], read: +errs[2], write: +errs[3], timeout: +errs[4] } : null,
    p99: null,
  };
  const m = /^\s+99%\s+([\d.]+)(us|ms|s)\s*$/m.exec(out);
  if (m) result.p99 = Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
  if (requests === null || result.rate === null) throw new Error(`cannot read wrk output: ${out.trim().slice(0, 200)}`);
  return result;
}

function describeErrors(r) {
  const e = r.errors;
  const parts = [];
  if (e) for (const k of ['connect', 'read', 'write', 'timeout']) if (e[k]) parts.push(`${k} ${e[k]}`);
  if (r.non2xx) parts.push(`non-2xx ${r.non2xx}`);
  return parts.length ? ` (errors: ${parts.join(', ')})` : '';
}

async function connRate(p, secs = D.wrkSecs) {
  const before = cpuMicros(p.pids);
  const r = await wrk(p, CONN_CLIENTS, secs, { close: true });
  const cpu = cpuMicros(p.pids) - before;
  const completed = r.requests - r.non2xx;
  return { rate: r.rate, cpuPerConn: completed > 0 ? cpu / completed : null, note: describeErrors(r) };
}

async function keepAliveP99(p) {
  const r = await wrk(p, LATENCY_CLIENTS, D.wrkSecs, { latency: true });
  return { p99: r.p99, note: describeErrors(r) };
}

/**
 * The freshly started proxy's memory with no connection open, in MiB: sampled every 250 ms
 * until four samples in a row (a second) stay within 1 % of each other, after at least
 * IDLE_SETTLE.minMs and at most IDLE_SETTLE.maxMs (then the last sample, said so).
 */
async function idleBaseline(p) {
  const start = Date.now();
  const samples = [];
  for (;;) {
    samples.push(proxyKiB(p));
    const last = samples.slice(-4);
    const settled = last.length === 4 && Math.max(...last) - Math.min(...last) <= 0.01 * Math.max(...last);
    const waited = Date.now() - start;
    if ((settled && waited >= IDLE_SETTLE.minMs) || waited >= IDLE_SETTLE.maxMs) {
      return { mib: last[last.length - 1] / 1024, note: settled ? ` (settled after ${(waited / 1000).toFixed(1)} s)` : ` (still moving after ${(waited / 1000).toFixed(1)} s)` };
    }
    await sleep(250);
  }
}

/**
 * Memory per idle connection: the proxy's growth from `n` held connections to `2n` (opened 64 at
 * a time), per connection. The first `n` on a fresh process also pay one-time costs (the
 * connection path's code compiled and paged in, V8's young generation growing to its cap); they
 * are reported in the note, the marginal figure is the table's.
 */
async function idleMemory(p, n) {
  await sleep(300);
  const sockets = [];
  const deadline = Date.now() + 90_000;
  let failed = 0;
  const open = async (count) => {
    const target = sockets.length + count;
    while (sockets.length < target && sockets.length + failed < 2 * n && Date.now() < deadline) {
      const batch = Math.min(64, target - sockets.length);
      const got = await Promise.all(Array.from({ length: batch }, () => holdConnection(p.listen.data, 10_000)));
      for (const s of got) {
        if (s) { s.on('error', () => {}); sockets.push(s); } else failed++;
      }
    }
    await sleep(1000);
  };
  try {
    const before = proxyKiB(p);
    await open(n);
    const first = sockets.length;
    const mid = proxyKiB(p);
    await open(n);
    const second = sockets.length - first;
    const after = proxyKiB(p);
    if (first === 0 || second === 0) throw new Error('no idle connection could be opened');
    const firstKiB = (mid - before) / first;
    const short = first + second < 2 * n ? `, only ${first + second} of ${2 * n} opened` : '';
    return { kib: (after - mid) / second, first: firstKiB, opened: first + second, note: ` (first ${first} on the fresh process: ${firstKiB.toFixed(1)} KiB each${short})` };
  } finally {
    for (const s of sockets) s.destroy();
    await sleep(500);
  }
}

/** Slow readers pull a stream the upstream writes as fast as backpressure lets it; peak growth in MB. */
async function slowReader(p) {
  await sleep(200);
  const before = proxyKiB(p);
  let peak = before;
  let received = 0;
  const sockets = [];
  const start = Date.now();
  let stopped = null;
  let stop = () => {};
  const stoppedEarly = new Promise((resolve) => { stop = resolve; });
  const sampler = setInterval(() => {
    peak = Math.max(peak, proxyKiB(p));
    if (!stopped && peak - before > SLOW_READER_ABORT_MB * 1024) {
      stopped = Date.now() - start;
      stop();
    }
  }, 100);
  try {
    for (let i = 0; i < D.slowConns; i++) {
      const s = net.connect(p.listen.data, '127.0.0.1');
      s.on('error', () => {});
      s.once('connect', () => s.write('S'));
      let got = 0;
      let timer = null;
      s.on('data', (d) => {
        got += d.length;
        received += d.length;
        const dueMs = (got / SLOW_READ_BYTES_PER_SEC) * 1000 - (Date.now() - start);
        if (dueMs > 5 && !timer) {
          s.pause();
          timer = setTimeout(() => { timer = null; s.resume(); }, dueMs);
        }
      });
      s.on('close', () => clearTimeout(timer));
      sockets.push(s);
    }
    await Promise.race([sleep(D.slowSecs * 1000), stoppedEarly]);
    peak = Math.max(peak, proxyKiB(p));
    const cut = stopped ? `; stopped after ${(stopped / 1000).toFixed(1)} s, past ${SLOW_READER_ABORT_MB} MB` : '';
    return { mb: (peak - before) / 1024, note: ` (read ${(received / 1048576).toFixed(1)} MiB${cut})` };
  } finally {
    clearInterval(sampler);
    for (const s of sockets) s.destroy();
    await sleep(500);
  }
}

const gbit = (v) => v.toFixed(1);
const METRICS = [
  { key: 'up1', title: '1-stream upload Gbit/s', better: 'high', fmt: gbit, measure: async (p) => ({ value: await iperf(p, 1, D.iperfSecs) }) },
  { key: 'down1', title: '1-stream download Gbit/s', better: 'high', fmt: gbit, measure: async (p) => ({ value: await iperf(p, 1, D.iperfSecs, true) }) },
  { key: 'tp8', title: '8-stream Gbit/s', better: 'high', fmt: gbit, measure: async (p) => ({ value: await iperf(p, 8, D.iperfSecs) }) },
  { key: 'conn', title: `conn/s (close, ${CONN_CLIENTS} conns)`, better: 'high', fmt: (v) => (v >= 1000 ? `${(v / 1000).toFixed(1)}k` : v.toFixed(0)) },
  { key: 'cpu', title: 'CPU µs/conn', better: 'low', fmt: (v) => v.toFixed(0) },
  { key: 'p99', title: `keep-alive p99 ms (${LATENCY_CLIENTS} conns)`, better: 'low', fmt: (v) => (v < 10 ? v.toFixed(2) : v.toFixed(1)), measure: async (p) => { const r = await keepAliveP99(p); return { value: r.p99, note: r.note }; } },
  { key: 'base', title: 'idle MiB', better: 'low', fmt: (v) => v.toFixed(1), measure: async (p) => { const r = await idleBaseline(p); return { value: r.mib, note: r.note }; } },
  { key: 'idle', title: 'KiB/idle conn', better: 'low', fmt: (v) => v.toFixed(1), measure: async (p) => { const r = await idleMemory(p, D.idleConns); return { value: r.kib, note: r.note }; } },
  { key: 'slow', title: `slow-reader growth MB (${D.slowConns} readers)`, better: 'low', capped: (v) => v > SLOW_READER_ABORT_MB, fmt: (v) => (v > SLOW_READER_ABORT_MB ? `> ${SLOW_READER_ABORT_MB}` : v.toFixed(1)), measure: async (p) => { const r = await slowReader(p); return { value: r.mb, note: r.note }; } },
];

/** The order of one round: memory on the fresh process first, then a warm-up, then the rest. */
const ROUND = ['base', 'idle', 'slow', 'warm', 'up1', 'down1', 'tp8', 'conn', 'p99'];

/**
 * mapgate's targets of issue 13: ratios to the bare Node proxy's median, or absolute where the
 * issue gives an absolute bound; keep-alive p99 has none.
 */
const TARGETS = {
  up1: { text: '≥ 1.0×', ok: (v, b) => v / b >= 1.0 },
  down1: { text: '≥ 1.25×', ok: (v, b) => v / b >= 1.25 },
  tp8: { text: '≥ 1.1×', ok: (v, b) => v / b >= 1.1 },
  conn: { text: '≥ 0.95×', ok: (v, b) => v / b >= 0.95 },
  cpu: { text: '≤ 1.1×', ok: (v, b) => v / b <= 1.1 },
  p99: null,
  base: { text: '≤ 1.3×', ok: (v, b) => v / b <= 1.3 },
  idle: { text: '≤ 6 KiB', absolute: true, ok: (v) => v <= 6 },
  slow: { text: `< ${SLOW_READER_LIMIT_MB} MB`, absolute: true, ok: (v) => v < SLOW_READER_LIMIT_MB },
};

/** The npm proxies mapgate must be ahead of on every figure (issue 13): row key → package name. */
const NPM_ROWS = { 'tcp-proxy-js': 'tcp-proxy.js', 'node-tcp-proxy': 'node-tcp-proxy' };

/**
 * One round of one proxy, on a fresh process: memory first (so earlier tests have not grown a
 * heap the idle connections would then fit in), then a warm-up, then throughput and requests.
 */
async function measureProxy(def, ups, results) {
  const record = (key, value, note = '') => {
    results[def.key][key].push(value);
    const m = METRICS.find((x) => x.key === key);
    log(`  ${def.key.padEnd(14)} ${m.title.padEnd(34)} ${value === null ? 'failed' : m.fmt(value)}${note}`);
  };
  let p;
  try {
    p = await launch(def, ups);
  } catch (err) {
    log(`  ${def.key}: did not start: ${err.message}`);
    for (const m of METRICS) results[def.key][m.key].push(null);
    return;
  }
  const guard = setInterval(function onMemoryGuard() {
    const mb = proxyKiB(p) / 1024;
    if (mb <= MEMORY_GUARD_MB) return;
    log(`  ${def.key}: ${mb.toFixed(0)} MB, past the ${MEMORY_GUARD_MB} MB guard: killed`);
    for (const c of p.children) killTree(c.pid, 'SIGKILL');
  }, 500);
  try {
    for (const key of ROUND) {
      const dead = p.children.find((c) => c.exited);
      if (dead) {
        log(`  ${def.key}: ${dead.benchName} exited (${dead.exitInfo}); rest of this round skipped`);
        for (const m of METRICS) if (results[def.key][m.key].length < results.rounds) results[def.key][m.key].push(null);
        return;
      }
      try {
        if (key === 'warm') {
          // JIT warm-up for the Node proxies (the others get the same traffic): both the
          // per-connection path (Connection: close) and the per-request path (keep-alive).
          // Without the second, the first keep-alive run of a Node proxy pinned to one core
          // shares that core with V8's optimising compiler, and its p99 measures compilation.
          await wrk(p, CONN_CLIENTS, D.warmSecs, { close: true });
          await wrk(p, LATENCY_CLIENTS, D.warmSecs, {});
        } else if (key === 'conn') {
          const r = await connRate(p);
          record('conn', r.rate, r.note);
          record('cpu', r.cpuPerConn);
        } else {
          const r = await METRICS.find((m) => m.key === key).measure(p);
          record(key, r.value, r.note || '');
        }
      } catch (err) {
        log(`  ${def.key} ${key}: ${err.message}`);
        if (key === 'conn') { record('conn', null); record('cpu', null); } else if (key !== 'warm') record(key, null);
      }
    }
    if (def.admin) await mapgateSanity(p);
  } finally {
    clearInterval(guard);
    await stopProcesses(p.children);
  }
}

// ---------------------------------------------------------------------------------------------
// Report

function median(values) {
  const v = values.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

const ratio = (v, ref) => (v === null || ref === null || ref === undefined || ref === 0 ? '–' : `${(v / ref).toFixed(2)}×`);

function table(proxies, results, env) {
  const med = {};
  for (const p of proxies) {
    med[p.key] = {};
    for (const m of METRICS) med[p.key][m.key] = median(results[p.key][m.key]);
  }
  const ref = (key, m) => (med[key] ? med[key][m.key] : null);
  const lines = [];
  lines.push(`mapgate bench: ${env.date}, ${env.machine}; ${env.rounds} round${env.rounds === 1 ? '' : 's'} (medians)${env.quick ? ', --quick' : ''}; ${env.pinning}; HTTP upstream ${env.httpServer}.`);
  lines.push('Cells: median (× HAProxy / × bare Node proxy), HAProxy being the pinned `nbthread 1` row. Rows marked unpinned may use every core, the load generators\' too.');
  lines.push('Last rows: mapgate against the targets of issue 13 (× bare Node proxy unless absolute), and whether it is ahead of both npm proxies (the bound is the better of the two).');
  lines.push('');
  lines.push(`| proxy | ${METRICS.map((m) => m.title).join(' | ')} |`);
  lines.push(`|---|${METRICS.map(() => '---:').join('|')}|`);
  for (const p of proxies) {
    const cells = METRICS.map((m) => {
      const v = med[p.key][m.key];
      if (v === null) return 'fail';
      // A figure stopped at its cap is a lower bound, and so are its ratios.
      const r = (x) => `${m.capped && m.capped(v) && x !== '–' ? '> ' : ''}${x}`;
      return `${m.fmt(v)} (${r(ratio(v, ref('haproxy', m)))} / ${r(ratio(v, ref('bare', m)))})`;
    });
    lines.push(`| ${p.label} | ${cells.join(' | ')} |`);
  }
  if (med.mapgate) {
    lines.push(`| *mapgate target (issue 13)* | ${METRICS.map((m) => targetCell(m, med)).join(' | ')} |`);
    if (Object.keys(NPM_ROWS).some((k) => med[k])) lines.push(`| *mapgate ahead of ${Object.values(NPM_ROWS).join(' and ')}* | ${METRICS.map((m) => aheadCell(m, med)).join(' | ')} |`);
  }
  const scaling = scalingLine(med);
  if (scaling) lines.push('', scaling);
  return lines.join('\n') + '\n';
}

function targetCell(m, med) {
  const t = TARGETS[m.key];
  if (!t) return '-';
  const v = med.mapgate[m.key];
  const b = med.bare ? med.bare[m.key] : null;
  if (v === null) return `${t.text} ✗ (no result)`;
  if (!t.absolute && !b) return `${t.text} ? (no bare proxy)`;
  return `${t.text} ${t.ok(v, b) ? '✓' : '✗'}`;
}

/** `> best` or `< best` of the npm rows (better = higher or lower), ✓ if mapgate is strictly past it. */
function aheadCell(m, med) {
  const v = med.mapgate[m.key];
  const keys = Object.keys(NPM_ROWS);
  const rows = keys.filter((k) => med[k]);
  const missing = keys.filter((k) => !med[k]);
  const failed = rows.filter((k) => med[k][m.key] === null);
  const values = rows.map((k) => med[k][m.key]).filter((x) => x !== null);
  const notes = [...missing.map((k) => `${NPM_ROWS[k]} not run`), ...failed.map((k) => `${NPM_ROWS[k]} failed`)];
  const note = notes.length ? ` (${notes.join(', ')})` : '';
  if (values.length === 0) return `?${note}`;
  const high = m.better === 'high';
  const best = high ? Math.max(...values) : Math.min(...values);
  // A capped slow-reader figure prints as "> 1024": the bound is then the cap itself.
  const text = `${high ? '>' : '<'} ${m.fmt(best).replace(/^> /, '')}`;
  if (v === null) return `${text} ✗ (no result)`;
  const ok = high ? v > best : v < best;
  return `${text} ${ok && missing.length === 0 ? '✓' : ok ? '?' : '✗'}${note}`;
}

/** How the unpinned rows scale: each against its pinned single-process row, and against each other. */
function scalingLine(med) {
  const conn = METRICS.find((m) => m.key === 'conn');
  const cpu = METRICS.find((m) => m.key === 'cpu');
  const part = (key, single, label) => {
    if (!med[key] || med[key].conn === null) return null;
    const r = med[single] && med[single].conn !== null ? ` = ${ratio(med[key].conn, med[single].conn)} its pinned row` : '';
    return `${label} ${conn.fmt(med[key].conn)} conn/s${r}`;
  };
  const parts = [part('mapgate-w2', 'mapgate', 'mapgate `workers: 2`'), part('haproxy-nt2', 'haproxy', 'HAProxy `nbthread 2`')].filter(Boolean);
  if (parts.length === 0) return null;
  let both = '';
  if (parts.length === 2) {
    const w = med['mapgate-w2'];
    const h = med['haproxy-nt2'];
    const us = (v) => (v === null ? '–' : cpu.fmt(v));
    both = `; mapgate \`workers: 2\` ÷ HAProxy \`nbthread 2\`: conn/s ${ratio(w.conn, h.conn)}, CPU µs/conn ${ratio(w.cpu, h.cpu)} (${us(w.cpu)} / ${us(h.cpu)})`;
  }
  return `Unpinned (connection-rate scaling, informative only): ${parts.join(', ')}${both}.`;
}

function environment(ups) {
  const cpu = os.cpus()[0] ? os.cpus()[0].model.replace(/\s+/g, ' ').trim() : 'unknown CPU';
  return {
    date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
    machine: `${cpu}, ${CPUS} cores, Linux ${os.release()}, Node ${process.version}`,
    rounds: D.rounds,
    quick: opts.quick,
    pinning: PIN ? 'proxy on core 0, load generators and upstreams on core 1' : 'one core: no pinning',
    httpServer: ups.httpServer,
  };
}

// ---------------------------------------------------------------------------------------------
// Main

async function mapgateSanity(p) {
  const events = eventsFile(p.key);
  let lines = 0;
  try {
    const fd = fs.openSync(events, 'r');
    const buf = Buffer.alloc(1 << 20);
    let n;
    while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) for (let i = 0; i < n; i++) if (buf[i] === 10) lines++;
    fs.closeSync(fd);
  } catch { /* reported as 0 */ }
  let total = null;
  try {
    const res = await httpGet(p.listen.admin, '/metrics');
    total = 0;
    for (const m of res.body.matchAll(/^mapgate_connections_total\{[^}]*\} (\d+)/gm)) total += Number(m[1]);
  } catch (err) {
    log(`mapgate /metrics: ${err.message}`);
  }
  log(`${p.key}: ${lines} event lines logged (all rounds), /metrics mapgate_connections_total = ${total}`);
}

async function benchmark() {
  const only = opts.only;
  const unknown = (only || []).filter((k) => !PROXIES.some((p) => p.key === k) && !PROTOCOL_KEYS.includes(k));
  if (unknown.length) throw new Error(`--only: unknown ${unknown.join(', ')} (known: ${[...PROXIES.map((p) => p.key), ...PROTOCOL_KEYS].join(', ')})`);
  const candidates = PROXIES.filter((p) => !only || only.includes(p.key));
  if (candidates.length > 0) await benchmarkProxies(candidates);
  const protocols = PROTOCOL_KEYS.filter((k) => !only || only.includes(k));
  if (protocols.length > 0) await benchmarkProtocols(protocols);
}

/** The protocol paths of issue 11 (test/bench/protocols.js): SOCKS5 and FTP rows, a table of their own. */
async function benchmarkProtocols(keys) {
  const ctx = { D, WORK, CLI, log, which, run, startProcess, stopProcesses, freePorts, waitPort, cpuMicros, mapgateNodeFlags };
  const { markdown, raw } = await benchProtocols(ctx, keys);
  const env = environment({ httpServer: null });
  const file = path.join(os.tmpdir(), 'mapgate-bench-protocols-last.json');
  fs.writeFileSync(file, JSON.stringify({ env, durations: D, results: raw }, null, 2));
  log(`raw results: ${file}`);
  const load = os.loadavg().map((v) => v.toFixed(2)).join(', ');
  process.stdout.write(`\nmapgate bench, protocol paths (${keys.join(', ')}): ${env.date}, ${env.machine}; ${env.rounds} round${env.rounds === 1 ? '' : 's'} (medians)${env.quick ? ', --quick' : ''}; ${env.pinning}; load average at the end ${load}.\n\n${markdown}`);
}

async function benchmarkProxies(candidates) {
  const tools = ['iperf3', 'wrk'].filter((t) => !which(t));
  if (tools.length) throw new Error(`missing load tools: ${tools.join(', ')} (run test/bench/install-peers.sh)`);
  const ups = await startUpstreams(await freePorts(3));
  log(`upstreams: iperf3 :${ups.iperf}, HTTP (${ups.httpServer}) :${ups.http}, data :${ups.data}`);

  const proxies = [];
  for (const p of candidates) {
    const ok = await p.available();
    if (ok === true) proxies.push(p);
    else log(`skip ${p.key}: ${ok}`);
  }
  if (proxies.length === 0) throw new Error('no proxy available');

  const results = { rounds: 0 };
  for (const p of proxies) {
    results[p.key] = {};
    for (const m of METRICS) results[p.key][m.key] = [];
  }
  for (let round = 1; round <= D.rounds; round++) {
    log(`round ${round} of ${D.rounds}`);
    results.rounds = round;
    for (const p of proxies) await measureProxy(p, ups, results);
  }
  for (const p of proxies) {
    for (const m of METRICS) {
      const v = results[p.key][m.key].filter((x) => x !== null);
      if (v.length > 1) log(`range ${p.key.padEnd(14)} ${m.title.padEnd(34)} ${m.fmt(Math.min(...v))}–${m.fmt(Math.max(...v))}`);
    }
  }
  const raw = path.join(os.tmpdir(), 'mapgate-bench-last.json');
  fs.writeFileSync(raw, JSON.stringify({ env: environment(ups), durations: D, results }, null, 2));
  log(`raw results: ${raw}`);
  process.stdout.write(table(proxies, results, environment(ups)));
}

/** A conn/s run of mapgate (or the bare proxy) under `node --cpu-prof`; prints the top functions. */
async function profile(which) {
  const { top } = require('./top-profile');
  const ups = await startUpstreams(await freePorts(3));
  const [iperf, httpPort, data, admin] = await freePorts(4);
  const listen = { iperf, http: httpPort, data, admin };
  const dir = path.join(WORK, 'profile');
  const [child] = which === 'bare'
    ? [startProcess('bare-proxy', process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, path.join(__dirname, 'bare-proxy.js'),
      `${iperf}:127.0.0.1:${ups.iperf}`, `${httpPort}:127.0.0.1:${ups.http}`, `${data}:127.0.0.1:${ups.data}`], 0)]
    : startMapgate(listen, ups, true);
  for (const port of [iperf, httpPort, data]) await waitPort(port, 15_000, child);
  const p = { key: which, listen, children: [child], pids: [child.pid] };
  await wrk(p, CONN_CLIENTS, D.warmSecs, { close: true });
  const r = await connRate(p, D.profileSecs);
  log(`${which} under --cpu-prof: ${r.rate.toFixed(0)} conn/s, ${r.cpuPerConn.toFixed(0)} µs CPU/conn${r.note}`);
  process.kill(child.pid, 'SIGINT');
  const deadline = Date.now() + 20_000;
  while (!child.exited && Date.now() < deadline) await sleep(100);
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')) : [];
  if (files.length === 0) throw new Error(`${which} wrote no .cpuprofile`);
  const keep = path.join(os.tmpdir(), `${which}-bench.cpuprofile`);
  fs.copyFileSync(path.join(dir, files[0]), keep);
  log(`profile: ${keep} (open it in Chrome DevTools › Performance, or speedscope)`);
  process.stdout.write(top(keep, 30));
}

/** `--npm-peers`: installs the npm proxies (test/bench/install-peers.sh runs this), exit 1 if one is missing. */
async function npmPeersOnly() {
  let missing = 0;
  for (const name of Object.keys(NPM_PEERS)) {
    const ok = await npmPeer(name);
    if (ok === true) process.stdout.write(`ok: ${name}@${NPM_PEERS[name]} in ${path.relative(ROOT, PEERS_DIR)}\n`);
    else { missing++; process.stderr.write(`missing: ${name}: ${ok}\n`); }
  }
  if (missing) process.exitCode = 1;
}

async function main() {
  if (opts.npmPeers) return npmPeersOnly();
  WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'mapgate-bench-'));
  log(`work dir ${WORK}; ${CPUS} cores${PIN ? '; pinning proxies to core 0, load to core 1' : ''}`);
  if (PIN) {
    // The harness itself (idle and slow-reader clients) belongs with the load generators.
    try { execFileSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' }); } catch { log('taskset failed: not pinning the harness'); }
  }
  const deadline = setTimeout(() => {
    log(`deadline of ${D.deadlineSecs} s reached: stopping`);
    shutdown(1);
  }, D.deadlineSecs * 1000);
  try {
    if (opts.profile) await profile(opts.profile);
    else await benchmark();
  } finally {
    clearTimeout(deadline);
  }
}

let stopping = false;
async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  await stopAll();
  if (WORK && !opts.keep) fs.rmSync(WORK, { recursive: true, force: true });
  else if (WORK) log(`kept ${WORK}`);
  process.exit(code);
}

process.on('SIGINT', () => { log('SIGINT: stopping'); shutdown(130); });
process.on('SIGTERM', () => { log('SIGTERM: stopping'); shutdown(143); });

main().then(() => shutdown(process.exitCode || 0), (err) => {
  log(`error: ${err.stack || err.message}`);
  shutdown(1);
});
