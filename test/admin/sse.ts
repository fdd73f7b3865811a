import * as http from 'node:http';
import type { GatewayStatus } from '../../src/admin/status';
import { onTeardown } from '../helpers/net';

/** One server-sent event; comment lines (`: heartbeat`) are collected as `comment` events. */
export interface SseEvent { event: string; data: string }

/** The status JSON that `/events` and `/status` carry. */
export type StatusJson = GatewayStatus;

/** An open `GET /events` stream, parsed as it arrives. Destroyed at teardown. */
export interface SseStream {
  readonly response: http.IncomingMessage;
  readonly events: SseEvent[];
  /** Resolves with the first event (already received or future) after index `from` that matches; rejects after `ms`. */
  next(match: (e: SseEvent) => boolean, ms?: number, from?: number): Promise<SseEvent>;
  /** Resolves when the server ends or drops the stream; rejects after `ms`. */
  ended(ms?: number): Promise<void>;
  destroy(): void;
}

/** Opens `/events` on host:port; resolves once the response headers arrived. */
export function openEvents(host: string, port: number, path = '/events'): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path, agent: false, headers: { accept: 'text/event-stream' } });
    onTeardown(() => req.destroy());
    req.once('error', reject);
    req.once('response', (response) => {
      req.off('error', reject);
      req.on('error', () => {});
      response.on('error', () => {});
      const events: SseEvent[] = [];
      const waiters = new Set<() => void>();
      let buffer = '';
      let done = false;
      const wake = (): void => { for (const w of [...waiters]) w(); };
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        buffer += chunk;
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) events.push({ event: 'comment', data: line.slice(1).trim() });
          }
          const fields = block.split('\n').filter((l) => !l.startsWith(':'));
          const data = fields.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
          const name = fields.find((l) => l.startsWith('event:'))?.slice(6).trim() ?? 'message';
          if (fields.some((l) => l.startsWith('data:'))) events.push({ event: name, data });
        }
        wake();
      });
      const onEnd = (): void => { done = true; wake(); };
      response.on('end', onEnd);
      response.on('close', onEnd);
      resolve({
        response,
        events,
        next(match, ms = 5000, from = 0) {
          return new Promise((res, rej) => {
            const check = (): void => {
              const hit = events.slice(from).find(match);
              if (hit) { finish(); res(hit); } else if (done) { finish(); rej(new Error('event stream ended before a matching event')); }
            };
            const timer = setTimeout(() => { finish(); rej(new Error(`no matching event within ${ms} ms (${events.length} received)`)); }, ms);
            const finish = (): void => { clearTimeout(timer); waiters.delete(check); };
            waiters.add(check);
            check();
          });
        },
        ended(ms = 5000) {
          return new Promise((res, rej) => {
            const check = (): void => { if (done) { finish(); res(); } };
            const timer = setTimeout(() => { finish(); rej(new Error(`event stream still open after ${ms} ms`)); }, ms);
            const finish = (): void => { clearTimeout(timer); waiters.delete(check); };
            waiters.add(check);
            check();
          });
        },
        destroy() { req.destroy(); },
      });
    });
  });
}

/** The status of a `status` event. */
export function statusOf(e: SseEvent): StatusJson {
  return JSON.parse(e.data) as StatusJson;
}
