import type * as net from 'node:net';
import type { Page } from 'playwright-core';
import { describeWithChromium, useChromium, watchedPage } from '../helpers/browser';
import { adminGet, connect, eventually, nextDisconnect, onTeardown, portOf, startEchoServer, startGateway, unusedPort } from '../helpers/net';
import type { StatusJson } from './sse';

/**
 * The console at `/` as an operator sees it: rates that move, charts that gain points, the
 * recent list with reasons, and a layout that fits a laptop and a phone.
 */

const describeIfChromium = describeWithChromium('console browser tests');
const browserOf = useChromium();

/** Every wait in this file is bounded by this (ms). */
const WAIT = 12_000;

async function consoleGateway(): Promise<{ gw: Awaited<ReturnType<typeof startGateway>>; url: string; deadPort: number }> {
  const echo = await startEchoServer();
  const deadPort = await unusedPort();
  const gw = await startGateway(`
admin: { listen: "127.0.0.1:0" }
services:
  - { name: echo, port: 0, bind: [127.0.0.1], limits: { perSource: 2 }, destination: "127.0.0.1:${echo.port}" }
  - { name: dead, port: 0, bind: [127.0.0.1], destination: "127.0.0.1:${deadPort}" }
`);
  const admin = gw.adminAddress()!;
  return { gw, url: `http://${admin.host}:${admin.port}/`, deadPort };
}

/** Writes `bytes` every 100 ms until stopped (or 20 s, whichever is first). */
function stream(socket: net.Socket, bytes: number): () => void {
  const chunk = Buffer.alloc(bytes, 0x61);
  const timer = setInterval(() => { if (!socket.destroyed) socket.write(chunk); }, 100);
  const limit = setTimeout(() => clearInterval(timer), 20_000);
  const stop = (): void => { clearInterval(timer); clearTimeout(limit); };
  onTeardown(stop);
  return stop;
}

async function points(page: Page, selector: string): Promise<number> {
  return Number(await page.locator(selector).getAttribute('data-points'));
}

describeIfChromium('the console in headless Chromium', () => {
  test('at 1280×800: rates appear and fall back, the charts gain points, closed connections are listed with reason and error', async () => {
    const { gw, url, deadPort } = await consoleGateway();
    const { page, problems } = await watchedPage(browserOf(), { viewport: { width: 1280, height: 800 } });
    expect((await page.goto(url))?.status()).toBe(200);
    await page.locator('#link[data-state="open"]').waitFor();
    await page.locator('#chart-open path.series').waitFor({ state: 'attached' });
    const openPoints = await points(page, '#chart-open path.series');

    // Both charts side by side, above the fold.
    const [a, b] = [await page.locator('#chart-open').boundingBox(), await page.locator('#chart-bytes').boundingBox()];
    expect(a && b).toBeTruthy();
    expect(Math.abs(a!.y - b!.y)).toBeLessThan(1);
    expect(a!.x + a!.width).toBeLessThanOrEqual(b!.x);
    expect(b!.x + b!.width).toBeLessThanOrEqual(1280);
    expect(a!.y + a!.height).toBeLessThan(800);

    // 32 KiB every 100 ms from a client: its row, its service's and the chart show it moving.
    const c = await connect(portOf(gw, 'echo'));
    c.on('data', () => {});
    const stop = stream(c, 32 * 1024);
    const row = page.locator('#connections tr[data-id]', { hasText: `127.0.0.1:${c.localPort}` });
    await row.locator('td:nth-child(10)', { hasText: /KiB\/s|MiB\/s/ }).waitFor({ timeout: WAIT });
    await row.locator('td:nth-child(11)', { hasText: /KiB\/s|MiB\/s/ }).waitFor({ timeout: WAIT });
    const service = page.locator('#services tr[data-service="echo"]');
    await service.locator('td:nth-child(5)', { hasText: /KiB\/s|MiB\/s/ }).waitFor({ timeout: WAIT });
    await page.locator('#now-from', { hasText: /KiB\/s|MiB\/s/ }).waitFor({ timeout: WAIT });
    await eventually(async () => (await points(page, '#chart-open path.series')) >= openPoints + 2, WAIT, 'two more points on the open-connections chart');
    expect(await points(page, '#chart-bytes path.from')).toBeGreaterThanOrEqual(openPoints + 2);
    // The line is drawn: a move and at least one segment per point after it.
    expect((await page.locator('#chart-bytes path.from').getAttribute('d'))!.split('L').length).toBeGreaterThanOrEqual(3);

    // An upstream that refuses: failed in the last minute, and in the recent list with its error.
    const dead = await connect(portOf(gw, 'dead'));
    dead.on('error', () => {});
    const refused = page.locator('#closed tr[data-reason="connect-failed"]');
    await refused.waitFor({ timeout: WAIT });
    expect((await refused.locator('td').allTextContents()).slice(2)).toEqual([
      'dead', `127.0.0.1:${dead.localPort}`, '-', `127.0.0.1:${deadPort}`, expect.stringMatching(/^\d+ ms$/), '0 B', '0 B', 'connect-failed', 'ECONNREFUSED',
    ]);
    const deadRow = page.locator('#services tr[data-service="dead"]');
    await deadRow.locator('td:nth-child(8).bad', { hasText: /^1$/ }).waitFor({ timeout: WAIT });

    // A third connection from one source where two are allowed: rejected, and listed with the limit.
    const second = await connect(portOf(gw, 'echo'));
    const limited = nextDisconnect(gw);
    const third = await connect(portOf(gw, 'echo'));
    third.on('error', () => {});
    expect((await limited).reason).toBe('limit');
    const limitRow = page.locator('#closed tr[data-reason="limit"]');
    await limitRow.waitFor({ timeout: WAIT });
    expect(await limitRow.locator('td').last().textContent()).toBe('per-source');
    await service.locator('td:nth-child(7).bad', { hasText: /^1$/ }).waitFor({ timeout: WAIT });
    second.destroy();

    // The streaming client closes: listed first with its bytes, and the rates fall back to zero.
    stop();
    const id = await row.getAttribute('data-id');
    const gone = nextDisconnect(gw, id!);
    c.end();
    const { bytesFromClient } = await gone;
    const closedRow = page.locator(`#closed tr[data-id="${id}"]`);
    await closedRow.waitFor({ timeout: WAIT });
    expect(await closedRow.getAttribute('data-reason')).toBe('client-closed');
    expect(await closedRow.locator('td:nth-child(8)').getAttribute('title')).toBe(`${bytesFromClient} bytes`);
    await service.locator('td:nth-child(5)', { hasText: /^0 B\/s$/ }).waitFor({ timeout: WAIT });
    expect(problems).toEqual([]);
  }, 60_000);

  test('on a phone (390×844): nothing wider than the screen but the tables, which scroll in place; chart text at its CSS size', async () => {
    const { url } = await consoleGateway();
    const { page, problems } = await watchedPage(browserOf(), { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    expect((await page.goto(url))?.status()).toBe(200);
    await page.locator('#chart-open path.series').waitFor({ state: 'attached' });
    // Evaluated in the page (a string: this file is compiled without the DOM's types).
    const layout = await page.evaluate(`(() => {
      const svg = document.getElementById('chart-open');
      return {
        pageWidth: document.documentElement.scrollWidth,
        svgWidth: svg.getBoundingClientRect().width,
        viewBoxWidth: Number(svg.getAttribute('viewBox').split(' ')[2]),
        fontPx: parseFloat(getComputedStyle(svg.querySelector('text')).fontSize),
        tablesScroll: [...document.querySelectorAll('.scroll')].map((d) => getComputedStyle(d).overflowX),
      };
    })()`) as { pageWidth: number; svgWidth: number; viewBoxWidth: number; fontPx: number; tablesScroll: string[] };
    expect(layout.pageWidth).toBeLessThanOrEqual(390);
    expect(layout.svgWidth).toBeGreaterThan(300);
    // Drawn a unit a pixel: 11 px labels stay 11 px, not scaled down to a third.
    expect(Math.abs(layout.viewBoxWidth - layout.svgWidth)).toBeLessThanOrEqual(1);
    expect(layout.fontPx).toBe(11);
    expect(layout.tablesScroll).toEqual(['auto', 'auto', 'auto']);
    expect(problems).toEqual([]);
  }, 30_000);

  test('/status carries the same figures: rates, the last minute, the history and the closed list', async () => {
    const { gw } = await consoleGateway();
    const c = await connect(portOf(gw, 'echo'));
    c.on('data', () => {});
    const stop = stream(c, 16 * 1024);
    let status: StatusJson | undefined;
    await eventually(async () => {
      status = JSON.parse((await adminGet(gw, '/status')).body) as StatusJson;
      const conn = status.connections[0];
      return status.history.fromClient.some((v) => (v ?? 0) > 0) && conn !== undefined && conn.rateFromClient > 0 && status.services[0].rates.fromClient > 0;
    }, WAIT, 'rates in /status');
    expect(status!.services[0].lastMinute).toEqual({ connections: 1, rejected: 0, failed: 0 });
    expect(status!.history.end).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
    expect(status!.history.open.at(-1)).toBe(1);
    stop();
    const gone = nextDisconnect(gw);
    c.end();
    await gone;
    const after = JSON.parse((await adminGet(gw, '/status')).body) as StatusJson;
    expect(after.closed.map((x) => x.reason)).toEqual(['client-closed']);
  }, 30_000);
});
