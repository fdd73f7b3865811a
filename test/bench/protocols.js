'use strict';
/**
 * The protocol rows of `npm run bench` (issue 11 §3), called by bench.js with its process and
 * /proc helpers: `--only socks,ftp`. See test/bench/README.md, "Protocol paths".
 *
 * - socks: connection rate (new connection, SOCKS5 handshake, CONNECT to a local upstream, a
 *   one-byte request and its answer, the upstream's close; 32 clients at a time) and single-stream download
 *   throughput through mapgate `protocol: socks` (auth none and auth password), microsocks and
 *   Dante, next to a plain mapping of mapgate (the same client without the SOCKS handshake).
 * - ftp: a 1 GiB download (curl, EPSV) from vsftpd on 127.0.0.2 through mapgate `protocol: ftp`,
 *   next to the same download straight from vsftpd.
 *
 * The proxy under test runs on core 0, everything else (upstream, vsftpd, curl, these clients,
 * which run inside the harness process) on core 1. Plain Node, no dependencies.
 */
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const PROTOCOL_KEYS = ['socks', 'ftp'];
const SOCKS_CLIENTS = 32;
const FTP_HOST = '127.0.0.2';
const FTP_FILE_BYTES = 1024 ** 3;
const FTP_WARM_BYTES = 64 * 1024 ** 2;
const SOCKS_USER = 'bench';
const SOCKS_PASSWORD = 'bench-password';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Client scripts: what a connection sends and what it waits for, step by step.

/** SOCKS5 CONNECT request for 127.0.0.1:port (ATYP 1). */
function connectRequest(port) {
  return Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 255]);
}

/** Length of the SOCKS5 reply at the start of `b`, or -1 if it is not all there; throws on a refusal. */
function socksReplyLength(b) {
  if (b.length < 5) return -1;
  if (b[0] !== 5) throw new Error(`SOCKS reply version ${b[0]}`);
  if (b[1] !== 0) throw new Error(`SOCKS reply code ${b[1]}`);
  const len = b[3] === 1 ? 10 : b[3] === 4 ? 22 : b[3] === 3 ? 7 + b[4] : null;
  if (len === null) throw new Error(`SOCKS reply address type ${b[3]}`);
  return b.length >= len ? len : -1;
}

/** An exact reply of `bytes`. */
function exact(bytes, what) {
  const want = Buffer.from(bytes);
  return (b) => {
    if (b.length < want.length) return -1;
    if (!b.subarray(0, want.length).equals(want)) throw new Error(`${what}: got ${b.subarray(0, want.length).toString('hex')}`);
    return want.length;
  };
}

/**
 * The steps of one connection: [{ send, expect }], `expect(buffered)` returning the bytes it
 * consumed, or -1 to wait for more. `auth`: null (plain TCP), 'none' or 'password'.
 */
function script(auth, upstreamPort) {
  const socks = [];
  if (auth === 'none') {
    socks.push({ send: Buffer.from([5, 1, 0]), expect: exact([5, 0], 'method') });
  } else if (auth === 'password') {
    const u = Buffer.from(SOCKS_USER);
    const p = Buffer.from(SOCKS_PASSWORD);
    socks.push({ send: Buffer.from([5, 1, 2]), expect: exact([5, 2], 'method') });
    socks.push({ send: Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]), expect: exact([1, 0], 'login') });
  }
  if (auth !== null) socks.push({ send: connectRequest(upstreamPort), expect: socksReplyLength });
  return socks;
}

/** The request and its answer, after which the upstream closes. */
const HELLO = { send: Buffer.from('H'), expect: exact('h', 'echo') };

/**
 * One connection through `port` running `steps`; `onDone(err)` once the connection has closed,
 * err null when every step completed. Reads go into a buffer shared by every connection (onread:
 * consumed synchronously), so the client allocates little per read. Returns the socket.
 */
function runSteps(port, steps, timeoutMs, onDone, afterSteps) {
  let step = 0;
  let pending = null;
  let failure = null;
  let finished = false;
  const socket = net.connect({ port, host: '127.0.0.1', onread: { buffer: SHARED_READ, callback: onRead } });
  function onRead(nread, buf) {
    if (finished) return afterSteps ? afterSteps.onData(nread) : undefined;
    let b = buf.subarray(0, nread);
    if (pending) { b = Buffer.concat([pending, b]); pending = null; }
    try {
      while (step < steps.length) {
        const used = steps[step].expect(b);
        if (used < 0) { pending = Buffer.from(b); return undefined; }
        b = b.subarray(used);
        step++;
        if (step < steps.length) socket.write(steps[step].send);
        else break;
      }
    } catch (err) {
      failure = err;
      socket.destroy();
      return undefined;
    }
    if (step === steps.length && !finished) {
      finished = true;
      // Without afterSteps the connection now waits for the upstream's close, passed on by the
      // proxy (and answers it: allowHalfOpen is off), as wrk's clients do with Connection: close.
      // The upstream closing first keeps TIME_WAIT off the ephemeral ports of the client and of
      // the proxy's upstream leg (a peer that binds its outgoing sockets, like Dante, runs out).
      if (afterSteps) afterSteps.start(socket, b.length);
    }
    return undefined;
  }
  socket.setNoDelay(true);
  socket.setTimeout(timeoutMs, () => { failure = failure || new Error('timeout'); socket.destroy(); });
  socket.once('connect', () => {
    if (steps.length > 0) socket.write(steps[0].send);
    else { finished = true; afterSteps.start(socket); }
  });
  socket.on('error', (err) => { failure = failure || err; });
  socket.once('close', () => onDone(finished ? null : failure || new Error('closed early')));
  return socket;
}
const SHARED_READ = Buffer.allocUnsafe(256 * 1024);

/**
 * Connections through `port` for `secs`, `clients` at a time, each starting when one closes.
 * Returns completed connections within the window and the errors, by message.
 */
function connLoop(port, steps, clients, secs) {
  return new Promise((resolve) => {
    const start = Date.now();
    const end = start + secs * 1000;
    let completed = 0;
    let late = 0;
    let active = 0;
    const errors = {};
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      resolve({ completed, late, errors, secs: (Math.min(Date.now(), end) - start) / 1000 });
    };
    // In-flight connections get 5 s after the window to close; then the result stands as is.
    const guard = setTimeout(finish, secs * 1000 + 5000);
    const launch = () => {
      active++;
      runSteps(port, steps, 5000, (err) => {
        active--;
        const now = Date.now();
        if (err) {
          const k = err.code || err.message;
          errors[k] = (errors[k] || 0) + 1;
        } else if (now <= end) completed++;
        else late++;
        if (now < end) {
          // Failures back off a little, so a refusing proxy does not become a busy loop.
          if (err) setTimeout(launch, 10);
          else launch();
        } else if (active === 0) finish();
      });
    };
    for (let i = 0; i < clients; i++) launch();
  });
}

/** One stream through `port`: after `steps`, sends "S" and counts what arrives for `secs`. Gbit/s. */
function download(port, steps, secs) {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    let t0 = 0;
    let timer = null;
    let result = null;
    const after = {
      start(socket) {
        t0 = process.hrtime.bigint();
        socket.write('S');
        timer = setTimeout(() => {
          const dt = Number(process.hrtime.bigint() - t0) / 1e9;
          result = (bytes * 8) / dt / 1e9;
          socket.destroy();
        }, secs * 1000);
      },
      onData(n) { bytes += n; },
    };
    runSteps(port, steps, (secs + 10) * 1000, (err) => {
      clearTimeout(timer);
      if (result !== null) resolve(result);
      else reject(err || new Error(`stream closed after ${bytes} bytes`));
    }, after);
  });
}

// ---------------------------------------------------------------------------------------------
// The SOCKS servers

function mapgateConfig(ctx, l, upstreamPort, hash) {
  return `admin:
  listen: 127.0.0.1:${l.admin}
log:
  events: ${path.join(ctx.WORK, 'mapgate-proto-events.jsonl')}
shutdownGrace: 1s
defaults:
  connectTimeout: 5s
  idleTimeout: 30m
  maxConnections: 9000
users:
  bench: { sources: [127.0.0.0/8]${hash ? `, password: "${hash}"` : ''} }
services:
  - name: plain
    port: ${l.plain}
    bind: [127.0.0.1]
    destination: 127.0.0.1:${upstreamPort}
    mappings:
      - source: [192.0.2.0/24]
        action: reject
      - user: bench
        destination: 127.0.0.1:${upstreamPort}
  - name: socks
    port: ${l.socks}
    bind: [127.0.0.1]
    protocol: socks
    socks: { auth: none }
    mappings:
      - to: ["127.0.0.1/32"]
${hash ? `  - name: socks-password
    port: ${l.socksPassword}
    bind: [127.0.0.1]
    protocol: socks
    socks: { auth: password }
    mappings:
      - user: bench
        to: ["127.0.0.1/32"]
` : ''}`;
}

/** Starts `mapgate run` on core 0 (as `name`) with the protocol config for ports `l`; returns the child. */
function startMapgate(ctx, name, l, upstreamPort, hash) {
  const conf = path.join(ctx.WORK, `${name}.yaml`);
  fs.writeFileSync(conf, mapgateConfig(ctx, l, upstreamPort, hash));
  return ctx.startProcess(name, process.execPath, [...ctx.mapgateNodeFlags(), ctx.CLI, 'run', '-c', conf], 0);
}

/** The hash of SOCKS_PASSWORD from `mapgate passwd`, or null (with the reason) when it does not exist. */
function passwordHash(ctx) {
  try {
    const help = execFileSync(process.execPath, [ctx.CLI, '--help'], { encoding: 'utf8', timeout: 10_000 });
    if (!/\bpasswd\b/.test(help)) return { hash: null, why: '`mapgate passwd` does not exist yet' };
    const out = execFileSync(process.execPath, [ctx.CLI, 'passwd'], { input: `${SOCKS_PASSWORD}\n`, encoding: 'utf8', timeout: 20_000 }).trim();
    const hash = out.split('\n').map((s) => s.trim()).find((s) => s.startsWith('scrypt:'));
    return hash ? { hash, why: null } : { hash: null, why: `mapgate passwd printed no scrypt: line (${out.slice(0, 80)})` };
  } catch (err) {
    return { hash: null, why: `mapgate passwd failed: ${err.message.split('\n')[0]}` };
  }
}

/**
 * The rows of the SOCKS table. `start(ctx, l, up)` starts the server on core 0 and returns
 * { children, port }; `auth` is the client's script (null: plain TCP to the upstream).
 */
function socksServers(ctx, hash) {
  const mapgate = (name, service, auth) => ({
    key: name,
    auth,
    available: () => (fs.existsSync(ctx.CLI) ? true : 'dist/cli.js missing: run npm run build'),
    start(l, up) {
      return { children: [startMapgate(ctx, name, l, up, hash)], port: l[service] };
    },
  });
  const rows = [
    { label: 'mapgate, plain mapping (reference)', ...mapgate('mapgate-plain', 'plain', null) },
    { label: 'mapgate `protocol: socks`, auth none', ...mapgate('mapgate-socks', 'socks', 'none') },
  ];
  if (hash) rows.push({ label: 'mapgate `protocol: socks`, auth password', ...mapgate('mapgate-socks-pw', 'socksPassword', 'password') });
  rows.push({
    key: 'microsocks', label: 'microsocks', auth: 'none',
    available: () => (ctx.which('microsocks') ? true : 'microsocks not installed'),
    start(l) {
      return { children: [ctx.startProcess('microsocks', ctx.which('microsocks'), ['-i', '127.0.0.1', '-p', String(l.other)], 0)], port: l.other };
    },
  }, {
    key: 'dante', label: 'Dante (danted -N 1)', auth: 'none',
    available: () => (ctx.which('danted') ? true : 'danted not installed (dante-server)'),
    start(l) {
      const conf = path.join(ctx.WORK, 'danted.conf');
      fs.writeFileSync(conf, `logoutput: ${path.join(ctx.WORK, 'danted.log')}
internal: 127.0.0.1 port = ${l.other}
external: 127.0.0.1
socksmethod: none
clientmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {
  from: 127.0.0.0/8 to: 0.0.0.0/0
  log: error
}
socks pass {
  from: 127.0.0.0/8 to: 127.0.0.0/8
  command: connect
  log: error
}
`);
      const child = ctx.startProcess('danted', ctx.which('danted'), ['-f', conf, '-N', '1', '-p', path.join(ctx.WORK, 'danted.pid')], 0);
      return { children: [child], port: l.other };
    },
  });
  return rows;
}

/** CPU (µs) this process and `pids` used: the load side of a measurement. */
function loadMicros(ctx, pids) {
  const u = process.cpuUsage();
  return u.user + u.system + ctx.cpuMicros(pids);
}

/** The last lines a failed server wrote to stderr, for the progress output. */
function errTail(ctx, started) {
  const lines = [];
  for (const c of (started && started.children) || []) {
    try {
      const t = fs.readFileSync(path.join(ctx.WORK, `${c.benchName}.err`), 'utf8').trim().split('\n').slice(-2).join(' | ');
      if (t) lines.push(`${c.benchName}: ${t.slice(0, 300)}`);
    } catch { /* none */ }
  }
  return lines.length ? ` [${lines.join('; ')}]` : '';
}

async function measureSocks(ctx, row, up, upChild, round, results) {
  const r = results[row.key];
  const push = (k, v) => r[k].push(v);
  const [plain, socks, socksPassword, other, admin] = await ctx.freePorts(5);
  const l = { plain, socks, socksPassword, other, admin };
  let started;
  try {
    started = row.start(l, up);
    await ctx.waitPort(started.port, 15_000, started.children);
    await sleep(200);
    const dead = started.children.find((c) => c.exited);
    if (dead) throw new Error(`${dead.benchName} exited (${dead.exitInfo})`);
  } catch (err) {
    ctx.log(`  ${row.key}: did not start: ${err.message}${errTail(ctx, started)}`);
    for (const k of ['conn', 'cpu', 'load', 'proxyCore', 'tp1']) push(k, null);
    if (started) await ctx.stopProcesses(started.children);
    return;
  }
  const pids = started.children.map((c) => c.pid);
  const steps = [...script(row.auth, up), HELLO];
  try {
    // One connection first: a server that refuses or garbles says so here, not as 0 conn/s.
    const check = await connLoop(started.port, steps, 1, 0.05);
    if (check.completed + check.late === 0) throw new Error(`a first connection failed: ${JSON.stringify(check.errors)}`);
    await connLoop(started.port, steps, SOCKS_CLIENTS, ctx.D.warmSecs); // warm-up (JIT, process pools)

    try {
      const gbit = await download(started.port, script(row.auth, up), ctx.D.iperfSecs);
      push('tp1', gbit);
      ctx.log(`  ${row.key.padEnd(16)} 1-stream download          ${gbit.toFixed(2)} Gbit/s`);
    } catch (err) {
      push('tp1', null);
      ctx.log(`  ${row.key} download: ${err.message}`);
    }
    await sleep(300);

    const cpu0 = ctx.cpuMicros(pids);
    const load0 = loadMicros(ctx, [upChild.pid]);
    const t0 = Date.now();
    const res = await connLoop(started.port, steps, SOCKS_CLIENTS, ctx.D.wrkSecs);
    // The window's CPU includes the few in-flight connections that closed just after it.
    const cpu = ctx.cpuMicros(pids) - cpu0;
    const loadPct = ((loadMicros(ctx, [upChild.pid]) - load0) / ((Date.now() - t0) * 1000)) * 100;
    const rate = res.completed / res.secs;
    const n = res.completed + res.late;
    push('conn', res.completed > 0 ? rate : null);
    push('cpu', n > 0 ? cpu / n : null);
    push('load', loadPct);
    push('proxyCore', (cpu / ((Date.now() - t0) * 1000)) * 100);
    const errs = Object.entries(res.errors).map(([k, v]) => `${k} ${v}`).join(', ');
    ctx.log(`  ${row.key.padEnd(16)} conn/s (${SOCKS_CLIENTS} clients)          ${rate.toFixed(0)}, ${n > 0 ? (cpu / n).toFixed(0) : '–'} µs CPU/conn, load core ${loadPct.toFixed(0)}%${errs ? ` (errors: ${errs})` : ''}`);
    const dead = started.children.find((c) => c.exited);
    if (dead) ctx.log(`  ${row.key}: ${dead.benchName} exited (${dead.exitInfo}) during round ${round}`);
  } catch (err) {
    ctx.log(`  ${row.key}: ${err.message}${errTail(ctx, started)}`);
    for (const k of ['conn', 'cpu', 'load', 'proxyCore', 'tp1']) if (r[k].length < round) push(k, null);
  } finally {
    await ctx.stopProcesses(started.children);
  }
}

async function benchSocks(ctx) {
  const { hash, why } = passwordHash(ctx);
  if (!hash) ctx.log(`skip mapgate-socks-pw: ${why}`);
  const [upPort] = await ctx.freePorts(1);
  const upChild = ctx.startProcess('proto-upstream', process.execPath, [__filename, '--upstream', String(upPort)], 1);
  await ctx.waitPort(upPort, 10_000, upChild);
  const rows = [];
  for (const row of socksServers(ctx, hash)) {
    const ok = row.available();
    if (ok === true) rows.push(row);
    else ctx.log(`skip ${row.key}: ${ok}`);
  }
  const results = {};
  for (const row of rows) results[row.key] = { conn: [], cpu: [], load: [], proxyCore: [], tp1: [] };
  const mapgateRows = rows.some((r) => r.key === 'mapgate-plain') && rows.some((r) => r.key === 'mapgate-socks');
  const servers = mapgateRows ? pairedServers(ctx, hash) : [];
  const paired = Object.fromEntries(servers.map((p) => [p.key, { ratio: [], plainCpu: [], socksCpu: [] }]));
  try {
    for (let round = 1; round <= ctx.D.rounds; round++) {
      ctx.log(`socks round ${round} of ${ctx.D.rounds}`);
      for (const row of rows) await measureSocks(ctx, row, upPort, upChild, round, results);
      for (const server of servers) await measurePaired(ctx, server, upPort, paired[server.key]);
    }
  } finally {
    await ctx.stopProcesses([upChild]);
  }
  return { rows, results, paired: mapgateRows ? paired : null, passwordSkipped: hash ? null : why };
}

/**
 * The servers measured paired: one process serving a plain forward and SOCKS5 to the same
 * upstream. mapgate, and bare-proxy.js's plain forward with its least SOCKS5 (pipe() for both):
 * the SOCKS ÷ plain ratio Node itself reaches, with nothing but the protocol's extra round trips.
 */
function pairedServers(ctx, hash) {
  return [
    {
      key: 'mapgate',
      start(p, upPort) {
        return startMapgate(ctx, 'mapgate-paired', p, upPort, hash);
      },
    },
    {
      key: 'bare',
      start(p, upPort) {
        return ctx.startProcess('bare-paired', process.execPath, [path.join(__dirname, 'bare-proxy.js'), `${p.plain}:127.0.0.1:${upPort}`, `socks:${p.socks}`], 0);
      },
    },
  ];
}

/**
 * The SOCKS ÷ plain ratio measured so that load from outside the bench cancels out: one process
 * with both services (`server`, of pairedServers), warmed up on both, then 1-s slices
 * alternating plain and SOCKS (ABBA order), D.wrkSecs of each; per-service conn/s and CPU
 * µs/conn over its slices.
 */
async function measurePaired(ctx, server, upPort, paired) {
  const [plain, socks, socksPassword, admin] = await ctx.freePorts(4);
  const child = server.start({ plain, socks, socksPassword, admin }, upPort);
  const stepsOf = { plain: [HELLO], socks: [...script('none', upPort), HELLO] };
  const portOf = { plain, socks };
  const sum = { plain: { n: 0, secs: 0, cpu: 0 }, socks: { n: 0, secs: 0, cpu: 0 } };
  try {
    await ctx.waitPort(plain, 15_000, child);
    await ctx.waitPort(socks, 15_000, child);
    for (const k of ['plain', 'socks']) await connLoop(portOf[k], stepsOf[k], SOCKS_CLIENTS, ctx.D.warmSecs);
    for (let i = 0; i < ctx.D.wrkSecs * 2; i++) {
      const k = (i % 4 === 0 || i % 4 === 3) ? 'plain' : 'socks';
      const cpu0 = ctx.cpuMicros([child.pid]);
      const r = await connLoop(portOf[k], stepsOf[k], SOCKS_CLIENTS, 1);
      sum[k].cpu += ctx.cpuMicros([child.pid]) - cpu0;
      sum[k].n += r.completed;
      sum[k].secs += r.secs;
      sum[k].all = (sum[k].all || 0) + r.completed + r.late;
      if (Object.keys(r.errors).length) ctx.log(`  paired ${server.key} ${k} slice ${i}: errors ${JSON.stringify(r.errors)}`);
    }
    if (child.exited) throw new Error(`${child.benchName} exited (${child.exitInfo})`);
    const rate = (k) => sum[k].n / sum[k].secs;
    const cpu = (k) => (sum[k].all ? sum[k].cpu / sum[k].all : null);
    const ratio = sum.plain.n > 0 ? rate('socks') / rate('plain') : null;
    paired.ratio.push(ratio);
    paired.plainCpu.push(cpu('plain'));
    paired.socksCpu.push(cpu('socks'));
    ctx.log(`  paired ${server.key.padEnd(7)} (one process, alternating 1-s slices): plain ${rate('plain').toFixed(0)} conn/s at ${cpu('plain').toFixed(0)} µs, socks ${rate('socks').toFixed(0)} conn/s at ${cpu('socks').toFixed(0)} µs: socks ÷ plain ${ratio === null ? '–' : ratio.toFixed(2)}`);
  } catch (err) {
    ctx.log(`  paired ${server.key}: ${err.message}${errTail(ctx, { children: [child] })}`);
    paired.ratio.push(null);
    paired.plainCpu.push(null);
    paired.socksCpu.push(null);
  } finally {
    await ctx.stopProcesses([child]);
  }
}

// ---------------------------------------------------------------------------------------------
// FTP

/** Resolves once something accepts on host:port; throws if one of `watch` exits first. */
async function waitHostPort(ctx, host, port, timeoutMs, watch) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const dead = watch.find((c) => c.exited);
    if (dead) throw new Error(`${dead.benchName} exited (${dead.exitInfo}): see ${path.join(ctx.WORK, dead.benchName + '.err')}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, host);
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
}

/** A port free on `host` now (vsftpd cannot report a port-0 bind back). */
function freePortOn(host) {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** vsftpd on 127.0.0.2, anonymous, read-only, with a sparse 1 GiB file (and a 64 MiB one for warm-up). */
async function startVsftpd(ctx) {
  const vsftpd = ctx.which('vsftpd');
  const dir = path.join(ctx.WORK, 'ftp');
  const root = path.join(dir, 'root');
  const empty = path.join(dir, 'empty');
  // The sessions run as Debian's `ftp` user: every directory on the way must be searchable.
  fs.chmodSync(ctx.WORK, 0o755);
  for (const d of [dir, root, empty]) fs.mkdirSync(d, { mode: 0o755 });
  for (const [name, size] of [['1G.bin', FTP_FILE_BYTES], ['warm.bin', FTP_WARM_BYTES]]) {
    const f = path.join(root, name);
    fs.closeSync(fs.openSync(f, 'w', 0o644));
    fs.truncateSync(f, size); // sparse: reads are zero pages, no disk
  }
  const port = await freePortOn(FTP_HOST);
  const pasvMin = 41000 + Math.floor(Math.random() * 20) * 1000 + 500;
  const conf = path.join(dir, 'vsftpd.conf');
  fs.writeFileSync(conf, [
    'listen=YES', 'listen_ipv6=NO', `listen_address=${FTP_HOST}`, `listen_port=${port}`, 'background=NO',
    'anonymous_enable=YES', 'local_enable=NO', `anon_root=${root}`, 'no_anon_password=YES', 'write_enable=NO',
    'pasv_enable=YES', `pasv_min_port=${pasvMin}`, `pasv_max_port=${pasvMin + 499}`, 'port_enable=YES',
    'pasv_promiscuous=NO', 'port_promiscuous=NO', 'connect_from_port_20=NO',
    'seccomp_sandbox=NO', `secure_chroot_dir=${empty}`, 'ssl_enable=NO',
    'xferlog_enable=NO', 'syslog_enable=NO', `vsftpd_log_file=${path.join(dir, 'vsftpd.log')}`,
    'accept_timeout=10', 'connect_timeout=10', 'idle_session_timeout=120', 'data_connection_timeout=120',
    '',
  ].join('\n'), { mode: 0o600 });
  const child = ctx.startProcess('vsftpd', vsftpd, [conf], 1);
  await waitHostPort(ctx, FTP_HOST, port, 10_000, [child]);
  return { child, port };
}

/** curl -o /dev/null of `url` on core 1: { bytes, secs, gbit }. EPSV is curl's default. */
async function curlDownload(ctx, url, expectBytes) {
  const out = await ctx.run('curl', ['-sS', '-o', '/dev/null', '--max-time', '180', '-w', '%{size_download} %{time_total} %{time_pretransfer}', url], 1, 200_000);
  const [bytes, total, pre] = out.trim().split(/\s+/).map(Number);
  if (bytes !== expectBytes) throw new Error(`curl got ${bytes} of ${expectBytes} bytes`);
  // From the data transfer's start (after login, EPSV and RETR), so the figure is the stream's.
  const secs = total - pre > 0 ? total - pre : total;
  return { bytes, secs, total, gbit: (bytes * 8) / secs / 1e9 };
}

async function metricBytes(ctx, adminPort) {
  try {
    const http = require('node:http');
    const body = await new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: adminPort, path: '/metrics', agent: false, timeout: 5000 }, (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (b += d));
        res.on('end', () => resolve(b));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
    });
    let to = 0;
    for (const m of body.matchAll(/^mapgate_bytes_total\{[^}]*direction="to_client"[^}]*\} (\d+)/gm)) to += Number(m[1]);
    return to;
  } catch (err) {
    ctx.log(`mapgate /metrics: ${err.message}`);
    return null;
  }
}

async function benchFtp(ctx) {
  const results = { direct: { gbit: [] }, mapgate: { gbit: [], cpuSecs: [], cpuPct: [] } };
  const skip = (why) => { ctx.log(`skip ftp: ${why}`); return { results, skipped: why }; };
  if (!ctx.which('vsftpd')) return skip('vsftpd not installed');
  if (!ctx.which('curl')) return skip('curl not installed');
  if (!fs.existsSync(ctx.CLI)) return skip('dist/cli.js missing: run npm run build');
  let ftpd;
  try {
    ftpd = await startVsftpd(ctx);
  } catch (err) {
    return skip(`vsftpd did not start: ${err.message}`);
  }
  ctx.log(`vsftpd on ${FTP_HOST}:${ftpd.port}, 1 GiB sparse file`);
  const direct = `ftp://${FTP_HOST}:${ftpd.port}/`;
  try {
    // Once, not recorded: the first read of the sparse file fills the page cache with its
    // zero pages (a first direct download runs at a quarter of the later ones' speed).
    await curlDownload(ctx, direct + '1G.bin', FTP_FILE_BYTES).catch((err) => ctx.log(`  ftp warm-up: ${err.message}`));
    for (let round = 1; round <= ctx.D.rounds; round++) {
      ctx.log(`ftp round ${round} of ${ctx.D.rounds}`);
      try {
        const d = await curlDownload(ctx, direct + '1G.bin', FTP_FILE_BYTES);
        results.direct.gbit.push(d.gbit);
        ctx.log(`  ftp direct        1 GiB in ${d.secs.toFixed(2)} s: ${d.gbit.toFixed(2)} Gbit/s`);
      } catch (err) {
        results.direct.gbit.push(null);
        ctx.log(`  ftp direct: ${err.message}`);
      }
      const [port, admin] = await ctx.freePorts(2);
      const conf = path.join(ctx.WORK, 'mapgate-ftp.yaml');
      fs.writeFileSync(conf, `admin:
  listen: 127.0.0.1:${admin}
log:
  events: ${path.join(ctx.WORK, 'mapgate-ftp-events.jsonl')}
shutdownGrace: 1s
defaults:
  connectTimeout: 5s
  idleTimeout: 30m
services:
  - name: ftp
    port: ${port}
    bind: [127.0.0.1]
    protocol: ftp
    destination: ${FTP_HOST}:${ftpd.port}
`);
      const gw = ctx.startProcess('mapgate-ftp', process.execPath, [...ctx.mapgateNodeFlags(), ctx.CLI, 'run', '-c', conf], 0);
      try {
        await ctx.waitPort(port, 15_000, gw);
        const url = `ftp://127.0.0.1:${port}/`;
        await curlDownload(ctx, url + 'warm.bin', FTP_WARM_BYTES); // warm-up
        const before = ctx.cpuMicros([gw.pid]);
        const bytesBefore = await metricBytes(ctx, admin);
        const t0 = Date.now();
        const m = await curlDownload(ctx, url + '1G.bin', FTP_FILE_BYTES);
        const cpu = (ctx.cpuMicros([gw.pid]) - before) / 1e6;
        const wall = (Date.now() - t0) / 1000;
        const bytesAfter = await metricBytes(ctx, admin);
        results.mapgate.gbit.push(m.gbit);
        results.mapgate.cpuSecs.push(cpu);
        results.mapgate.cpuPct.push((cpu / wall) * 100);
        const through = bytesBefore !== null && bytesAfter !== null ? `; mapgate_bytes_total to_client +${((bytesAfter - bytesBefore) / 1024 ** 3).toFixed(2)} GiB` : '';
        ctx.log(`  ftp mapgate       1 GiB in ${m.secs.toFixed(2)} s: ${m.gbit.toFixed(2)} Gbit/s, gateway CPU ${cpu.toFixed(2)} s (${((cpu / wall) * 100).toFixed(0)}% of a core)${through}`);
      } catch (err) {
        for (const k of ['gbit', 'cpuSecs', 'cpuPct']) if (results.mapgate[k].length < round) results.mapgate[k].push(null);
        ctx.log(`  ftp mapgate: ${err.message}`);
      } finally {
        await ctx.stopProcesses([gw]);
      }
    }
  } finally {
    await ctx.stopProcesses([ftpd.child]);
  }
  return { results, skipped: null };
}

// ---------------------------------------------------------------------------------------------
// Report

function median(values) {
  const v = values.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

function range(values, fmt) {
  const v = values.filter((x) => x !== null && Number.isFinite(x));
  return v.length > 1 ? `${fmt(Math.min(...v))}–${fmt(Math.max(...v))}` : '';
}

const kfmt = (v) => (v >= 1000 ? `${(v / 1000).toFixed(2)}k` : v.toFixed(0));

function socksTable(ctx, s) {
  const lines = [];
  const plain = s.results['mapgate-plain'];
  const plainConn = plain ? median(plain.conn) : null;
  lines.push(`SOCKS5: a connection = connect, SOCKS5 handshake (no auth, or an RFC 1929 login), CONNECT 127.0.0.1, a 1-byte request and its answer, the upstream's close; ${SOCKS_CLIENTS} clients at a time for ${ctx.D.wrkSecs} s. Download: one stream for ${ctx.D.iperfSecs} s. CPU µs/conn: the server's utime + stime over the conn/s run ÷ connections; × plain by CPU = the plain mapping's µs ÷ this row's (the rate ratio on a core the server had to itself). Core %: the server's (core 0) / the clients' and the upstream's (core 1) over the conn/s run; a server below 100% was not CPU-bound (other jobs on the machine, or the load side).`);
  lines.push('');
  lines.push(`| SOCKS5 server | conn/s (${SOCKS_CLIENTS} clients) | × plain mapping | CPU µs/conn | × plain by CPU | 1-stream download Gbit/s | core % server / load |`);
  lines.push('|---|---:|---:|---:|---:|---:|---:|');
  const plainCpu = plain ? median(plain.cpu) : null;
  for (const row of s.rows) {
    const r = s.results[row.key];
    const c = median(r.conn);
    const cpu = median(r.cpu);
    const cell = (v, f) => (v === null ? 'fail' : f(v));
    const pct = (v) => (v === null ? '–' : v.toFixed(0));
    lines.push(`| ${row.label} | ${cell(c, kfmt)} | ${c !== null && plainConn ? `${(c / plainConn).toFixed(2)}×` : '–'} | ${cell(cpu, (v) => v.toFixed(0))} | ${cpu && plainCpu ? `${(plainCpu / cpu).toFixed(2)}×` : '–'} | ${cell(median(r.tp1), (v) => v.toFixed(2))} | ${pct(median(r.proxyCore))} / ${pct(median(r.load))} |`);
  }
  lines.push('');
  const socks = s.results['mapgate-socks'];
  const check = (v) => (v === null ? '✗ (no result)' : v >= 0.85 ? '✓' : '✗');
  lines.push("Issue 11's target: mapgate's SOCKS5 (auth none) connection rate within 15 % of the plain mapping's (≥ 0.85×).");
  lines.push('');
  if (s.paired) {
    const figures = (p) => ({ ratio: median(p.ratio), rounds: range(p.ratio, (v) => v.toFixed(2)), plainCpu: median(p.plainCpu), socksCpu: median(p.socksCpu) });
    const m = figures(s.paired.mapgate);
    const b = figures(s.paired.bare);
    const cpuText = (f) => `CPU per connection ${f.plainCpu === null ? '–' : f.plainCpu.toFixed(0)} µs plain, ${f.socksCpu === null ? '–' : f.socksCpu.toFixed(0)} µs SOCKS`;
    lines.push(`- paired (one mapgate process serving both, 1-s slices alternating plain and SOCKS, ABBA, ${ctx.D.wrkSecs} s of each, so outside load falls on both alike): SOCKS ÷ plain **${m.ratio === null ? '–' : m.ratio.toFixed(3)}**${m.rounds ? ` (rounds ${m.rounds})` : ''} ${check(m.ratio)}; ${cpuText(m)}: by CPU ${m.plainCpu && m.socksCpu ? `${(m.plainCpu / m.socksCpu).toFixed(3)} ${check(m.plainCpu / m.socksCpu)}` : '–'}`);
    lines.push(`- the floor in Node, paired the same way: \`bare-proxy.js\` serving its plain forward and its least SOCKS5 (the greeting, the method reply, CONNECT, the reply; pipe() for both) reaches SOCKS ÷ plain **${b.ratio === null ? '–' : b.ratio.toFixed(3)}**${b.rounds ? ` (rounds ${b.rounds})` : ''}; ${cpuText(b)}, i.e. ${b.plainCpu && b.socksCpu ? (b.socksCpu - b.plainCpu).toFixed(0) : '–'} µs for the handshake's two extra reads and writes (mapgate: ${m.plainCpu && m.socksCpu ? (m.socksCpu - m.plainCpu).toFixed(0) : '–'})`);
  }
  if (socks && plainConn) {
    // Per round too: the plain mapping and SOCKS rows run a minute apart at most.
    const perRound = socks.conn.map((v, i) => (v !== null && plain.conn[i] ? v / plain.conn[i] : null));
    const ratio = median(socks.conn) !== null ? median(socks.conn) / plainConn : null;
    const rr = range(perRound, (v) => v.toFixed(2));
    lines.push(`- the rows' medians (separate processes, measured up to a minute apart: the noisiest): ${ratio === null ? 'no result' : `${ratio.toFixed(3)}`}${rr ? ` (rounds ${rr})` : ''} ${check(ratio)}`);
    const pw = s.results['mapgate-socks-pw'];
    if (pw && median(pw.conn) !== null) lines.push(`- auth password (a remembered login: an HMAC, not an scrypt, per connection; not part of the target): ${(median(pw.conn) / plainConn).toFixed(2)}× the plain mapping`);
  }
  if (s.passwordSkipped) lines.push(`- the auth password row is missing: ${s.passwordSkipped}`);
  return lines.join('\n') + '\n';
}

function ftpTable(ctx, f) {
  if (f.skipped) return `FTP: not measured (${f.skipped}).\n`;
  const d = median(f.results.direct.gbit);
  const m = median(f.results.mapgate.gbit);
  const cell = (v, fm) => (v === null ? 'fail' : fm(v));
  const lines = [];
  lines.push(`FTP: \`curl -o /dev/null\` of a 1 GiB (sparse) file from vsftpd on ${FTP_HOST}, EPSV; Gbit/s from the transfer's start (curl's time_total − time_pretransfer). Gateway CPU: mapgate's utime + stime over the download.`);
  lines.push('');
  lines.push('| FTP 1 GiB download | Gbit/s | × direct | gateway CPU s | gateway CPU % of a core |');
  lines.push('|---|---:|---:|---:|---:|');
  lines.push(`| vsftpd direct (reference) | ${cell(d, (v) => v.toFixed(2))} | 1.00× | – | – |`);
  lines.push(`| through mapgate \`protocol: ftp\` | ${cell(m, (v) => v.toFixed(2))} | ${m !== null && d ? `${(m / d).toFixed(2)}×` : '–'} | ${cell(median(f.results.mapgate.cpuSecs), (v) => v.toFixed(2))} | ${cell(median(f.results.mapgate.cpuPct), (v) => v.toFixed(0))} |`);
  return lines.join('\n') + '\n';
}

/**
 * Runs the protocol rows named in `keys` (of PROTOCOL_KEYS) with bench.js's helpers in `ctx`:
 * { D, WORK, CLI, log, which, run, startProcess, stopProcesses, freePorts, waitPort, cpuMicros,
 * mapgateNodeFlags }. Resolves the markdown to print and the raw figures.
 */
async function benchProtocols(ctx, keys) {
  const out = [];
  const raw = {};
  if (keys.includes('socks')) {
    const s = await benchSocks(ctx);
    for (const row of s.rows) {
      for (const [k, f] of [['conn', kfmt], ['tp1', (v) => v.toFixed(2)]]) {
        const rg = range(s.results[row.key][k], f);
        if (rg) ctx.log(`range ${row.key.padEnd(16)} ${k === 'conn' ? 'conn/s' : 'download Gbit/s'} ${rg}`);
      }
    }
    raw.socks = { ...s.results, paired: s.paired };
    out.push(socksTable(ctx, s));
  }
  if (keys.includes('ftp')) {
    const f = await benchFtp(ctx);
    raw.ftp = f.results;
    out.push(ftpTable(ctx, f));
  }
  return { markdown: out.join('\n'), raw };
}

module.exports = { PROTOCOL_KEYS, benchProtocols };

// ---------------------------------------------------------------------------------------------
// `node protocols.js --upstream PORT`: the SOCKS rows' upstream, on the load generators' core.
// A client whose first byte is "H" gets "h" and the upstream's close (it closes first, as nginx
// does under wrk's Connection: close); one whose first byte is "S" gets an endless stream of
// 64 KiB writes, with backpressure.

if (require.main === module) {
  const args = process.argv.slice(2);
  if (args[0] !== '--upstream' || !(Number(args[1]) > 0)) {
    process.stderr.write('usage: protocols.js --upstream PORT\n');
    process.exit(2);
  }
  const CHUNK = Buffer.alloc(64 * 1024, 'x');
  const H = Buffer.from('h');
  const server = net.createServer(function onClient(socket) {
    socket.on('error', function onError() { socket.destroy(); });
    socket.once('data', function onFirst(buf) {
      if (buf[0] === 0x48 /* H */) socket.end(H);
      else if (buf[0] === 0x53 /* S */) {
        const pump = () => { while (!socket.destroyed && socket.write(CHUNK)); };
        socket.on('drain', pump);
        pump();
      } else socket.destroy();
    });
  });
  server.on('error', (err) => { process.stderr.write(`protocols upstream: ${err.message}\n`); process.exit(1); });
  server.listen({ port: Number(args[1]), host: '127.0.0.1', backlog: 4096 }, () => process.stdout.write('ready\n'));
}
