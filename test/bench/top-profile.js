#!/usr/bin/env node
'use strict';
// Prints the top N functions of a V8 .cpuprofile (node --cpu-prof) by self time.
// Usage: node top-profile.js FILE.cpuprofile [N=25]
// Self time of a node = its hit count × the mean sample interval; nodes of the same function
// (name + url + line) are summed, so a function reached through many stacks counts once.
const fs = require('node:fs');
const path = require('node:path');

function top(file, n) {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8'));
  const totalUs = profile.endTime - profile.startTime;
  const samples = profile.samples.length;
  const usPerSample = samples > 0 ? totalUs / samples : 0;
  const byFunction = new Map();
  for (const node of profile.nodes) {
    const cf = node.callFrame;
    const where = cf.url ? `${shorten(cf.url)}:${cf.lineNumber + 1}` : '';
    const key = `${cf.functionName || '(anonymous)'}\u0000${where}`;
    const entry = byFunction.get(key) || { name: cf.functionName || '(anonymous)', where, hits: 0 };
    entry.hits += node.hitCount || 0;
    byFunction.set(key, entry);
  }
  const rows = [...byFunction.values()].sort((a, b) => b.hits - a.hits).slice(0, n);
  const inclusive = mapgateInclusive(profile);
  const byCategory = new Map();
  for (const e of byFunction.values()) byCategory.set(category(e), (byCategory.get(category(e)) || 0) + e.hits);
  const out = [`${path.basename(file)}: ${samples} samples over ${(totalUs / 1e6).toFixed(2)} s`, '',
    '| self % | self ms | function | where |', '|---:|---:|---|---|'];
  for (const r of rows) {
    const pct = samples > 0 ? (100 * r.hits) / samples : 0;
    out.push(`| ${pct.toFixed(1)} | ${((r.hits * usPerSample) / 1000).toFixed(1)} | ${r.name} | ${r.where} |`);
  }
  out.push('', '| total % | mapgate function (self + callees) | where |', '|---:|---|---|');
  for (const r of inclusive.slice(0, n)) {
    out.push(`| ${samples > 0 ? ((100 * r.hits) / samples).toFixed(1) : '0.0'} | ${r.name} | ${r.where} |`);
  }
  out.push('', '| self % | where the self time goes |', '|---:|---|');
  for (const [c, hits] of [...byCategory].sort((a, b) => b[1] - a[1])) {
    out.push(`| ${samples > 0 ? ((100 * hits) / samples).toFixed(1) : '0.0'} | ${c} |`);
  }
  return out.join('\n') + '\n';
}

/** Inclusive samples of mapgate's own functions (dist/), a function counted once per stack. */
function mapgateInclusive(profile) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const totals = new Map();
  const entries = new Map();
  // Depth-first from the root, carrying the set of mapgate functions already on the stack.
  const root = profile.nodes[0];
  const stack = [[root, new Set()]];
  const order = [];
  while (stack.length > 0) {
    const [node, onStack] = stack.pop();
    order.push([node, onStack]);
    const cf = node.callFrame;
    const where = cf.url ? `${shorten(cf.url)}:${cf.lineNumber + 1}` : '';
    let next = onStack;
    if (where.startsWith('dist/')) {
      const key = `${cf.functionName || '(anonymous)'}\u0000${where}`;
      if (!entries.has(key)) entries.set(key, { name: cf.functionName || '(anonymous)', where, hits: 0 });
      if (!onStack.has(key)) { next = new Set(onStack); next.add(key); }
    }
    for (const id of node.children || []) stack.push([byId.get(id), next]);
  }
  // Every sample of a node counts for each mapgate function on its stack.
  for (const [node, onStack] of order) {
    const cf = node.callFrame;
    const where = cf.url ? `${shorten(cf.url)}:${cf.lineNumber + 1}` : '';
    const own = `${cf.functionName || '(anonymous)'}\u0000${where}`;
    const keys = new Set(onStack);
    if (entries.has(own)) keys.add(own);
    for (const k of keys) totals.set(k, (totals.get(k) || 0) + (node.hitCount || 0));
  }
  return [...entries].map(([k, e]) => ({ ...e, hits: totals.get(k) || 0 })).sort((a, b) => b.hits - a.hits);
}

/** Coarse owner of a function: mapgate's code, a dependency, Node's JS, native code or V8. */
function category(e) {
  if (e.where.startsWith('dist/')) return 'mapgate (dist/)';
  if (e.where.startsWith('node_modules/')) return e.where.split('/')[1];
  if (e.where.startsWith('node:')) return 'Node JS internals (node:*)';
  if (/^\((idle|program|garbage collector|root)\)$/.test(e.name)) return e.name;
  if (e.where === '') return 'native bindings (syscalls: write, connect, close, ...)';
  return 'other JS';
}

function shorten(url) {
  const u = url.replace(/^file:\/\//, '');
  const i = u.lastIndexOf('/node_modules/');
  if (i >= 0) return u.slice(i + 1);
  const d = u.lastIndexOf('/dist/');
  if (d >= 0) return u.slice(d + 1);
  return u;
}

if (require.main === module) {
  const [file, n] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: top-profile.js FILE.cpuprofile [N]\n');
    process.exit(2);
  }
  process.stdout.write(top(file, Number(n) || 25));
}

module.exports = { top };
