#!/usr/bin/env node
'use strict';
// A client reading a pattern stream (byte i is i % 251, as upstream.js streams it) at a steady
// pace: whatever is buffered, every 20 ms. Run inside a network namespace by the netns test.
//   node reader.js HOST PORT
// Prints progress {"bytes", "wrong"} every 250 ms, and closed {"bytes", "wrong", "error"} if the
// connection ends. Exits when its stdin closes.
const net = require('node:net');

const [host, port] = process.argv.slice(2);
let bytes = 0;
let wrong = 0;
let error = null;
const socket = net.connect({ host, port: Number(port) });
socket.pause();
socket.on('error', function onError(err) { error = err.code || err.message; });
socket.on('close', function onClose() {
  clearInterval(reading);
  clearInterval(reporting);
  process.stdout.write(`closed ${JSON.stringify({ bytes, wrong, error })}\n`);
});
const reading = setInterval(function readSome() {
  const b = socket.read();
  if (!b) return;
  for (let j = 0; j < b.length; j++) if (b[j] !== (bytes + j) % 251) wrong++;
  bytes += b.length;
}, 20);
const reporting = setInterval(function report() {
  process.stdout.write(`progress ${JSON.stringify({ bytes, wrong })}\n`);
}, 250);
process.stdin.resume();
process.stdin.on('end', function onStdinEnd() { process.exit(0); });
