import { createHash } from 'node:crypto';
import type * as http from 'node:http';

/**
 * The live status page (`GET /`) and its server-sent event stream (`GET /events`).
 *
 * The page is one self-contained HTML document: inline CSS and JS, no framework. Its script
 * renders every value with `textContent`, never as markup, because client addresses and
 * destinations come from the network. The CSP allows exactly that inline script and style
 * (by hash) and connections to the page's own origin.
 */

const STYLE = `
:root { color-scheme: light dark; --muted: #777; --line: #8884; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; }
h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .4rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .6rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
#meta, .empty { color: var(--muted); }
#link[data-state="open"] { color: #2a2; }
#link[data-state="closed"] { color: #d33; }
.full { color: #d33; font-weight: 600; }
.open { color: #2a2; }
tr.group td { font-weight: 600; padding-top: .8rem; border-bottom: 2px solid var(--line); }
.comment { color: var(--muted); white-space: normal; font-size: .9em; }
.shut { color: var(--muted); }
`;

const SCRIPT = `
'use strict';
(function () {
  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(cells) {
    var tr = document.createElement('tr');
    for (var i = 0; i < cells.length; i++) tr.appendChild(cells[i]);
    return tr;
  }
  function bytes(n) {
    var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0, v = Number(n) || 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return i === 0 ? String(v) + ' B' : v.toFixed(1) + ' ' + u[i];
  }
  function age(s) {
    s = Math.floor(Number(s) || 0);
    var h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
    return (h ? h + 'h ' : '') + (h || m ? m + 'm ' : '') + r + 's';
  }
  function numCell(n) {
    var td = el('td', bytes(n), 'num');
    td.title = String(n) + ' bytes';
    return td;
  }
  function replaceBody(tbody, rows, columns, emptyText) {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    if (rows.length === 0) {
      var td = el('td', emptyText, 'empty');
      td.colSpan = columns;
      tbody.appendChild(row([td]));
      return;
    }
    for (var i = 0; i < rows.length; i++) tbody.appendChild(rows[i]);
  }
  function serviceRow(v) {
    var listeners = (v.listeners || []).map(function (l) { return l.address + (l.intercept ? ' (intercept)' : ''); }).join(', ');
    var load = el('td', v.active + ' / ' + v.maxConnections, 'num' + (v.active >= v.maxConnections ? ' full' : ''));
    var name = el('td', v.name);
    if (v.comment) name.appendChild(el('div', v.comment, 'comment'));
    return row([name, el('td', listeners), load, policy(v)]);
  }
  // Services under each of their tags (a service with two tags shows under both), untagged ones
  // last; without any tag, one group without a heading.
  function groupByTag(services) {
    var tags = [], byTag = {}, untagged = [];
    for (var i = 0; i < services.length; i++) {
      var t = Array.isArray(services[i].tags) ? services[i].tags : [];
      if (t.length === 0) untagged.push(services[i]);
      for (var j = 0; j < t.length; j++) {
        var k = String(t[j]);
        if (!Object.prototype.hasOwnProperty.call(byTag, k)) { byTag[k] = []; tags.push(k); }
        byTag[k].push(services[i]);
      }
    }
    if (tags.length === 0) return [{ tag: null, services: services }];
    tags.sort();
    var groups = tags.map(function (k) { return { tag: k, services: byTag[k] }; });
    if (untagged.length) groups.push({ tag: '', services: untagged });
    return groups;
  }
  function policy(v) {
    var td = el('td');
    var l = v.limits || {}, parts = [];
    if (l.perSource !== null && l.perSource !== undefined) parts.push(l.perSource + ' per source');
    if (l.perUser !== null && l.perUser !== undefined) parts.push(l.perUser + ' per user');
    if (l.rate) parts.push(l.rate + ' per source');
    if (parts.length) td.appendChild(el('div', 'limits: ' + parts.join(', ')));
    var sch = Array.isArray(v.schedules) ? v.schedules : [];
    for (var i = 0; i < sch.length; i++) {
      var x = sch[i];
      var next = x.nextChange ? (x.open ? ', closes ' : ', opens ') + new Date(x.nextChange).toLocaleString() : '';
      var line = el('div', 'mapping ' + x.mapping + ': ' + x.schedule + ' ' + (x.open ? 'open' : 'closed') + next + (x.endAtClose ? ' (ends connections at close)' : ''), x.open ? 'open' : 'shut');
      line.setAttribute('data-schedule', String(x.schedule));
      td.appendChild(line);
    }
    if (!td.firstChild) td.textContent = '-';
    return td;
  }
  function render(s) {
    $('version').textContent = String(s.version);
    $('state').textContent = String(s.state);
    $('updated').textContent = new Date().toLocaleTimeString();
    var services = Array.isArray(s.services) ? s.services : [];
    var conns = Array.isArray(s.connections) ? s.connections : [];
    replaceBody($('services'), groupByTag(services).reduce(function (rows, g) {
      if (g.tag !== null) {
        var head = el('td', g.tag === '' ? 'untagged' : 'tag: ' + g.tag);
        head.colSpan = 4;
        var tr = row([head]);
        tr.className = 'group';
        rows.push(tr);
      }
      for (var i = 0; i < g.services.length; i++) rows.push(serviceRow(g.services[i]));
      return rows;
    }, []), 4, 'no services');
    replaceBody($('connections'), conns.map(function (c) {
      var since = el('td', age(c.seconds));
      since.title = String(c.since);
      var tr = row([el('td', c.id), el('td', c.service), el('td', c.client), el('td', c.user === null ? '-' : c.user + (c.auth ? ' (' + c.auth + ')' : '')),
        el('td', (c.requested ? c.requested + ' → ' : '') + (c.destination === null ? '-' : c.destination)), el('td', c.state), since,
        numCell(c.bytesFromClient), numCell(c.bytesToClient)]);
      tr.setAttribute('data-id', String(c.id));
      return tr;
    }), 9, 'no open connections');
    $('count').textContent = String(conns.length);
  }
  var link = $('link');
  var source = new EventSource('events');
  source.addEventListener('open', function () { link.textContent = 'live'; link.setAttribute('data-state', 'open'); });
  source.addEventListener('error', function () { link.textContent = 'reconnecting'; link.setAttribute('data-state', 'closed'); });
  source.addEventListener('status', function (e) {
    try { render(JSON.parse(e.data)); } catch (err) { link.textContent = 'bad data: ' + err; }
  });
})();
`;

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mapgate status</title>
<style>${STYLE}</style>
</head>
<body>
<h1>mapgate</h1>
<div id="meta">version <span id="version">?</span> &middot; state <span id="state">?</span> &middot;
updated <span id="updated">never</span> &middot; <span id="link" data-state="closed">connecting</span></div>
<h2>Services</h2>
<table>
<thead><tr><th>Service</th><th>Listeners</th><th class="num">Active / max</th><th>Limits and schedules</th></tr></thead>
<tbody id="services"></tbody>
</table>
<h2>Open connections (<span id="count">0</span>)</h2>
<table>
<thead><tr><th>ID</th><th>Service</th><th>Client</th><th>User</th><th>Destination</th><th>State</th><th>Since</th>
<th class="num">From client</th><th class="num">To client</th></tr></thead>
<tbody id="connections"></tbody>
</table>
<script>${SCRIPT}</script>
</body>
</html>
`;

function cspHash(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

/** The page's bytes, built once. */
export const STATUS_PAGE_HTML = Buffer.from(HTML, 'utf8');

/** Response headers of `GET /`: nothing but the page's own inline script and style, and its own origin. */
export const STATUS_PAGE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': [
    "default-src 'self'",
    `script-src ${cspHash(SCRIPT)}`,
    `style-src ${cspHash(STYLE)}`,
    "connect-src 'self'",
    "img-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
});

/** How often `/events` pushes the status. */
export const STATUS_INTERVAL_MS = 1000;
/** Open `/events` streams beyond this are refused with 503: each costs a status serialization a second. */
export const MAX_EVENT_STREAMS = 32;
/** A comment line at least this often keeps proxies and the browser from timing the stream out. */
const HEARTBEAT_MS = 15_000;

/**
 * The `/events` streams of one admin server. One shared timer (unref'd, so it never holds the
 * process up) takes a snapshot of `status()` once a second while any stream is open, and pushes
 * it as an `event: status` to every stream whose previous write has drained; a slow reader skips
 * ticks instead of buffering without bound. `status()` may return a promise (a cluster primary
 * asks its workers): while one snapshot is pending, ticks are skipped rather than stacked, and a
 * failed snapshot is sent as a `: status failed` comment, the streams staying open.
 */
export class StatusStreams {
  private readonly streams = new Set<http.ServerResponse>();
  private timer: NodeJS.Timeout | null = null;
  private lastHeartbeat = 0;
  private pending = false;
  /** Streams that have not had their first event yet: it carries the `retry:` line. */
  private readonly fresh = new Set<http.ServerResponse>();

  constructor(private readonly status: () => unknown, private readonly intervalMs = STATUS_INTERVAL_MS) {}

  /** Open streams, for tests and leak checks. */
  get size(): number { return this.streams.size; }

  /** Answers `GET /events`: a stream that gets the status now and every interval, or 503 when full. */
  open(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.streams.size >= MAX_EVENT_STREAMS) {
      const body = 'too many event streams\n';
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'retry-after': '5', 'cache-control': 'no-store' });
      res.end(body);
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      // Tell buffering reverse proxies (nginx) to pass events through as they come.
      'x-accel-buffering': 'no',
    });
    // Disable Nagle: each event is small and should leave at once.
    req.socket.setNoDelay(true);
    // The headers leave now, the first event when its snapshot is taken (maybe a moment later).
    res.flushHeaders();
    this.streams.add(res);
    this.fresh.add(res);
    const self = this;
    res.on('close', function onEventStreamClose() { self.remove(res); });
    this.timer ??= setInterval(() => this.tick(), this.intervalMs).unref();
    // The new stream gets the snapshot now; a pending one, taken a moment ago, serves as well.
    this.push(false);
  }

  /** Ends every stream now (their sockets too): the server is closing. */
  closeAll(): void {
    for (const res of [...this.streams]) {
      this.remove(res);
      res.socket?.destroy();
    }
  }

  private remove(res: http.ServerResponse): void {
    this.streams.delete(res);
    this.fresh.delete(res);
    if (this.streams.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private tick(): void {
    if (this.pending) return;
    const now = Date.now();
    const heartbeat = now - this.lastHeartbeat >= HEARTBEAT_MS;
    if (heartbeat) this.lastHeartbeat = now;
    this.push(heartbeat);
  }

  /** Takes one snapshot (unless one is pending) and writes it to every stream open once it settles. */
  private push(heartbeat: boolean): void {
    if (this.pending) return;
    this.pending = true;
    new Promise((resolve) => resolve(this.status()))
      .then((status) => `event: status\ndata: ${JSON.stringify(status)}\n\n`)
      .catch((err: unknown) => `: status failed: ${String(err instanceof Error ? err.message : err).replace(/[\r\n]+/g, ' ')}\n\n`)
      .then((message) => this.send(heartbeat, message))
      .finally(() => { this.pending = false; });
  }

  private send(heartbeat: boolean, message: string): void {
    for (const res of this.streams) {
      if (res.writableNeedDrain) continue;
      const first = this.fresh.delete(res);
      res.write(`${first ? 'retry: 2000\n\n' : ''}${heartbeat ? ': heartbeat\n\n' : ''}${message}`);
    }
  }
}
