#!/usr/bin/env node
'use strict';
// Many concurrent clients for the stress tests, run as their own process (a test process could
// not hold 10,000 sockets next to everything else within its descriptor limit).
//   node clients.js PORT COUNT BATCH DEADLINE_MS
// Opens COUNT connections to 127.0.0.1:PORT, BATCH at a time; each sends a 16-byte token and
// must get it echoed before the next batch starts. Then prints
//   open {"ok", "failed", "errors", "ms"}
// and holds every connection open, reading commands on stdin:
//   echo    every open connection sends a second token and must get it echoed (all still open);
//           answers echoed {"ok", "failed", "errors", "ms"}
//   close   every connection half-closes (FIN) and waits for the gateway to close it;
//           answers closed {"ok", "failed", "early", "ms"}
// Each phase is bounded by DEADLINE_MS; what has not finished by then counts as failed.
const net = require('node:net');
const readline = require('node:readline');

const [port, count, batch, deadlineMs] = process.argv.slice(2).map(Number);
const TOKEN_BYTES = 16;

function token(i, round) {
  return `${round}${String(i).padStart(TOKEN_BYTES - 2, '0')}\n`;
}

const errors = {};
let closedEarly = 0;
let closing = false;

/** One client connection: what it was sent, what came back, and who waits for the rest. */
class Client {
  constructor(i) {
    this.i = i;
    this.sent = '';
    this.got = '';
    this.waiter = null;
    this.closed = null;
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.socket.setEncoding('latin1');
    this.socket.on('data', (d) => {
      this.got += d;
      this.check();
    });
    this.socket.on('error', (err) => {
      errors[err.code || 'error'] = (errors[err.code || 'error'] || 0) + 1;
    });
    this.closedPromise = new Promise((resolve) => this.socket.once('close', resolve));
    this.socket.once('close', () => {
      if (!closing) closedEarly++;
      this.settle(false);
    });
  }

  /** Sends a token; resolves true once it came back intact, false if the socket closed first. */
  send(round) {
    const t = token(this.i, round);
    this.sent += t;
    const p = new Promise((resolve) => (this.waiter = resolve));
    this.socket.write(t);
    return p;
  }

  check() {
    if (this.got.length >= this.sent.length) this.settle(this.got === this.sent);
  }

  settle(ok) {
    const w = this.waiter;
    this.waiter = null;
    if (w) w(ok);
  }
}

/** Resolves each promise's value, or `fallback` for those still pending at `deadline`. */
function bounded(promises, fallback, deadline) {
  let timer;
  const left = Math.max(0, deadline - Date.now());
  const timeout = new Promise((resolve) => (timer = setTimeout(resolve, left)));
  const settled = promises.map(() => fallback);
  const all = Promise.all(promises.map((p, i) => p.then((v) => (settled[i] = v))));
  return Promise.race([all, timeout]).then(() => {
    clearTimeout(timer);
    return settled;
  });
}

const clients = [];

async function open() {
  const t0 = Date.now();
  const deadline = t0 + deadlineMs;
  let ok = 0;
  for (let start = 0; start < count && Date.now() < deadline; start += batch) {
    const group = [];
    for (let i = start; i < Math.min(count, start + batch); i++) {
      const c = new Client(i);
      clients.push(c);
      group.push(c.send('a'));
    }
    const results = await bounded(group, false, deadline);
    ok += results.filter(Boolean).length;
  }
  report('open', { ok, failed: count - ok, errors, ms: Date.now() - t0 });
}

async function echo() {
  const t0 = Date.now();
  const results = await bounded(clients.map((c) => c.send('b')), false, t0 + deadlineMs);
  const ok = results.filter(Boolean).length;
  report('echoed', { ok, failed: count - ok, errors, ms: Date.now() - t0 });
}

async function close() {
  const t0 = Date.now();
  closing = true;
  for (const c of clients) c.socket.end();
  const results = await bounded(clients.map((c) => c.closedPromise.then(() => true)), false, t0 + deadlineMs);
  const ok = results.filter(Boolean).length;
  report('closed', { ok, failed: count - ok, early: closedEarly, ms: Date.now() - t0 });
}

function report(what, fields) {
  process.stdout.write(`${what} ${JSON.stringify(fields)}\n`);
}

let queue = open();
readline.createInterface({ input: process.stdin }).on('line', function onCommand(line) {
  const cmd = line.trim();
  if (cmd === 'echo') queue = queue.then(echo);
  else if (cmd === 'close') queue = queue.then(close);
});
process.stdin.on('end', function onStdinEnd() { process.exit(0); });
