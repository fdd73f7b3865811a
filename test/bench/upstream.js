#!/usr/bin/env node
'use strict';
// Upstreams for the benchmark, run as their own process (pinned with the load generators).
//   --data PORT  a client that sends "H" gets "h" and is then held open and idle (idle-memory
//                test); one that sends "S" gets an endless stream, written with backpressure, so
//                only a proxy that ignores backpressure grows (slow-reader test).
//   --http PORT  fallback HTTP server answering "ok\n" (used when nginx is absent).
// Prints "ready" on stdout once every server listens.
const net = require('node:net');
const http = require('node:http');

const CHUNK = Buffer.alloc(64 * 1024, 'x');

function onDataClient(socket) {
  socket.on('error', function onError() { socket.destroy(); });
  let decided = false;
  socket.on('data', function onData(buf) {
    if (decided) return;
    decided = true;
    if (buf[0] === 0x48 /* H */) socket.write('h');
    else if (buf[0] === 0x53 /* S */) stream(socket);
  });
}

function stream(socket) {
  function pump() {
    while (!socket.destroyed && socket.write(CHUNK));
  }
  socket.on('drain', pump);
  pump();
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: '127.0.0.1', backlog: 4096 }, resolve);
  });
}

async function main() {
  const args = process.argv.slice(2);
  const waits = [];
  for (let i = 0; i < args.length; i += 2) {
    const port = Number(args[i + 1]);
    if (args[i] === '--data') {
      waits.push(listen(net.createServer(onDataClient), port));
    } else if (args[i] === '--http') {
      const body = Buffer.from('ok\n');
      const server = http.createServer(function onRequest(req, res) {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
        res.end(body);
      });
      server.keepAliveTimeout = 75_000;
      waits.push(listen(server, port));
    } else {
      throw new Error(`unknown argument ${args[i]}`);
    }
  }
  await Promise.all(waits);
  process.stdout.write('ready\n');
}

main().catch((err) => {
  process.stderr.write(`upstream: ${err.message}\n`);
  process.exit(1);
});
