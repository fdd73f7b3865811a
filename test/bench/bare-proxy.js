#!/usr/bin/env node
'use strict';
// The baseline every Node TCP proxy is measured against: net + pipe(), nothing else.
// Usage: node bare-proxy.js LISTEN_PORT:TARGET_HOST:TARGET_PORT [...]  (listens on 127.0.0.1)
// Errors on either leg destroy both (pipe() alone would leak the peer, see node-http-proxy #559).
const net = require('node:net');

function forward(listenPort, host, port) {
  const server = net.createServer({ allowHalfOpen: true }, function onClient(client) {
    const upstream = net.connect({ host, port, allowHalfOpen: true });
    function destroyBoth() { client.destroy(); upstream.destroy(); }
    client.on('error', destroyBoth);
    upstream.on('error', destroyBoth);
    client.on('close', function onClientClose() { upstream.destroySoon(); });
    upstream.on('close', function onUpstreamClose() { client.destroySoon(); });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.on('error', function onServerError(err) {
    process.stderr.write(`bare-proxy: ${listenPort}: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(listenPort, '127.0.0.1');
}

const specs = process.argv.slice(2);
if (specs.length === 0) {
  process.stderr.write('usage: bare-proxy.js LISTEN_PORT:TARGET_HOST:TARGET_PORT ...\n');
  process.exit(2);
}
// Exit normally on SIGINT so `node --cpu-prof` writes its profile.
process.on('SIGINT', function onSigint() { process.exit(0); });
for (const spec of specs) {
  const [listenPort, host, port] = spec.split(':');
  forward(Number(listenPort), host, Number(port));
}
