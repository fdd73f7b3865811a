/**
 * The live page behind `admin.token` and `admin.tls`, in headless Chromium: the browser answers
 * the Basic challenge with the token as the password and resends it for the page's EventSource
 * (`/events`), which could not carry a bearer header of its own.
 */
import { join } from 'node:path';
import { describeWithChromium, useChromium, watchedPage } from '../helpers/browser';
import { connect, onTeardown, portOf, startEchoServer, startGateway } from '../helpers/net';

const describeIfChromium = describeWithChromium('admin-auth browser tests');
const browserOf = useChromium();
const TOKEN = 'browser-token-5c1d0e8f2a9b';
const WAIT = 10_000;

describeIfChromium('the live page behind a token, over HTTPS, in headless Chromium', () => {
  test('with the token as the Basic password the page loads and its event stream goes live; with another, 401; with none, no page', async () => {
    const echo = await startEchoServer();
    const fixtures = join(__dirname, '..', 'fixtures');
    const gw = await startGateway(`
admin: { listen: "127.0.0.1:0", token: "${TOKEN}", tls: { cert: server.pem, key: server.key } }
log: { events: "off" }
services:
  - { name: echo, port: 0, bind: [127.0.0.1], destination: "127.0.0.1:${echo.port}" }
`, { baseDir: fixtures });
    const url = `https://localhost:${gw.adminAddress()!.port}/`;

    // The test CA is not the browser's: certificate errors are ignored, not the token. A browser
    // with nothing to answer the Basic challenge with (headless: no prompt) gets no page; had it
    // seen no challenge it can answer (Bearer alone), it would show the 401 page instead.
    const anonymous = await browserOf().newContext({ ignoreHTTPSErrors: true });
    onTeardown(() => anonymous.close());
    await expect((await anonymous.newPage()).goto(url, { timeout: WAIT })).rejects.toThrow(/ERR_INVALID_AUTH_CREDENTIALS/);
    const wrong = await browserOf().newContext({ ignoreHTTPSErrors: true, httpCredentials: { username: 'ops', password: 'not-the-token-at-all' } });
    onTeardown(() => wrong.close());
    const refused = await (await wrong.newPage()).goto(url, { timeout: WAIT });
    expect(refused?.status()).toBe(401);
    expect(await refused?.headerValue('www-authenticate')).toBe('Bearer realm="mapgate", Basic realm="mapgate", charset="UTF-8"');
    expect(await refused?.text()).toBe('unauthorized\n');

    const { page, problems } = await watchedPage(browserOf(), { ignoreHTTPSErrors: true, httpCredentials: { username: 'ops', password: TOKEN } });
    const events: number[] = [];
    page.on('response', (r) => { if (new URL(r.url()).pathname === '/events') events.push(r.status()); });
    const res = await page.goto(url, { timeout: WAIT });
    expect(res?.status()).toBe(200);
    await page.locator('#link[data-state="open"]').waitFor();
    const c = await connect(portOf(gw, 'echo'));
    c.write('hello!');
    await new Promise((r) => c.once('data', r));
    await page.locator('#connections tr[data-id]', { hasText: `127.0.0.1:${c.localPort}` }).waitFor();
    expect(events).toContain(200);
    expect(events.filter((s) => s !== 200 && s !== 401)).toEqual([]);
    expect(problems.filter((p) => !/401/.test(p))).toEqual([]);
  }, 60_000);
});
