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
:root { color-scheme: light dark; --muted: #777; --line: #8884; --from: #1f77b4; --to: #e8710a; --open: #2a9d55; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.2rem; }
h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
h2 { font-size: 1.05rem; margin: 1.3rem 0 .4rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
#meta, .empty, .more { color: var(--muted); }
#link[data-state="open"] { color: #2a2; }
#link[data-state="closed"] { color: #d33; }
.full, .bad { color: #d33; font-weight: 600; }
.open { color: #2a2; }
tr.group td { font-weight: 600; padding-top: .8rem; border-bottom: 2px solid var(--line); }
.comment { color: var(--muted); white-space: normal; font-size: .9em; min-width: 12rem; max-width: 28rem; }
td.policy { white-space: normal; min-width: 14rem; }
.tag { display: inline-block; font-size: .8em; padding: 0 .35rem; margin: .1rem .2rem 0 0; border: 1px solid var(--line); border-radius: .6rem; }
.shut { color: var(--muted); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 1rem; }
.chart h3 { font-size: .95rem; font-weight: 600; margin: 0 0 .2rem; }
.chart svg { width: 100%; height: 170px; display: block; }
.chart .now { font-weight: 400; color: var(--muted); }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg text { fill: currentColor; font-size: 11px; opacity: .7; }
svg .series { fill: none; stroke-width: 1.5; stroke-linejoin: round; }
svg .open { stroke: var(--open); }
svg .from { stroke: var(--from); stroke-dasharray: 5 3; }
svg .to { stroke: var(--to); }
.key-from { color: var(--from); }
.key-to { color: var(--to); }
@media (max-width: 600px) {
  body { margin: .6rem; font-size: 13px; }
  th, td { padding: .2rem .35rem; }
}
`;

const SCRIPT = `
'use strict';
(function () {
  var WINDOW = 900;
  var MAX_ROWS = 500;
  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  // The namespace of the page's own <svg> elements (the HTML parser gives them SVG's).
  var SVG = $('chart-open').namespaceURI;
  function svgEl(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function row(cells) {
    var tr = document.createElement('tr');
    for (var i = 0; i < cells.length; i++) tr.appendChild(cells[i]);
    return tr;
  }
  function num(v) { var n = Number(v); return isFinite(n) ? n : 0; }
  function bytes(n) {
    var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0, v = num(n);
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return i === 0 ? String(Math.round(v)) + ' B' : v.toFixed(1) + ' ' + u[i];
  }
  function perSecond(n) { return bytes(n) + '/s'; }
  function rate(n) { n = num(n); return n === 0 ? '0' : n < 10 ? n.toFixed(1) : String(Math.round(n)); }
  function age(s) {
    s = Math.floor(num(s));
    var h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
    return (h ? h + 'h ' : '') + (h || m ? m + 'm ' : '') + r + 's';
  }
  function duration(ms) {
    ms = num(ms);
    return ms < 1000 ? Math.round(ms) + ' ms' : ms < 10000 ? (ms / 1000).toFixed(1) + ' s' : age(ms / 1000);
  }
  function numCell(text, title) {
    var td = el('td', text, 'num');
    if (title !== undefined) td.title = title;
    return td;
  }
  function bytesCell(n) { return numCell(bytes(n), String(num(n)) + ' bytes'); }
  function rateCell(n) { return numCell(perSecond(n), String(Math.round(num(n))) + ' bytes/s'); }
  function countCell(n) { return numCell(String(num(n))); }
  function list(v) { return Array.isArray(v) ? v : []; }
  function replaceBody(tbody, rows, columns, emptyText, total) {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    if (rows.length === 0) {
      var td = el('td', emptyText, 'empty');
      td.colSpan = columns;
      tbody.appendChild(row([td]));
      return;
    }
    for (var i = 0; i < rows.length; i++) tbody.appendChild(rows[i]);
    if (total > rows.length) {
      var more = el('td', 'and ' + (total - rows.length) + ' more (all of them are in /status)', 'more');
      more.colSpan = columns;
      tbody.appendChild(row([more]));
    }
  }
  function who(user, auth) { return user === null || user === undefined ? '-' : user + (auth ? ' (' + auth + ')' : ''); }
  function where(requested, destination) {
    return (requested ? requested + ' \u2192 ' : '') + (destination === null || destination === undefined ? '-' : destination);
  }

  // Services
  function serviceRow(v) {
    var listeners = list(v.listeners).map(function (l) { return l.address + (l.intercept ? ' (intercept)' : ''); }).join(', ');
    var active = num(v.active), max = num(v.maxConnections);
    var load = el('td', active + ' / ' + max, 'num' + (active >= max ? ' full' : ''));
    var name = el('td', v.name);
    if (v.comment) name.appendChild(el('div', v.comment, 'comment'));
    var tags = list(v.tags);
    if (tags.length) {
      var chips = el('div');
      for (var i = 0; i < tags.length; i++) chips.appendChild(el('span', tags[i], 'tag'));
      name.appendChild(chips);
    }
    var r = v.rates || {}, m = v.lastMinute || {};
    var rejected = countCell(m.rejected), failed = countCell(m.failed);
    if (num(m.rejected) > 0) rejected.className += ' bad';
    if (num(m.failed) > 0) failed.className += ' bad';
    var tr = row([name, el('td', listeners), load, numCell(rate(r.connections)), rateCell(r.fromClient), rateCell(r.toClient), rejected, failed, policy(v)]);
    tr.setAttribute('data-service', String(v.name));
    return tr;
  }
  // Services under each of their tags (a service with two tags shows under both), untagged ones
  // last; without any tag, one group without a heading.
  function groupByTag(services) {
    var tags = [], byTag = {}, untagged = [];
    for (var i = 0; i < services.length; i++) {
      var t = list(services[i].tags);
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
    var td = el('td', null, 'policy');
    var l = v.limits || {}, parts = [];
    if (l.perSource !== null && l.perSource !== undefined) parts.push(l.perSource + ' per source');
    if (l.perUser !== null && l.perUser !== undefined) parts.push(l.perUser + ' per user');
    if (l.rate) parts.push(l.rate + ' per source');
    if (parts.length) td.appendChild(el('div', 'limits: ' + parts.join(', ')));
    var sch = list(v.schedules);
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
  var SERVICE_COLUMNS = 9;
  function renderServices(services) {
    replaceBody($('services'), groupByTag(services).reduce(function (rows, g) {
      if (g.tag !== null) {
        var head = el('td', g.tag === '' ? 'untagged' : 'tag: ' + g.tag);
        head.colSpan = SERVICE_COLUMNS;
        var tr = row([head]);
        tr.className = 'group';
        rows.push(tr);
      }
      for (var i = 0; i < g.services.length; i++) rows.push(serviceRow(g.services[i]));
      return rows;
    }, []), SERVICE_COLUMNS, 'no services', 0);
  }

  // Connections, open and closed
  function renderOpen(conns) {
    var shown = conns.slice(0, MAX_ROWS);
    replaceBody($('connections'), shown.map(function (c) {
      var since = el('td', age(c.seconds));
      since.title = String(c.since);
      var tr = row([el('td', c.id), el('td', c.service), el('td', c.client), el('td', who(c.user, c.auth)),
        el('td', where(c.requested, c.destination)), el('td', c.state), since,
        bytesCell(c.bytesFromClient), bytesCell(c.bytesToClient), rateCell(c.rateFromClient), rateCell(c.rateToClient)]);
      tr.setAttribute('data-id', String(c.id));
      return tr;
    }), 11, 'no open connections', conns.length);
    $('count').textContent = String(conns.length);
  }
  function renderClosed(closed) {
    replaceBody($('closed'), closed.map(function (c) {
      var at = el('td', c.closed ? new Date(c.closed).toLocaleTimeString() : '-');
      at.title = String(c.closed);
      var error = el('td', c.error === null || c.error === undefined ? '-' : c.error);
      var tr = row([at, el('td', c.id), el('td', c.service), el('td', c.client), el('td', who(c.user, c.auth)), el('td', where(c.requested, c.destination)),
        numCell(duration(c.durationMs), String(num(c.durationMs)) + ' ms'), bytesCell(c.bytesFromClient), bytesCell(c.bytesToClient), el('td', c.reason), error]);
      tr.setAttribute('data-id', String(c.id));
      tr.setAttribute('data-reason', String(c.reason));
      return tr;
    }), 11, 'none closed yet', 0);
  }

  // Charts: the last 15 minutes, a point a second, on a fixed time axis.
  // Drawn at the size it is shown (a unit a pixel, so text stays readable on a phone), again at every update.
  var H = 170, LEFT = 62, RIGHT = 8, TOP = 8, BOTTOM = 20;
  /** A value the chart can draw; anything else (null: no sample that second) is a gap. */
  function point(v) { return typeof v === 'number' && isFinite(v) && v >= 0; }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log(v) / Math.LN10)), steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (v <= steps[i] * p) return steps[i] * p;
    return 10 * p;
  }
  function chart(svg, series, label) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var W = Math.max(240, Math.round(svg.getBoundingClientRect().width) || 600);
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    var max = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { if (point(v) && v > max) max = v; }); });
    max = niceMax(max);
    var pw = W - LEFT - RIGHT, ph = H - TOP - BOTTOM;
    for (var g = 0; g <= 2; g++) {
      var y = TOP + ph - (ph * g) / 2;
      svg.appendChild(svgEl('line', { x1: LEFT, x2: W - RIGHT, y1: y, y2: y, 'class': 'grid' }));
      svg.appendChild(svgEl('text', { x: LEFT - 4, y: y + 4, 'text-anchor': 'end' }, label((max * g) / 2)));
    }
    [15, 10, 5, 0].forEach(function (m) {
      var x = LEFT + pw * (1 - (m * 60) / (WINDOW - 1));
      svg.appendChild(svgEl('text', { x: x, y: H - 5, 'text-anchor': m === 15 ? 'start' : m === 0 ? 'end' : 'middle' }, m === 0 ? 'now' : '-' + m + ' min'));
    });
    series.forEach(function (s) {
      var d = '', pen = false, n = s.values.length;
      for (var i = 0; i < n; i++) {
        var v = s.values[i];
        if (!point(v)) { pen = false; continue; }
        var ago = n - 1 - i;
        if (ago >= WINDOW) continue;
        var x = LEFT + pw * (1 - ago / (WINDOW - 1)), y = TOP + ph - (ph * Math.min(v, max)) / max;
        d += (pen ? 'L' : 'M') + x.toFixed(1) + ' ' + y.toFixed(1);
        pen = true;
      }
      var path = svgEl('path', { d: d, 'class': 'series ' + s.cls });
      path.setAttribute('data-points', String(s.values.filter(point).length));
      svg.appendChild(path);
    });
  }
  function last(values) {
    for (var i = values.length - 1; i >= 0; i--) if (point(values[i])) return values[i];
    return 0;
  }
  function renderCharts(h) {
    h = h || {};
    var open = list(h.open), from = list(h.fromClient), to = list(h.toClient);
    chart($('chart-open'), [{ values: open, cls: 'open' }], function (v) { return String(Math.round(v * 10) / 10); });
    chart($('chart-bytes'), [{ values: from, cls: 'from' }, { values: to, cls: 'to' }], perSecond);
    $('now-open').textContent = String(last(open));
    $('now-from').textContent = perSecond(last(from));
    $('now-to').textContent = perSecond(last(to));
  }

  function render(s) {
    $('version').textContent = String(s.version);
    $('state').textContent = String(s.state);
    $('updated').textContent = new Date().toLocaleTimeString();
    renderCharts(s.history);
    renderServices(list(s.services));
    renderOpen(list(s.connections));
    renderClosed(list(s.closed));
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
<div class="charts">
<div class="chart"><h3>Open connections <span class="now">now <span id="now-open">0</span></span></h3>
<svg id="chart-open" role="img" aria-label="open connections over the last 15 minutes"></svg></div>
<div class="chart"><h3>Throughput <span class="now"><span class="key-from">from clients <span id="now-from">0 B/s</span></span> &middot;
<span class="key-to">to clients <span id="now-to">0 B/s</span></span></span></h3>
<svg id="chart-bytes" role="img" aria-label="bytes per second each way over the last 15 minutes"></svg></div>
</div>
<h2>Services</h2>
<div class="scroll"><table>
<thead><tr><th>Service</th><th>Listeners</th><th class="num">Open / limit</th><th class="num">Conn/s</th><th class="num">From clients</th><th class="num">To clients</th>
<th class="num" title="refused in the last minute (limits, rules, handshakes)">Rejected 1 min</th><th class="num" title="upstream unreachable in the last minute">Failed 1 min</th><th>Limits and schedules</th></tr></thead>
<tbody id="services"></tbody>
</table></div>
<h2>Open connections (<span id="count">0</span>)</h2>
<div class="scroll"><table>
<thead><tr><th>ID</th><th>Service</th><th>Client</th><th>User</th><th>Destination</th><th>State</th><th>Age</th>
<th class="num">From client</th><th class="num">To client</th><th class="num">From client/s</th><th class="num">To client/s</th></tr></thead>
<tbody id="connections"></tbody>
</table></div>
<h2>Recently closed</h2>
<div class="scroll"><table>
<thead><tr><th>Closed</th><th>ID</th><th>Service</th><th>Client</th><th>User</th><th>Destination</th><th class="num">Duration</th>
<th class="num">From client</th><th class="num">To client</th><th>Reason</th><th>Error</th></tr></thead>
<tbody id="closed"></tbody>
</table></div>
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
