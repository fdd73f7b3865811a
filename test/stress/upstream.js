#!/usr/bin/env node
'use strict';
// An upstream for the stress tests, run as its own process so the gateway's memory and
// descriptors are measured alone.
//   node upstream.js echo            every connection echoes what it gets, half-closing with its peer
//   node upstream.js stream MB       every connection gets MB megabytes of a repeating pattern
//                                    (byte i of the stream is i % 251), written as fast as
//                                    backpressure lets it, then a FIN
// Listens on 127.0.0.1 port 0 and prints "port N". A line "stats" on stdin is answered with
// "stats {open, accepted, maxOpen, sent}" (sent: bytes the stream mode handed to the kernel).
const net = require('node:net');
const readline = require('node:readline');

const [mode, mbArg] = process.argv.slice(2);
if (mode !== 'echo' && mode !== 'stream') {
  process.stderr.write('usage: upstream.js echo | stream MB\n');
  process.exit(2);
}

const PERIOD = 251;
// A whole number of periods, so every chunk starts the pattern at 0 again.
const CHUNK = Buffer.alloc(PERIOD * 256);
for (let i = 0; i < CHUNK.length; i++) CHUNK[i] = i % PERIOD;
const streamBytes = Number(mbArg || 0) * 1024 * 1024;

const stats = { open: 0, accepted: 0, maxOpen: 0, sent: 0 };

function onStreamConnection(socket) {
  let sent = 0;
  function pump() {
    while (!socket.destroyed && sent < streamBytes) {
      const n = Math.min(CHUNK.length, streamBytes - sent);
      sent += n;
      stats.sent += n;
      if (!socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return;
    }
    if (sent >= streamBytes) socket.end();
  }
  socket.on('drain', pump);
  socket.resume();
  pump();
}

const server = net.createServer({ allowHalfOpen: true }, function onConnection(socket) {
  stats.open++;
  stats.accepted++;
  stats.maxOpen = Math.max(stats.maxOpen, stats.open);
  socket.on('error', function onError() { socket.destroy(); });
  socket.on('close', function onClose() { stats.open--; });
  if (mode === 'echo') socket.pipe(socket);
  else onStreamConnection(socket);
});
server.on('error', function onServerError(err) {
  // EMFILE and the like: say so on stderr; the test sees it as missing connections.
  process.stderr.write(`upstream: ${err.code || err.message}\n`);
});
server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, function onListening() {
  process.stdout.write(`port ${server.address().port}\n`);
});

readline.createInterface({ input: process.stdin }).on('line', function onCommand(line) {
  if (line.trim() === 'stats') process.stdout.write(`stats ${JSON.stringify(stats)}\n`);
});
// The test going away (stdin closed) ends this process too.
process.stdin.on('end', function onStdinEnd() { process.exit(0); });
