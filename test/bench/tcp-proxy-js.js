#!/usr/bin/env node
'use strict';
// The npm package `tcp-proxy.js` as a bench row: one TCPProxy per forward, no interceptors.
// Usage: node tcp-proxy-js.js LISTEN_PORT:TARGET_HOST:TARGET_PORT [...]  (listens on 127.0.0.1)
// The package is installed by bench.js into test/bench/.peers (not a project dependency).
const path = require('node:path');

const PEERS = path.join(__dirname, '.peers');
const TCPProxy = require(require.resolve('tcp-proxy.js', { paths: [PEERS] }));

const specs = process.argv.slice(2);
if (specs.length === 0) {
  process.stderr.write('usage: tcp-proxy-js.js LISTEN_PORT:TARGET_HOST:TARGET_PORT ...\n');
  process.exit(2);
}
// Exit normally on SIGINT so `node --cpu-prof` writes its profile.
process.on('SIGINT', function onSigint() { process.exit(0); });
for (const spec of specs) {
  const [listenPort, host, port] = spec.split(':');
  const proxy = new TCPProxy({ host: '127.0.0.1', port: Number(listenPort) });
  proxy.createProxy({ forwardHost: host, forwardPort: Number(port) }).catch(function onListenError(err) {
    process.stderr.write(`tcp-proxy-js: ${listenPort}: ${err.message}\n`);
    process.exit(1);
  });
}
