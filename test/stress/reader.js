#!/usr/bin/env node
'use strict';
// A client reading a pattern stream (byte i is i % 251, as upstream.js streams it) as fast as it
// arrives. Run inside a network namespace by the netns test. It must not be a paced reader: with
// a full send buffer the kernel wakes the gateway's writes only when half of it is free, so a
// paced reader makes the bytes the gateway sees move in bursts seconds apart — as idle, to the
// gateway, as a vanished client — and the test could not tell "vanished" from "slow".
//   node reader.js HOST PORT
// Prints progress {"bytes", "wrong"} every 250 ms, and closed {"bytes", "wrong", "error"} if the
// connection ends. Exits when its stdin closes.
const net = require('node:net');

const [host, port] = process.argv.slice(2);
let bytes = 0;
let wrong = 0;
let error = null;
const socket = net.connect({ host, port: Number(port) });
socket.on('error', function onError(err) { error = err.code || err.message; });
socket.on('close', function onClose() {
  clearInterval(reporting);
  process.stdout.write(`closed ${JSON.stringify({ bytes, wrong, error })}\n`);
});
socket.on('data', function onData(b) {
  for (let j = 0; j < b.length; j++) if (b[j] !== (bytes + j) % 251) wrong++;
  bytes += b.length;
});
const reporting = setInterval(function report() {
  process.stdout.write(`progress ${JSON.stringify({ bytes, wrong })}\n`);
}, 250);
process.stdin.resume();
process.stdin.on('end', function onStdinEnd() { process.exit(0); });
