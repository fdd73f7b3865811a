#!/usr/bin/env node
'use strict';
// The baseline every Node TCP proxy is measured against: net + pipe(), nothing else.
// Usage: node bare-proxy.js SPEC [...]  (listens on 127.0.0.1), SPEC one of
//   LISTEN_PORT:TARGET_HOST:TARGET_PORT  a plain forward;
//   socks:LISTEN_PORT                    the least a SOCKS5 server does (RFC 1928 CONNECT to an IPv4
//                                        address, no authentication, the bound address in the reply),
//                                        then the same pipe(): the floor of SOCKS5 in Node.
// Errors on either leg destroy both (pipe() alone would leak the peer, see node-http-proxy #559).
const net = require('node:net');

/** Relays two connected sockets with pipe(), both ways, until both close. */
function join(client, upstream) {
  function destroyBoth() { client.destroy(); upstream.destroy(); }
  client.on('error', destroyBoth);
  upstream.on('error', destroyBoth);
  client.on('close', function onClientClose() { upstream.destroySoon(); });
  upstream.on('close', function onUpstreamClose() { client.destroySoon(); });
  client.pipe(upstream);
  upstream.pipe(client);
}

function serve(listenPort, onClient) {
  const server = net.createServer({ allowHalfOpen: true }, onClient);
  server.on('error', function onServerError(err) {
    process.stderr.write(`bare-proxy: ${listenPort}: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(listenPort, '127.0.0.1');
}

function forward(listenPort, host, port) {
  serve(listenPort, function onClient(client) {
    join(client, net.connect({ host, port, allowHalfOpen: true }));
  });
}

const METHOD_NONE = Buffer.from([5, 0]);

/** Greeting, method reply, CONNECT (ATYP 1), reply naming the bound address; anything else closes. */
function socks5(listenPort) {
  serve(listenPort, function onClient(client) {
    let buf = Buffer.alloc(0);
    let greeted = false;
    client.on('error', function onEarlyError() { client.destroy(); });
    client.on('data', function onHandshake(chunk) {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (!greeted) {
        if (buf.length < 2 || buf.length < 2 + buf[1]) return;
        if (buf[0] !== 5 || !buf.subarray(2, 2 + buf[1]).includes(0)) return client.destroy();
        buf = buf.subarray(2 + buf[1]);
        greeted = true;
        client.write(METHOD_NONE);
      }
      if (buf.length < 10) return;
      if (buf[0] !== 5 || buf[1] !== 1 || buf[3] !== 1) return client.destroy();
      const host = `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`;
      const port = buf.readUInt16BE(8);
      client.off('data', onHandshake);
      client.pause();
      if (buf.length > 10) client.unshift(buf.subarray(10));
      const upstream = net.connect({ host, port, allowHalfOpen: true }, function onConnected() {
        const reply = Buffer.alloc(10);
        reply[0] = 5;
        reply[3] = 1;
        upstream.localAddress.split('.').forEach((part, i) => { reply[4 + i] = Number(part); });
        reply.writeUInt16BE(upstream.localPort, 8);
        client.write(reply);
        join(client, upstream);
      });
      upstream.on('error', function onDialError() { client.destroy(); });
    });
  });
}

const specs = process.argv.slice(2);
if (specs.length === 0) {
  process.stderr.write('usage: bare-proxy.js LISTEN_PORT:TARGET_HOST:TARGET_PORT | socks:LISTEN_PORT ...\n');
  process.exit(2);
}
// Exit normally on SIGINT so `node --cpu-prof` writes its profile.
process.on('SIGINT', function onSigint() { process.exit(0); });
for (const spec of specs) {
  const parts = spec.split(':');
  if (parts[0] === 'socks') socks5(Number(parts[1]));
  else forward(Number(parts[0]), parts[1], Number(parts[2]));
}
