#!/usr/bin/env node
'use strict';
// The npm package `node-tcp-proxy` as a bench row: createProxy(port, host, port), quiet.
// Usage: node node-tcp-proxy.js LISTEN_PORT:TARGET_HOST:TARGET_PORT [...]  (listens on 127.0.0.1)
// The package is installed by bench.js into test/bench/.peers (not a project dependency).
const path = require('node:path');

const PEERS = path.join(__dirname, '.peers');
const { createProxy } = require(require.resolve('node-tcp-proxy', { paths: [PEERS] }));

const specs = process.argv.slice(2);
if (specs.length === 0) {
  process.stderr.write('usage: node-tcp-proxy.js LISTEN_PORT:TARGET_HOST:TARGET_PORT ...\n');
  process.exit(2);
}
// Exit normally on SIGINT so `node --cpu-prof` writes its profile.
process.on('SIGINT', function onSigint() { process.exit(0); });
for (const spec of specs) {
  const [listenPort, host, port] = spec.split(':');
  const proxy = createProxy(Number(listenPort), host, Number(port), { hostname: '127.0.0.1', quiet: true });
  // The package attaches no 'error' listener to its server: a bind failure would be an
  // uncaught exception with a stack trace instead of a line saying which port.
  proxy.server.on('error', function onServerError(err) {
    process.stderr.write(`node-tcp-proxy: ${listenPort}: ${err.message}\n`);
    process.exit(1);
  });
}
