/**
 * Issue 9 part 5: the admin endpoint off loopback. `admin.token` (bearer, or the Basic password)
 * on every path but /healthz and /readyz; `admin.tls` (HTTPS with the configured certificate);
 * both follow reloads; the CLI's `status` and `reload` send the token and pin the certificate;
 * the cluster primary enforces the same; `run` and `check` warn about an unprotected endpoint
 * beyond loopback. Real HTTP(S) clients (node's http/https/tls, curl), real child processes.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as tls from 'node:tls';
import { loadConfigFile } from '../../src/config/load';
import type { LogRecord } from '../../src/events/events';
import { createGateway, type Gateway } from '../../src/gateway';
import { children } from '../helpers/cluster';
import { connect, eventually, listen, onTeardown, portOf, startEchoServer, unusedPort } from '../helpers/net';
import { CLI, cliResult, runCli, started, writeConfig } from '../helpers/process';

const FIXTURES = join(__dirname, '..', 'fixtures');
const fixture = (name: string): string => join(FIXTURES, name);
const CA = readFileSync(fixture('ca.pem'), 'utf8');
const SERVER_FINGERPRINT = new X509Certificate(readFileSync(fixture('server.pem'))).fingerprint256;
const WRONG_FINGERPRINT = new X509Certificate(readFileSync(fixture('wrong-server.pem'))).fingerprint256;

const TOKEN = 'k7Qw-2xN9.vR4t_8LmZp3sYa';
const NEW_TOKEN = 'Hh5c9-Ve2Jq.Lr7X_wB4mT0n';
const CHALLENGE = 'Bearer realm="mapgate", Basic realm="mapgate", charset="UTF-8"';
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;
const bearer = (token: string): string => `Bearer ${token}`;

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
});

/** A fresh directory, removed at teardown. */
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mapgate-admin-auth-'));
  onTeardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: string }

/**
 * One request with node's own client (a fresh socket each time). `https:` URLs are verified
 * against the test CA (the fixture certificate names 127.0.0.1) unless `ca` says otherwise.
 */
function request(url: string, o: { method?: string; authorization?: string; ca?: string } = {}): Promise<Answer> {
  const u = new URL(url);
  const options: https.RequestOptions = {
    host: u.hostname, port: Number(u.port), path: u.pathname, method: o.method ?? 'GET', agent: false,
    headers: o.authorization === undefined ? {} : { authorization: o.authorization },
  };
  return new Promise((resolve, reject) => {
    const req = u.protocol === 'https:' ? https.request({ ...options, ca: o.ca ?? CA }) : http.request(options);
    onTeardown(() => req.destroy());
    req.setTimeout(5000, () => req.destroy(new Error(`no answer from ${url} within 5 s`)));
    req.once('error', reject);
    req.once('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.once('error', reject);
    });
    req.end();
  });
}

/** Opens `/events` with `authorization`; resolves its status and first `status` event, then ends it unless `keep`. */
function openStream(base: string, authorization: string): Promise<{ status: number; type: string | undefined; first: string; ended: Promise<void> }> {
  const u = new URL(`${base}/events`);
  return new Promise((resolve, reject) => {
    const options = { host: u.hostname, port: Number(u.port), path: u.pathname, agent: false as const, headers: { authorization, accept: 'text/event-stream' } };
    const req = u.protocol === 'https:' ? https.get({ ...options, ca: CA }) : http.get(options);
    onTeardown(() => req.destroy());
    req.once('error', reject);
    req.once('response', (res) => {
      req.on('error', () => {});
      res.on('error', () => {});
      const ended = new Promise<void>((r) => res.once('close', () => r()));
      let text = '';
      res.setEncoding('utf8');
      res.on('data', function onEventData(d: string) {
        text += d;
        const at = text.indexOf('event: status\n');
        if (at >= 0 && text.indexOf('\n\n', at) > 0) {
          res.off('data', onEventData);
          resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], first: text.slice(at, text.indexOf('\n\n', at)), ended });
        }
      });
      res.once('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], first: text, ended }));
    });
  });
}

/** Writes `yaml` as mappings.yaml into `dir` and starts a gateway from that file (no default metrics); destroyed at teardown. */
async function fileGateway(dir: string, yaml: string, watch = false): Promise<{ gw: Gateway; file: string; logs: LogRecord[] }> {
  const file = join(dir, 'mappings.yaml');
  writeFileSync(file, yaml);
  const gw = createGateway(loadConfigFile(file), { defaultMetrics: false, watch });
  const logs: LogRecord[] = [];
  gw.on('log', (r) => logs.push(r));
  await gw.start();
  onTeardown(() => gw.destroy());
  return { gw, file, logs };
}

/** `admin:` and one echo service, as YAML. */
function config(o: { echo: number; listen?: string; token?: string; tls?: string; extra?: string }): string {
  return [
    'admin:',
    `  listen: "${o.listen ?? '127.0.0.1:0'}"`,
    ...(o.token ? [`  token: ${o.token}`] : []),
    ...(o.tls ? [`  tls: ${o.tls}`] : []),
    'log: { events: "off" }',
    ...(o.extra ? [o.extra] : []),
    'services:',
    '  - name: echo',
    '    port: 0',
    '    bind: [127.0.0.1]',
    `    destination: 127.0.0.1:${o.echo}`,
    '',
  ].join('\n');
}

function baseOf(gw: Gateway, scheme = 'http'): string {
  const a = gw.adminAddress()!;
  return `${scheme}://${a.host}:${a.port}`;
}

/** Runs curl; resolves its stdout (`-w` output and dumped headers). */
function curl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('curl', ['-sS', '--max-time', '5', ...args], (err, stdout, stderr) => (err ? reject(new Error(`curl ${args.join(' ')}: ${err.message} ${stderr}`)) : resolve(stdout)));
    onTeardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  });
}

const PROTECTED: ReadonlyArray<[string, string]> = [
  ['GET', '/'], ['GET', '/events'], ['GET', '/metrics'], ['GET', '/status'], ['HEAD', '/status'],
  ['POST', '/reload'], ['GET', '/favicon.ico'], ['GET', '/no-such-path'],
];

describe('admin.token', () => {
  test('without the token, or with a wrong one, every path but /healthz and /readyz answers 401 with the challenge and nothing else', async () => {
    const echo = await startEchoServer();
    const dir = tempDir();
    const { gw, logs } = await fileGateway(dir, config({ echo: echo.port, token: JSON.stringify(TOKEN) }));
    // An open connection: /status and the page would show its client address.
    const c = await connect(portOf(gw, 'echo'));
    c.write('x');
    await new Promise((r) => c.once('data', r));
    const wrong = [
      undefined, bearer('wrong-token-wrong-token'), bearer(`${TOKEN}x`), bearer(TOKEN.slice(0, -1)), bearer(''), `Bearer  ${TOKEN.toLowerCase()}`,
      basic('ops', 'wrong-token-wrong-token'), basic(TOKEN, ''), `Basic ${Buffer.from(TOKEN).toString('base64')}`, `Token ${TOKEN}`, TOKEN, `Digest ${TOKEN}`,
    ];
    for (const [method, path] of PROTECTED) {
      for (const authorization of wrong) {
        const res = await request(`${baseOf(gw)}${path}`, { method, authorization });
        expect({ method, path, authorization, status: res.status, challenge: res.headers['www-authenticate'], body: res.body })
          .toEqual({ method, path, authorization, status: 401, challenge: CHALLENGE, body: method === 'HEAD' ? '' : 'unauthorized\n' });
      }
    }
    // None of the refused POST /reload reached the reload.
    expect(logs.filter((l) => /reload/.test(l.msg))).toEqual([]);
  });

  test('the token opens every path: as a bearer token, or as the password of HTTP Basic under any user name', async () => {
    const echo = await startEchoServer();
    const { gw } = await fileGateway(tempDir(), config({ echo: echo.port, token: JSON.stringify(TOKEN) }));
    const c = await connect(portOf(gw, 'echo'));
    c.write('x');
    await new Promise((r) => c.once('data', r));
    for (const authorization of [bearer(TOKEN), `bearer ${TOKEN}`, `BEARER ${TOKEN} `, basic('ops', TOKEN), basic('', TOKEN), basic('any user', TOKEN)]) {
      const status = await request(`${baseOf(gw)}/status`, { authorization });
      expect({ authorization, status: status.status }).toEqual({ authorization, status: 200 });
      expect((JSON.parse(status.body) as { connections: Array<{ client: string }> }).connections.map((x) => x.client)).toEqual([`127.0.0.1:${c.localPort}`]);
      const metrics = await request(`${baseOf(gw)}/metrics`, { authorization });
      expect(metrics.status).toBe(200);
      expect(metrics.body).toContain('mapgate_connections_active{service="echo"} 1');
      const page = await request(`${baseOf(gw)}/`, { authorization });
      expect([page.status, page.headers['content-type']]).toEqual([200, 'text/html; charset=utf-8']);
      expect(page.body).toContain('<title>mapgate status</title>');
      const stream = await openStream(baseOf(gw), authorization);
      expect([stream.status, stream.type]).toEqual([200, 'text/event-stream; charset=utf-8']);
      expect(stream.first).toContain(`"client":"127.0.0.1:${c.localPort}"`);
      const reload = await request(`${baseOf(gw)}/reload`, { method: 'POST', authorization });
      expect(reload.status).toBe(200);
      expect(reload.body).toMatch(/^reloaded: /);
    }
  });

  test('/healthz and /readyz answer without a token, and with a wrong one', async () => {
    const echo = await startEchoServer();
    const { gw } = await fileGateway(tempDir(), config({ echo: echo.port, token: JSON.stringify(TOKEN) }));
    for (const authorization of [undefined, bearer('wrong-token-wrong-token')]) {
      expect(await request(`${baseOf(gw)}/healthz`, { authorization })).toMatchObject({ status: 200, body: 'ok\n' });
      expect(await request(`${baseOf(gw)}/readyz`, { authorization })).toMatchObject({ status: 200, body: 'ready\n' });
    }
  });

  test('curl: -u user:TOKEN and an Authorization: Bearer header get 200; without, 401 and the challenge', async () => {
    const echo = await startEchoServer();
    const { gw } = await fileGateway(tempDir(), config({ echo: echo.port, token: JSON.stringify(TOKEN) }));
    const url = `${baseOf(gw)}/status`;
    expect(await curl(['-o', '/dev/null', '-w', '%{http_code}', '-u', `x:${TOKEN}`, url])).toBe('200');
    expect(await curl(['-o', '/dev/null', '-w', '%{http_code}', '-H', `Authorization: Bearer ${TOKEN}`, url])).toBe('200');
    expect(await curl(['-o', '/dev/null', '-w', '%{http_code}', '-u', 'x:not-the-token-at-all', url])).toBe('401');
    const refused = await curl(['-D', '-', url]);
    expect(refused).toMatch(/^HTTP\/1\.1 401 /);
    // One challenge per line (Chromium reads each line as one); node's client joins them into CHALLENGE.
    expect(refused).toContain('\r\nwww-authenticate: Bearer realm="mapgate"\r\nwww-authenticate: Basic realm="mapgate", charset="UTF-8"\r\n');
    expect(refused.endsWith('\r\n\r\nunauthorized\n')).toBe(true);
  });

  test('a reload with a new token file: the old token gets 401, the new one 200, and an /events stream opened with the old one ends', async () => {
    const echo = await startEchoServer();
    const dir = tempDir();
    const tokenFile = join(dir, 'admin-token');
    writeFileSync(tokenFile, `${TOKEN}\n`);
    const { gw } = await fileGateway(dir, config({ echo: echo.port, token: '{ file: admin-token }' }));
    expect(gw.config.files).toContain(tokenFile);
    // The file ends with a newline, which is not part of the token.
    expect((await request(`${baseOf(gw)}/status`, { authorization: bearer(TOKEN) })).status).toBe(200);
    const stream = await openStream(baseOf(gw), bearer(TOKEN));
    expect(stream.status).toBe(200);

    writeFileSync(tokenFile, `${NEW_TOKEN}\n`);
    const result = await gw.reloadFromFile();
    expect(result.ok).toBe(true);
    expect((await request(`${baseOf(gw)}/status`, { authorization: bearer(TOKEN) })).status).toBe(401);
    expect((await request(`${baseOf(gw)}/status`, { authorization: basic('ops', TOKEN) })).status).toBe(401);
    expect((await request(`${baseOf(gw)}/status`, { authorization: bearer(NEW_TOKEN) })).status).toBe(200);
    expect((await request(`${baseOf(gw)}/status`, { authorization: basic('ops', NEW_TOKEN) })).status).toBe(200);
    await expect(Promise.race([stream.ended.then(() => 'ended'), new Promise((r) => setTimeout(() => r('still open'), 3000))])).resolves.toBe('ended');
  });

  test('editing the token file alone reloads: the config watcher follows it', async () => {
    const echo = await startEchoServer();
    const dir = tempDir();
    const tokenFile = join(dir, 'admin-token');
    writeFileSync(tokenFile, TOKEN);
    const { gw, logs } = await fileGateway(dir, config({ echo: echo.port, token: '{ file: admin-token }' }), true);
    expect((await request(`${baseOf(gw)}/status`, { authorization: bearer(TOKEN) })).status).toBe(200);
    writeFileSync(tokenFile, `${NEW_TOKEN}\n`);
    await eventually(async () => (await request(`${baseOf(gw)}/status`, { authorization: bearer(NEW_TOKEN) })).status === 200, 10_000, 'the new token to work');
    expect((await request(`${baseOf(gw)}/status`, { authorization: bearer(TOKEN) })).status).toBe(401);
    expect(logs.some((l) => l.msg === 'config reloaded')).toBe(true);
    expect(logs.filter((l) => l.msg === 'these settings change only on restart')).toEqual([]);
  });
});

describe('admin.tls', () => {
  test('serves HTTPS with exactly the configured certificate, TLS 1.2 at least; plain HTTP gets no answer', async () => {
    const echo = await startEchoServer();
    const { gw } = await fileGateway(tempDir(), config({ echo: echo.port, token: JSON.stringify(TOKEN), tls: `{ cert: ${fixture('server.pem')}, key: ${fixture('server.key')} }` }));
    const a = gw.adminAddress()!;
    const socket = tls.connect({ host: a.host, port: a.port, ca: CA });
    onTeardown(() => socket.destroy());
    await new Promise((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject); });
    expect(socket.authorized).toBe(true);
    expect(socket.getPeerCertificate().fingerprint256).toBe(SERVER_FINGERPRINT);
    expect(['TLSv1.2', 'TLSv1.3']).toContain(socket.getProtocol());
    socket.destroy();

    expect(await request(`${baseOf(gw, 'https')}/status`, { authorization: bearer(TOKEN) })).toMatchObject({ status: 200 });
    expect(await request(`${baseOf(gw, 'https')}/status`)).toMatchObject({ status: 401, body: 'unauthorized\n' });
    expect(await request(`${baseOf(gw, 'https')}/healthz`)).toMatchObject({ status: 200, body: 'ok\n' });
    // The certificate is what the client's CA vouches for: another CA refuses it.
    await expect(request(`${baseOf(gw, 'https')}/healthz`, { ca: readFileSync(fixture('wrong-ca.pem'), 'utf8') })).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    await expect(request(`${baseOf(gw)}/healthz`)).rejects.toThrow();

    // TLS 1.1 is refused, from a client that can speak it (a control server proves it can).
    const old = { minVersion: 'TLSv1' as const, maxVersion: 'TLSv1.1' as const, ciphers: 'DEFAULT@SECLEVEL=0', rejectUnauthorized: false };
    const control = tls.createServer({ cert: readFileSync(fixture('server.pem')), key: readFileSync(fixture('server.key')), minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' }, (s) => s.end());
    const controlPort = await listen(control);
    const handshake = (port: number): Promise<string> => new Promise((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port, ...old });
      onTeardown(() => s.destroy());
      s.once('secureConnect', () => { resolve(`ok ${s.getProtocol()}`); s.destroy(); });
      s.once('error', (err: NodeJS.ErrnoException) => resolve(`refused ${err.code}`));
    });
    expect(await handshake(controlPort)).toBe('ok TLSv1.1');
    expect(await handshake(a.port)).toMatch(/^refused /);
  });

  test('curl --cacert with the bearer token gets 200 over HTTPS (it checks the name localhost)', async () => {
    const echo = await startEchoServer();
    const { gw } = await fileGateway(tempDir(), config({ echo: echo.port, token: JSON.stringify(TOKEN), tls: `{ cert: ${fixture('server.pem')}, key: ${fixture('server.key')} }` }));
    const url = `https://localhost:${gw.adminAddress()!.port}/status`;
    expect(await curl(['-o', '/dev/null', '-w', '%{http_code}', '--cacert', fixture('ca.pem'), '-H', `Authorization: Bearer ${TOKEN}`, url])).toBe('200');
    expect(await curl(['-o', '/dev/null', '-w', '%{http_code}', '--cacert', fixture('ca.pem'), url])).toBe('401');
  });

  test('a reload with a new certificate: the next connection gets it; keeping the token working', async () => {
    const echo = await startEchoServer();
    const dir = tempDir();
    copyFileSync(fixture('server.pem'), join(dir, 'admin.pem'));
    copyFileSync(fixture('server.key'), join(dir, 'admin.key'));
    const { gw, logs } = await fileGateway(dir, config({ echo: echo.port, token: JSON.stringify(TOKEN), tls: '{ cert: admin.pem, key: admin.key }' }));
    expect(gw.config.files).toEqual(expect.arrayContaining([join(dir, 'admin.pem'), join(dir, 'admin.key')]));
    const a = gw.adminAddress()!;
    const presented = (): Promise<string> => new Promise((resolve, reject) => {
      const s = tls.connect({ host: a.host, port: a.port, rejectUnauthorized: false });
      onTeardown(() => s.destroy());
      s.once('secureConnect', () => { resolve(s.getPeerCertificate().fingerprint256); s.destroy(); });
      s.once('error', reject);
    });
    expect(await presented()).toBe(SERVER_FINGERPRINT);
    copyFileSync(fixture('wrong-server.pem'), join(dir, 'admin.pem'));
    copyFileSync(fixture('wrong-server.key'), join(dir, 'admin.key'));
    expect((await gw.reloadFromFile()).ok).toBe(true);
    expect(await presented()).toBe(WRONG_FINGERPRINT);
    const wrongCa = readFileSync(fixture('wrong-ca.pem'), 'utf8');
    expect((await request(`${baseOf(gw, 'https')}/status`, { authorization: bearer(TOKEN), ca: wrongCa })).status).toBe(200);
    expect(logs.filter((l) => l.msg === 'these settings change only on restart')).toEqual([]);
  });

  test('moving admin.listen or turning TLS on changes nothing until a restart, and a warning says so', async () => {
    const echo = await startEchoServer();
    const dir = tempDir();
    const { gw, file, logs } = await fileGateway(dir, config({ echo: echo.port, token: JSON.stringify(TOKEN) }));
    const restartWarnings = (): unknown[] => logs.filter((l) => l.msg === 'these settings change only on restart').map((l) => l.settings);
    writeFileSync(file, config({ echo: echo.port, token: JSON.stringify(TOKEN), tls: `{ cert: ${fixture('server.pem')}, key: ${fixture('server.key')} }` }));
    expect((await gw.reloadFromFile()).ok).toBe(true);
    expect(restartWarnings()).toEqual([['admin']]);
    // Still plain HTTP, still protected.
    expect((await request(`${baseOf(gw)}/status`, { authorization: bearer(TOKEN) })).status).toBe(200);
    expect((await request(`${baseOf(gw)}/status`)).status).toBe(401);
    writeFileSync(file, config({ echo: echo.port, listen: '127.0.0.1:1', token: JSON.stringify(NEW_TOKEN) }));
    expect((await gw.reloadFromFile()).ok).toBe(true);
    expect(restartWarnings()).toEqual([['admin'], ['admin']]);
    // The token of that reload applies all the same.
    expect((await request(`${baseOf(gw)}/status`, { authorization: bearer(NEW_TOKEN) })).status).toBe(200);
    expect((await request(`${baseOf(gw)}/status`, { authorization: bearer(TOKEN) })).status).toBe(401);
    // listen: off at a reload leaves the running endpoint protected until the restart.
    writeFileSync(file, config({ echo: echo.port, listen: 'off' }));
    expect((await gw.reloadFromFile()).ok).toBe(true);
    expect((await request(`${baseOf(gw)}/status`)).status).toBe(401);
    expect((await request(`${baseOf(gw)}/status`, { authorization: bearer(NEW_TOKEN) })).status).toBe(200);
  });
});

/** A config for `mapgate run` with admin on a fixed loopback port (the CLI's status and reload read it from the file). */
async function protectedCliConfig(echo: number, extra = ''): Promise<{ file: string; port: number; tokenFile: string }> {
  const port = await unusedPort();
  const file = writeConfig(config({ echo, listen: `127.0.0.1:${port}`, token: '{ file: admin-token }', tls: `{ cert: ${fixture('server.pem')}, key: ${fixture('server.key')} }`, extra }));
  onTeardown(() => rmSync(dirname(file), { recursive: true, force: true }));
  const tokenFile = join(dirname(file), 'admin-token');
  writeFileSync(tokenFile, `${TOKEN}\n`);
  return { file, port, tokenFile };
}

describe('the CLI against a protected endpoint', () => {
  test('mapgate status and mapgate reload work against a token + TLS endpoint; with another token they fail', async () => {
    const echo = await startEchoServer();
    const { file, port } = await protectedCliConfig(echo.port);
    const r = runCli(['run', '-c', file]);
    const info = await started(r);
    expect(info.admin).toEqual({ host: '127.0.0.1', port });
    const servicePort = Number(info.listeners[0].split(':').pop());
    const c = await connect(servicePort);
    c.write('x');
    await new Promise((res) => c.once('data', res));

    const status = await cliResult(['status', '-c', file]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^SERVICE +ACTIVE +MAX +TAGS +LISTENERS\\necho +1 +256 +- +127\\.0\\.0\\.1:${servicePort}\\n`));
    expect(status.stdout).toContain(`127.0.0.1:${c.localPort}`);
    const reload = await cliResult(['reload', '-c', file]);
    expect(reload).toMatchObject({ code: 0, stdout: expect.stringMatching(/^reloaded: /) });

    // Another token in another file naming the same endpoint: refused.
    const other = join(dirname(file), 'other.yaml');
    writeFileSync(other, readFileSync(file, 'utf8').replace('admin-token', 'other-token'));
    writeFileSync(join(dirname(file), 'other-token'), NEW_TOKEN);
    const denied = await cliResult(['status', '-c', other]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain('401');
    expect(await cliResult(['reload', '-c', other])).toMatchObject({ code: 1, stdout: 'unauthorized' });
    c.destroy();
    r.child.kill('SIGTERM');
    expect(await r.exit).toBe(0);
  }, 30_000);

  test('the CLI sends the token only to the configured certificate: another one is refused before any request', async () => {
    const requests: Array<string | undefined> = [];
    const fake = https.createServer({ cert: readFileSync(fixture('server.pem')), key: readFileSync(fixture('server.key')) }, (req, res) => {
      requests.push(req.headers.authorization);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ services: [{ name: 'fake', active: 0, maxConnections: 1, listeners: [] }], connections: [] }));
    });
    const port = await listen(fake);
    const dir = tempDir();
    const write = (name: string, cert: string, key: string): string => {
      const file = join(dir, name);
      writeFileSync(file, config({ echo: 1, listen: `127.0.0.1:${port}`, token: JSON.stringify(TOKEN), tls: `{ cert: ${fixture(cert)}, key: ${fixture(key)} }` }));
      return file;
    };
    const pinnedElsewhere = await cliResult(['status', '-c', write('wrong.yaml', 'wrong-server.pem', 'wrong-server.key')]);
    expect(pinnedElsewhere.code).toBe(1);
    expect(pinnedElsewhere.stderr).toContain('admin.tls.cert');
    expect(pinnedElsewhere.stderr).toContain(SERVER_FINGERPRINT);
    expect(requests).toEqual([]);
    const right = await cliResult(['status', '-c', write('right.yaml', 'server.pem', 'server.key')]);
    expect(right.code).toBe(0);
    expect(right.stdout).toMatch(/^SERVICE +ACTIVE +MAX +TAGS +LISTENERS\nfake +0 +1 +-/);
    expect(requests).toEqual([bearer(TOKEN)]);
  }, 30_000);
});

describe('workers: 2', () => {
  test('the primary enforces the token over TLS, follows a new token file, and mapgate status works', async () => {
    const echo = await startEchoServer();
    const { file, port, tokenFile } = await protectedCliConfig(echo.port, 'workers: 2');
    const r = runCli(['run', '-c', file]);
    await started(r, 20_000);
    expect(children(r.child.pid!)).toHaveLength(2);
    const base = `https://127.0.0.1:${port}`;
    for (const path of ['/status', '/metrics', '/']) {
      expect({ path, ...(await request(`${base}${path}`)) }).toMatchObject({ path, status: 401, body: 'unauthorized\n', headers: { 'www-authenticate': CHALLENGE } });
    }
    expect((await request(`${base}/reload`, { method: 'POST' })).status).toBe(401);
    expect(await request(`${base}/healthz`)).toMatchObject({ status: 200 });
    const status = await request(`${base}/status`, { authorization: basic('ops', TOKEN) });
    expect(status.status).toBe(200);
    expect(JSON.parse(status.body)).toMatchObject({ workers: 2 });
    const stream = await openStream(base, bearer(TOKEN));
    expect(stream.status).toBe(200);
    expect(await cliResult(['status', '-c', file])).toMatchObject({ code: 0, stdout: expect.stringMatching(/^SERVICE +ACTIVE +MAX +TAGS +LISTENERS\necho +0 +512 +- /) });

    writeFileSync(tokenFile, `${NEW_TOKEN}\n`);
    await eventually(async () => (await request(`${base}/status`, { authorization: bearer(NEW_TOKEN) })).status === 200, 10_000, 'the new token to work on the primary');
    expect((await request(`${base}/status`, { authorization: bearer(TOKEN) })).status).toBe(401);
    expect((await request(`${base}/metrics`, { authorization: bearer(NEW_TOKEN) })).status).toBe(200);
    await expect(Promise.race([stream.ended.then(() => 'ended'), new Promise((res) => setTimeout(() => res('still open'), 3000))])).resolves.toBe('ended');
    // The CLI reads the new token from the same file.
    expect(await cliResult(['reload', '-c', file])).toMatchObject({ code: 0, stdout: expect.stringMatching(/^reloaded/) });
    r.child.kill('SIGTERM');
    expect(await r.exit).toBe(0);
  }, 60_000);
});

describe('an unprotected endpoint beyond loopback', () => {
  const WARNING = 'is not loopback and admin.token is not set: whoever reaches it sees /status and the live page (client addresses and users); set admin.token (and admin.tls)';

  test('mapgate check warns on stderr when admin.listen is not loopback and no token is set, and still succeeds', async () => {
    const dir = tempDir();
    const check = async (admin: string): Promise<{ code: number | null; stdout: string; stderr: string }> => {
      const file = join(dir, 'check.yaml');
      writeFileSync(file, `admin: ${admin}\nservices:\n  - { name: s, port: 9, bind: [127.0.0.1], destination: "127.0.0.1:9" }\n`);
      return cliResult(['check', '-c', file]);
    };
    const file = join(dir, 'check.yaml');
    for (const [listen, label] of [['0.0.0.0:9464', '0.0.0.0:9464'], ['"[::]:9464"', '[::]:9464'], ['10.1.2.3:9464', '10.1.2.3:9464']]) {
      expect(await check(`{ listen: ${listen} }`)).toEqual({
        code: 0,
        stdout: `${file}: ok: 1 service, 1 port, 0 users, admin ${label.replace(/^\[(.*)\]/, '$1')}`,
        stderr: `mapgate: warning: admin.listen ${label} ${WARNING}`,
      });
    }
    for (const admin of ['{ listen: 127.0.0.1:9464 }', '{ listen: "[::1]:9464" }', '{ listen: localhost:9464 }', '{ listen: "off" }', `{ listen: 0.0.0.0:9464, token: ${TOKEN} }`]) {
      expect({ admin, ...(await check(admin)) }).toMatchObject({ admin, code: 0, stderr: '' });
    }
  });

  test('mapgate run logs the same warning at start, and starts; with a token it does not', async () => {
    const echo = await startEchoServer();
    const bare = writeConfig(config({ echo: echo.port, listen: '0.0.0.0:0' }));
    const r = runCli(['run', '-c', bare]);
    const info = await started(r);
    const warnings = r.stderr.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: string; msg: string }).filter((l) => l.level === 'warn');
    expect(warnings.map((w) => w.msg)).toEqual([`admin.listen 0.0.0.0:0 ${WARNING}`]);
    expect((await request(`http://127.0.0.1:${info.admin!.port}/status`)).status).toBe(200);
    r.child.kill('SIGTERM');
    expect(await r.exit).toBe(0);

    const guarded = writeConfig(config({ echo: echo.port, listen: '0.0.0.0:0', token: JSON.stringify(TOKEN) }));
    const g = runCli(['run', '-c', guarded]);
    const ginfo = await started(g);
    expect(g.stderr.filter((l) => l.includes('"level":"warn"'))).toEqual([]);
    expect((await request(`http://127.0.0.1:${ginfo.admin!.port}/status`)).status).toBe(401);
    g.child.kill('SIGTERM');
    expect(await g.exit).toBe(0);
  }, 30_000);
});
