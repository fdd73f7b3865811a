#!/usr/bin/env node
'use strict';
/**
 * What each thing mapgate does per connection costs in CPU, beyond the bare Node proxy (issue 13).
 *
 *   node test/bench/conn-cost.js [--conns N] [--rounds R] [--paired]      (npm run build first)
 *
 * Runs the bare proxy and mapgate in several configurations, one at a time, each pinned to core 0,
 * and drives N short connections through each (32 at a time, from core 1): the upstream writes
 * 2 bytes and closes, the client reads them and closes. CPU µs per connection is the proxy's
 * utime + stime from /proc/PID/stat over the run ÷ N; the table shows the median of R rounds,
 * each configuration measured afresh in every round, in turn, so drift hits all of them alike.
 * The difference between two rows is what the feature between them costs.
 */
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');
const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : dflt; };
const CONNS = opt('--conns', 20000);
const ROUNDS = opt('--rounds', 3);
const PAIRED = args.includes('--paired');
const PAIRED_SLICE = 1000;
const CONCURRENCY = 32;
const PIN = os.cpus().length >= 2;
const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'mapgate-conn-cost-'));

if (PIN) execFileSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' });

/** The mapgate configurations, from all features on down; `service` is its one service's YAML. */
function mapgateConfigs(port, upstream) {
  const base = (events, service, extra = '') => `admin: { listen: "127.0.0.1:0" }
log: { events: ${events} }
${extra}services:
  - name: s
    port: ${port}
    bind: [127.0.0.1]
    destination: 127.0.0.1:${upstream}
${service}`;
  const rules = `    mappings:
      - { source: [192.0.2.0/24], action: reject }
      - { user: bench, destination: "127.0.0.1:${upstream}" }
`;
  const users = 'users:\n  bench: { sources: [127.0.0.0/8] }\n';
  return [
    { key: 'mapgate', title: 'mapgate, all on (bench config: users, 2 rules, events to a file, metrics)', yaml: base(path.join(WORK, 'events.jsonl'), rules, users) },
    { key: 'no-events', title: '  − events (log.events: off)', yaml: base('off', rules, users) },
    { key: 'no-rules', title: '  − users and rules (the default destination)', yaml: base('off', '') },
  ];
}

function cpuTicks(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function waitPort(port, ms) {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(); });
      s.once('error', () => { s.destroy(); if (Date.now() > deadline) reject(new Error(`port ${port} never opened`)); else setTimeout(attempt, 50); });
    };
    attempt();
  });
}

/** N connections through `port`, CONCURRENCY at a time; resolves with how many completed. */
function drive(port, n) {
  return new Promise((resolve) => {
    let started = 0;
    let done = 0;
    let ok = 0;
    const one = () => {
      if (started >= n) return;
      started++;
      const s = net.connect(port, '127.0.0.1');
      let got = 0;
      s.on('data', (d) => { got += d.length; });
      s.on('error', () => {});
      s.on('close', () => {
        if (got === 2) ok++;
        if (++done === n) resolve(ok);
        else one();
      });
      s.on('end', () => s.end());
    };
    for (let i = 0; i < CONCURRENCY; i++) one();
  });
}

/** Starts one configuration's proxy, pinned to core 0, and waits for its port. */
async function start(entry, upstream) {
  const port = await freePort();
  let argv;
  if (entry.key === 'bare') argv = [path.join(__dirname, 'bare-proxy.js'), `${port}:127.0.0.1:${upstream}`];
  else {
    const conf = path.join(WORK, `${entry.key}.yaml`);
    fs.writeFileSync(conf, entry.yaml(port));
    const flags = fs.readFileSync(CLI, 'utf8').split('\n', 1)[0].split(' ').filter((w) => w.startsWith('--'));
    argv = [...flags, CLI, 'run', '-c', conf];
  }
  const cmd = PIN ? ['taskset', ['-c', '0', process.execPath, ...argv]] : [process.execPath, argv];
  const log = fs.openSync(path.join(WORK, `${entry.key}.log`), 'a');
  const child = spawn(cmd[0], cmd[1], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  };
  try {
    await waitPort(port, 10_000);
    await drive(port, 2000); // warm-up: the JIT
  } catch (err) {
    await stop();
    throw err;
  }
  return { entry, port, child, stop };
}

/** `n` connections through a started proxy: its CPU ticks and the seconds they took. */
async function slice(proc, n) {
  const before = cpuTicks(proc.child.pid);
  const t0 = process.hrtime.bigint();
  const ok = await drive(proc.port, n);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (ok !== n) throw new Error(`${proc.entry.key}: only ${ok} of ${n} connections got their bytes`);
  return { ticks: cpuTicks(proc.child.pid) - before, secs };
}

async function measure(entry, upstream) {
  const proc = await start(entry, upstream);
  try {
    const { ticks, secs } = await slice(proc, CONNS);
    return { us: (ticks * TICK_US) / CONNS, rate: CONNS / secs };
  } finally {
    await proc.stop();
  }
}

/**
 * --paired: every configuration runs at once (each idle while another is driven), and the
 * connections go to them in slices of PAIRED_SLICE, in an order that reverses every round
 * (ABC CBA ...), so load from outside the benchmark falls on all of them alike. Each one's CPU µs
 * per connection is its ticks over all its slices ÷ its connections.
 */
async function paired(entries, upstream) {
  const procs = [];
  try {
    for (const e of entries) procs.push(await start(e, upstream));
    const sum = new Map(entries.map((e) => [e.key, { ticks: 0, secs: 0, n: 0 }]));
    const slices = Math.max(1, Math.round(CONNS / PAIRED_SLICE));
    for (let r = 0; r < ROUNDS * slices; r++) {
      const order = r % 2 === 0 ? procs : [...procs].reverse();
      for (const p of order) {
        const m = await slice(p, PAIRED_SLICE);
        const t = sum.get(p.entry.key);
        t.ticks += m.ticks;
        t.secs += m.secs;
        t.n += PAIRED_SLICE;
      }
    }
    return new Map([...sum].map(([k, t]) => [k, { us: (t.ticks * TICK_US) / t.n, rate: t.n / t.secs }]));
  } finally {
    for (const p of procs) await p.stop();
  }
}

async function main() {
  const upstreamServer = net.createServer((s) => { s.on('error', () => {}); s.end('ok'); });
  await new Promise((r) => upstreamServer.listen(0, '127.0.0.1', r));
  const upstream = upstreamServer.address().port;
  const entries = [{ key: 'bare', title: 'bare Node pipe proxy' },
    ...mapgateConfigs(0, upstream).map((c) => ({ ...c, yaml: (port) => mapgateConfigs(port, upstream).find((x) => x.key === c.key).yaml }))];
  let figures;
  let how;
  if (PAIRED) {
    figures = await paired(entries, upstream);
    how = `conn-cost --paired: ${CONNS} connections × ${ROUNDS} rounds per configuration, in slices of ${PAIRED_SLICE}`;
  } else {
    const results = new Map(entries.map((e) => [e.key, []]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const e of entries) {
        const m = await measure(e, upstream);
        results.get(e.key).push(m);
        process.stderr.write(`[round ${r + 1}] ${e.key}: ${m.us.toFixed(1)} µs/conn, ${Math.round(m.rate)} conn/s\n`);
      }
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    figures = new Map([...results].map(([k, ms]) => [k, { us: median(ms.map((m) => m.us)), rate: median(ms.map((m) => m.rate)) }]));
    how = `conn-cost: ${CONNS} connections × ${ROUNDS} rounds, medians`;
  }
  upstreamServer.close();
  const bare = figures.get('bare').us;
  process.stdout.write(`${how}; ${os.cpus()[0].model}, Node ${process.version}\n\n`);
  process.stdout.write('| configuration | CPU µs/conn | × bare | conn/s |\n|---|---:|---:|---:|\n');
  for (const e of entries) {
    const { us, rate } = figures.get(e.key);
    process.stdout.write(`| ${e.title} | ${us.toFixed(1)} | ${(us / bare).toFixed(2)}× | ${Math.round(rate)} |\n`);
  }
  fs.rmSync(WORK, { recursive: true, force: true });
}

main().catch((err) => {
  process.stderr.write(`conn-cost: ${err.stack}\n`);
  process.exit(1);
});
