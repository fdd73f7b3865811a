import type { Page } from 'playwright-core';
import { describeWithChromium, useChromium, watchedPage } from '../helpers/browser';
import { createAdminServer } from '../../src/admin/admin';
import type * as net from 'node:net';
import { children, stopProcess } from '../helpers/cluster';
import { connect, listen, portOf, startEchoServer, startGateway } from '../helpers/net';
import { runCli, started, startedPort, writeConfig } from '../helpers/process';

const describeIfChromium = describeWithChromium('status-page browser tests');
const browserOf = useChromium();

/** A gateway relaying one service to an echo server at `port`, with up to 9 connections (per worker). */
function echoConfig(port: number, extra = ''): string {
  return `
admin: { listen: "127.0.0.1:0" }
log: { events: "off" }
${extra}
services:
  - name: echo
    port: 0
    bind: [127.0.0.1]
    maxConnections: 9
    destination: 127.0.0.1:${port}
`;
}

/** Every wait in this file is bounded by this (ms). */
const WAIT = 10_000;

/** Opens a page; collects console errors, page errors and CSP violations so a test can assert there were none. */
async function openPage(url: string): Promise<{ page: Page; problems: string[] }> {
  const { page, problems } = await watchedPage(browserOf());
  const res = await page.goto(url, { timeout: WAIT });
  expect(res?.status()).toBe(200);
  return { page, problems };
}

describeIfChromium('the status page in headless Chromium', () => {
  test('a connection through the gateway appears with its client port and bytes, then disappears when closed', async () => {
    const echo = await startEchoServer();
    const gw = await startGateway(echoConfig(echo.port));
    const admin = gw.adminAddress()!;
    const { page, problems } = await openPage(`http://${admin.host}:${admin.port}/`);

    // The script ran (the CSP admitted it) and the event stream is live.
    await page.locator('#link[data-state="open"]').waitFor();
    await page.locator('#state', { hasText: 'running' }).waitFor();
    const service = page.locator('#services tr', { hasText: 'echo' });
    await service.waitFor();
    expect(await service.locator('td').allTextContents()).toEqual(['echo', `127.0.0.1:${portOf(gw, 'echo')}`, '0 / 9', '0', '0 B/s', '0 B/s', '0', '0', '-']);
    await page.locator('#connections td.empty', { hasText: 'no open connections' }).waitFor();

    const c = await connect(portOf(gw, 'echo'));
    c.write('hello!');
    await new Promise((r) => c.once('data', r));
    const clientLabel = `127.0.0.1:${c.localPort}`;
    const row = page.locator('#connections tr[data-id]', { hasText: clientLabel });
    await row.waitFor({ state: 'visible' });
    // Bytes arrive on a later tick than the row itself may; wait for the echoed 6 bytes.
    await row.locator('td:nth-child(9)', { hasText: /^6 B$/ }).waitFor();
    const cells = await row.locator('td').allTextContents();
    expect(cells[1]).toBe('echo');
    expect(cells[2]).toBe(clientLabel);
    expect(cells[3]).toBe('-');
    expect(cells[4]).toBe(`127.0.0.1:${echo.port}`);
    expect(cells[5]).toBe('relaying');
    expect(cells.slice(7, 9)).toEqual(['6 B', '6 B']);
    const id = await row.getAttribute('data-id');
    expect(cells[0]).toBe(id);
    await page.locator('#services tr', { hasText: 'echo' }).locator('td', { hasText: '1 / 9' }).waitFor();
    expect(await page.locator('#count').textContent()).toBe('1');

    c.destroy();
    await row.waitFor({ state: 'detached' });
    await page.locator('#connections td.empty', { hasText: 'no open connections' }).waitFor();
    expect(await page.locator('#count').textContent()).toBe('0');
    expect(problems).toEqual([]);
  }, 60_000);

  test('with workers: 2 (the CLI as a process), the page shows the connections of both workers, then none', async () => {
    const echo = await startEchoServer();
    const file = writeConfig(echoConfig(echo.port, 'workers: 2'));
    const r = runCli(['run', '-c', file]);
    const info = await started(r, 20_000);
    const port = startedPort(info, 'echo');
    const workers = children(r.child.pid!);
    expect(workers).toHaveLength(2);
    const { page, problems } = await openPage(`http://${info.admin!.host}:${info.admin!.port}/`);
    await page.locator('#link[data-state="open"]').waitFor();
    await page.locator('#state', { hasText: 'running' }).waitFor();
    const service = page.locator('#services tr', { hasText: 'echo' });
    await service.waitFor();
    expect(await service.locator('td').allTextContents()).toEqual(['echo', `127.0.0.1:${port}`, '0 / 18', '0', '0 B/s', '0 B/s', '0', '0', '-']);

    // One connection through each worker: the other is stopped while it is accepted and echoed.
    const clients: net.Socket[] = [];
    for (const pid of workers) {
      const others = workers.filter((p) => p !== pid).map((p) => stopProcess(p));
      const c = await connect(port);
      c.write('hello!');
      await new Promise((resolve) => c.once('data', resolve));
      for (const resume of others) resume();
      clients.push(c);
    }
    const ids: string[] = [];
    for (const c of clients) {
      const row = page.locator('#connections tr[data-id]', { hasText: `127.0.0.1:${c.localPort}` });
      await row.locator('td:nth-child(9)', { hasText: /^6 B$/ }).waitFor();
      const cells = await row.locator('td').allTextContents();
      expect(cells.slice(1, 6)).toEqual(['echo', `127.0.0.1:${c.localPort}`, '-', `127.0.0.1:${echo.port}`, 'relaying']);
      ids.push((await row.getAttribute('data-id'))!);
    }
    await page.locator('#services tr', { hasText: 'echo' }).locator('td', { hasText: '2 / 18' }).waitFor();
    expect(await page.locator('#count').textContent()).toBe('2');

    for (const c of clients) c.destroy();
    await page.locator('#connections td.empty', { hasText: 'no open connections' }).waitFor();
    expect(await page.locator('#count').textContent()).toBe('0');
    // Both workers' closed connections in one list, and both workers' points in one chart.
    for (const id of ids) await page.locator(`#closed tr[data-id="${id}"][data-reason="client-closed"]`).waitFor();
    expect(new Set(ids.map((id) => id.split('-')[0])).size).toBe(2);
    // The primary adds up the workers' last minutes.
    const status = await (await fetch(`http://${info.admin!.host}:${info.admin!.port}/status`)).json() as { services: Array<{ lastMinute: unknown }> };
    expect(status.services[0].lastMinute).toEqual({ connections: 2, rejected: 0, failed: 0 });
    expect(Number(await page.locator('#chart-open path.series').getAttribute('data-points'))).toBeGreaterThan(0);
    expect(problems).toEqual([]);
  }, 60_000);

  test("a service's limits and its scheduled mappings: open or closed, and when that changes", async () => {
    const echo = await startEchoServer();
    // A clock the test moves: 17:59 on a Wednesday in Berlin, one minute before the window closes.
    const clock = { now: Date.parse('2026-12-02T17:59:00+01:00') };
    const gw = await startGateway(`
admin: { listen: "127.0.0.1:0" }
schedules:
  office-hours: { timezone: Europe/Berlin, windows: [{ days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00" }] }
services:
  - name: rdp
    port: 0
    bind: [127.0.0.1]
    limits: { perSource: 4, rate: 2/s }
    mappings:
      - { schedule: office-hours, endAtClose: true, destination: "127.0.0.1:${echo.port}" }
`, { gateway: { clock: () => clock.now } });
    const admin = gw.adminAddress()!;
    const { page, problems } = await openPage(`http://${admin.host}:${admin.port}/`);
    const cell = page.locator('#services tr', { hasText: 'rdp' }).locator('td.policy');
    await cell.locator('div', { hasText: 'limits: 4 per source, 2/s per source' }).waitFor({ timeout: WAIT });
    const line = cell.locator('[data-schedule="office-hours"]');
    await line.locator('text=/office-hours open, closes .* \\(ends connections at close\\)/').waitFor({ timeout: WAIT });
    expect(await line.getAttribute('class')).toBe('open');

    clock.now = Date.parse('2026-12-02T18:00:00+01:00');
    await line.locator('text=/office-hours closed, opens /').waitFor({ timeout: WAIT });
    expect(await line.getAttribute('class')).toBe('shut');
    expect(problems).toEqual([]);
  });

  test('services grouped by tag (a service under each of its tags, untagged last), comments shown as text', async () => {
    const echo = await startEchoServer();
    const gw = await startGateway(`
admin: { listen: "127.0.0.1:0" }
services:
  - { name: mail, port: 0, bind: [127.0.0.1], tags: [branch-a, mail], comment: "<script>alert(1)</script> IMAP", destination: "127.0.0.1:${echo.port}" }
  - { name: db, port: 0, bind: [127.0.0.1], tags: [branch-b], destination: "127.0.0.1:${echo.port}" }
  - { name: plain, port: 0, bind: [127.0.0.1], destination: "127.0.0.1:${echo.port}" }
`);
    const admin = gw.adminAddress()!;
    const { page, problems } = await openPage(`http://${admin.host}:${admin.port}/`);
    await page.locator('#services tr.group').first().waitFor({ timeout: WAIT });
    const rows = await page.locator('#services tr').evaluateAll((trs) => trs.map((tr) => (tr.className === 'group' ? `# ${tr.textContent}` : tr.querySelector('td')!.firstChild!.textContent)));
    expect(rows).toEqual(['# tag: branch-a', 'mail', '# tag: branch-b', 'db', '# tag: mail', 'mail', '# untagged', 'plain']);
    const comment = page.locator('#services .comment').first();
    expect(await comment.textContent()).toBe('<script>alert(1)</script> IMAP');
    expect(await page.locator('#services script').count()).toBe(0);
    expect(problems).toEqual([]);
  });

  test('hostile text in the status is shown as text, never parsed as markup', async () => {
    // The page must not trust the data: a destination or user name is rendered with textContent.
    const evil = '<img src=x onerror="document.title=\'pwned\'"><b id=injected>bold</b>';
    const server = createAdminServer({
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
      healthy: () => true,
      ready: () => true,
      status: () => ({
        version: '<i>1</i>', state: 'running',
        services: [{ name: evil, active: 1, maxConnections: 1, listeners: [{ address: evil, intercept: false }] }],
        connections: [
          { id: 'c1', service: evil, client: '127.0.0.1:1', user: evil, auth: null, destination: evil, state: 'relaying', since: evil, seconds: 1, bytesFromClient: 0, bytesToClient: 0 },
          { id: 'c2', service: 's', client: '10.0.0.15:1', user: 'alice', auth: 'certificate', destination: 'd:1', state: 'relaying', since: '', seconds: 1, bytesFromClient: 0, bytesToClient: 0 },
        ],
        closed: [{ id: 'x1', service: evil, client: evil, user: evil, auth: evil, requested: evil, destination: evil, closed: evil, durationMs: evil, bytesFromClient: evil, bytesToClient: 1, reason: evil, error: evil }],
        history: { end: evil, open: [evil, 1, null, 2], fromClient: [1, evil], toClient: { evil } },
      }),
    });
    const port = await listen(server);
    const { page, problems } = await openPage(`http://127.0.0.1:${port}/`);
    const row = page.locator('#connections tr[data-id="c1"]');
    await row.waitFor();
    expect(await row.locator('td').nth(3).textContent()).toBe(evil);
    // The user column says how the user is known: authenticated by certificate, or assumed from the address.
    expect(await page.locator('#connections tr[data-id="c2"] td').nth(3).textContent()).toBe('alice (certificate)');
    expect(await page.locator('#version').textContent()).toBe('<i>1</i>');
    const closed = page.locator('#closed tr[data-id="x1"]');
    expect(await closed.locator('td').nth(2).textContent()).toBe(evil);
    expect(await closed.locator('td').last().textContent()).toBe(evil);
    // Only numbers are drawn: the two of the open series, none of a series that is not a list.
    expect(await page.locator('#chart-open path.series').getAttribute('data-points')).toBe('2');
    expect(await page.locator('#chart-bytes path.to').getAttribute('data-points')).toBe('0');
    expect(await page.locator('#injected').count()).toBe(0);
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.title()).toBe('mapgate status');
    expect(problems).toEqual([]);
  }, 30_000);
});
