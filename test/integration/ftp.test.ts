import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClientDisconnectEvent } from '../../src/events/events';
import type { Gateway } from '../../src/gateway';
import { connect, metricValue, nextDisconnect, onTeardown, portOf, readAll, sha256, startGateway } from '../helpers/net';
import { describeWithPeers } from '../helpers/peers';
import { FtpControl, pasvTarget, startVsftpd, VSFTPD, type Vsftpd } from '../helpers/vsftpd';

/**
 * FTP through the gateway with real software: Debian's vsftpd on 127.0.0.2, the gateway on
 * 127.0.0.1, and curl, lftp and Python's ftplib bound to 127.0.0.3. vsftpd accepts data
 * connections only from the control connection's address (the gateway's) and PORT only naming
 * it, and the clients' addresses differ from the gateway's: any data connection that bypassed the
 * gateway would fail, and vsftpd's log shows every address it saw.
 */

const CURL = '/usr/bin/curl';
const LFTP = '/usr/bin/lftp';
const PYTHON = '/usr/bin/python3';
const CLIENT = '127.0.0.3';

const BIG = randomBytes(3 * 1024 * 1024 + 17);
const SMALL = Buffer.from('hello through the gateway\n');

interface Setup {
  readonly ftp: Vsftpd;
  readonly gw: Gateway;
  readonly port: number;
  readonly url: string;
  /** A fresh temp dir for the clients' files. */
  readonly dir: string;
}

async function setup(): Promise<Setup> {
  const ftp = await startVsftpd({ 'big.bin': BIG, 'small.txt': SMALL });
  const gw = await startGateway(`admin: { listen: "off" }
log: { events: "off" }
services:
  - name: ftp
    port: 0
    bind: [127.0.0.1]
    protocol: ftp
    destination: "${ftp.host}:${ftp.port}"
    ftp: { dataTimeout: 2s }
`);
  const port = portOf(gw, 'ftp');
  const dir = mkdtempSync(join(tmpdir(), 'mapgate-ftp-client-'));
  onTeardown(() => rmSync(dir, { recursive: true, force: true }));
  return { ftp, gw, port, url: `ftp://127.0.0.1:${port}`, dir };
}

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

/** Runs a client and resolves its output once the gateway reported the control connection's end. */
async function client(s: Setup, cmd: string, args: string[]): Promise<{ out: string; event: ClientDisconnectEvent }> {
  const event = nextDisconnect(s.gw);
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} exited ${r.code}:\n${r.out}`);
  return { out: r.out, event: await event };
}

/**
 * vsftpd saw only the gateway: every session, command and transfer it logged names 127.0.0.1,
 * and every PORT/EPRT it got named the gateway (never the client's 127.0.0.3).
 */
function onlyThroughGateway(ftp: Vsftpd, transfers: RegExp[] = []): string {
  const log = ftp.log();
  const clients = new Set([...log.matchAll(/Client "([^"]+)"/g)].map((m) => m[1]));
  expect([...clients]).toEqual(['127.0.0.1']);
  expect(log).not.toMatch(/FAIL (?:DOWNLOAD|UPLOAD)|425 |500 Illegal|Security: Bad IP/);
  for (const m of log.matchAll(/"((?:PORT|EPRT) [^"]*)"/g)) expect(m[1]).toMatch(/^PORT 127,0,0,1,|^EPRT \|1\|127\.0\.0\.1\|/);
  for (const t of transfers) expect(log).toMatch(t);
  return log;
}

const curl = (s: Setup, ...args: string[]): Promise<{ out: string; event: ClientDisconnectEvent }> =>
  client(s, CURL, ['-sS', '--max-time', '15', '--interface', CLIENT, ...args]);

const lftp = (s: Setup, script: string, flags: string[] = []): Promise<{ out: string; event: ClientDisconnectEvent }> =>
  client(s, LFTP, [...flags, '-c', `set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 5; set net:socket-bind-ipv4 ${CLIENT}; open -u anonymous, ${s.url}; ${script}`]);

/** ftplib: log in from 127.0.0.3, download big.bin, upload its first MB, list; prints both sha256 and the listing. */
const FTPLIB = `
import ftplib, hashlib, io, sys
port, passive, name = int(sys.argv[1]), sys.argv[2] == 'passive', sys.argv[3]
f = ftplib.FTP()
f.connect('127.0.0.1', port, timeout=10, source_address=('${CLIENT}', 0))
f.login()
f.set_pasv(passive)
got = io.BytesIO()
f.retrbinary('RETR big.bin', got.write)
print(hashlib.sha256(got.getvalue()).hexdigest())
part = got.getvalue()[:1000000]
f.storbinary('STOR upload/' + name, io.BytesIO(part))
print(hashlib.sha256(part).hexdigest())
print(' '.join(sorted(f.nlst())))
f.quit()
`;

describeWithPeers([[VSFTPD, 'vsftpd'], [CURL, 'curl'], [LFTP, 'lftp'], [PYTHON, 'python3']])('FTP through the gateway, with vsftpd', () => {
  test('curl downloads over EPSV (its default); the file, ClientDisconnect and the byte metric count the data channel', async () => {
    const s = await setup();
    const file = join(s.dir, 'big.bin');
    const { event } = await curl(s, `${s.url}/big.bin`, '-o', file);
    expect(sha256(readFileSync(file))).toBe(sha256(BIG));
    // curl sends QUIT; vsftpd answers 221 and closes first.
    expect(event.reason).toBe('upstream-closed');
    expect(event.bytesToClient).toBeGreaterThan(BIG.length);
    expect(event.bytesToClient).toBeLessThan(BIG.length + 4096);
    expect(await metricValue(s.gw, 'mapgate_bytes_total', { service: 'ftp', direction: 'to_client' })).toBe(event.bytesToClient);
    const log = onlyThroughGateway(s.ftp, [/"EPSV"/, /OK DOWNLOAD: Client "127\.0\.0\.1", "\/big\.bin", 3145745 bytes/]);
    // Over EPSV alone: curl falls back to PASV when an EPSV data connection fails.
    expect(log).not.toMatch(/"PASV"/);
  });

  test('curl --disable-epsv downloads over PASV: the 227 names the gateway', async () => {
    const s = await setup();
    const file = join(s.dir, 'big.bin');
    await curl(s, '--disable-epsv', `${s.url}/big.bin`, '-o', file);
    expect(sha256(readFileSync(file))).toBe(sha256(BIG));
    onlyThroughGateway(s.ftp, [/"PASV"/, /OK DOWNLOAD/]);
  });

  test('curl --ftp-port - (active, EPRT): the server connects to the gateway, the gateway to curl', async () => {
    const s = await setup();
    const file = join(s.dir, 'big.bin');
    await curl(s, '--ftp-port', '-', `${s.url}/big.bin`, '-o', file);
    expect(sha256(readFileSync(file))).toBe(sha256(BIG));
    onlyThroughGateway(s.ftp, [/"EPRT \|1\|127\.0\.0\.1\|\d+\|"/, /OK DOWNLOAD/]);
  });

  test('curl --ftp-port - --disable-eprt (active, PORT)', async () => {
    const s = await setup();
    const file = join(s.dir, 'big.bin');
    await curl(s, '--ftp-port', '-', '--disable-eprt', `${s.url}/big.bin`, '-o', file);
    expect(sha256(readFileSync(file))).toBe(sha256(BIG));
    onlyThroughGateway(s.ftp, [/"PORT 127,0,0,1,\d+,\d+"/, /OK DOWNLOAD/]);
  });

  test('curl uploads (-T), passive and active; the upload counts as bytes from the client', async () => {
    const s = await setup();
    const file = join(s.dir, 'up.bin');
    writeFileSync(file, BIG);
    const { event } = await curl(s, '-T', file, `${s.url}/upload/passive.bin`);
    await curl(s, '--ftp-port', '-', '-T', file, `${s.url}/upload/active.bin`);
    expect(sha256(readFileSync(join(s.ftp.uploads, 'passive.bin')))).toBe(sha256(BIG));
    expect(sha256(readFileSync(join(s.ftp.uploads, 'active.bin')))).toBe(sha256(BIG));
    expect(event.bytesFromClient).toBeGreaterThan(BIG.length);
    expect(event.bytesToClient).toBeLessThan(4096);
    onlyThroughGateway(s.ftp, [/OK UPLOAD: Client "127\.0\.0\.1", "\/upload\/passive\.bin"/, /OK UPLOAD: Client "127\.0\.0\.1", "\/upload\/active\.bin"/]);
  });

  test('curl lists a directory', async () => {
    const s = await setup();
    const { out } = await curl(s, `${s.url}/`);
    expect(out).toMatch(/ big\.bin\n/);
    expect(out).toMatch(/ small\.txt\n/);
    expect(out).toMatch(/^d.* upload$/m);
    expect(onlyThroughGateway(s.ftp, [/"EPSV"/, /"LIST"/])).not.toMatch(/"PASV"/);
  });

  test('lftp lists and downloads, passive then active', async () => {
    const s = await setup();
    const passive = join(s.dir, 'passive.bin');
    const active = join(s.dir, 'active.bin');
    const p = await lftp(s, `ls; get big.bin -o ${passive}`);
    const a = await lftp(s, `set ftp:passive-mode no; ls; get big.bin -o ${active}`);
    for (const { out } of [p, a]) expect(out).toMatch(/ small\.txt\n/);
    expect(sha256(readFileSync(passive))).toBe(sha256(BIG));
    expect(sha256(readFileSync(active))).toBe(sha256(BIG));
    onlyThroughGateway(s.ftp, [/"PASV"/, /"PORT 127,0,0,1,/]);
  });

  test.each(['passive', 'active'])("Python's ftplib, %s: retrbinary, storbinary, nlst", async (mode) => {
    const s = await setup();
    const { out } = await client(s, PYTHON, ['-c', FTPLIB, String(s.port), mode, `${mode}.bin`]);
    const [got, sent, list] = out.trim().split('\n');
    expect(got).toBe(sha256(BIG));
    expect(sent).toBe(sha256(BIG.subarray(0, 1000000)));
    expect(sha256(readFileSync(join(s.ftp.uploads, `${mode}.bin`)))).toBe(sent);
    expect(list.split(' ')).toEqual(['big.bin', 'small.txt', 'upload']);
    onlyThroughGateway(s.ftp, [mode === 'passive' ? /"PASV"/ : /"PORT 127,0,0,1,/, /OK UPLOAD/]);
  });

  test('AUTH TLS is answered 534 by the gateway, never forwarded: optional TLS goes on in plain FTP, required TLS fails', async () => {
    const s = await setup();
    const file = join(s.dir, 'small.txt');
    // curl --ssl: "try TLS"; it sends AUTH SSL, then AUTH TLS, and carries on in plain FTP.
    const tried = await curl(s, '-v', '--ssl', `${s.url}/small.txt`, '-o', file);
    expect(tried.out).toMatch(/< 534 Request denied for policy reason/);
    expect(readFileSync(file)).toEqual(SMALL);
    // curl --ssl-reqd: exit 64, CURLE_USE_SSL_FAILED ("Requested SSL level failed").
    expect((await run(CURL, ['-sS', '--interface', CLIENT, '--ssl-reqd', `${s.url}/small.txt`])).code).toBe(64);
    // lftp sends AUTH TLS by default (ftp:ssl-allow): it goes on in plain FTP; with ftp:ssl-force it refuses to log in.
    const allowed = await lftp(s, 'ls', ['-d']);
    expect(allowed.out).toMatch(/---> AUTH TLS\s+<--- 534 /);
    const forced = await run(LFTP, ['-c', `set net:max-retries 1; set ftp:ssl-force yes; set ftp:ssl-allow-anonymous yes; open -u anonymous, ${s.url}; ls`]);
    expect(forced.code).not.toBe(0);
    expect(forced.out).toMatch(/ssl-force is set and server does not support or allow SSL/);
    // ftplib's FTP_TLS: auth() raises error_perm with our reply.
    const py = await run(PYTHON, ['-c', `import ftplib\nf = ftplib.FTP_TLS()\nf.connect('127.0.0.1', ${s.port}, timeout=10)\ntry:\n  f.auth()\nexcept ftplib.error_perm as e:\n  print(e)\nf.quit()`]);
    expect(py.out).toMatch(/^534 Request denied for policy reason/);
    expect(s.ftp.log()).not.toMatch(/AUTH/);
  });

  test('bounce protection, passive: a data connection from another address is reset; the client\'s own is relayed', async () => {
    const s = await setup();
    const { control } = await FtpControl.open(s.port, '127.0.0.1', CLIENT);
    await control.login();
    const target = pasvTarget(await control.cmd('PASV'));
    expect(target.host).toBe('127.0.0.1');
    const intruded = await new Promise<{ data: number; error: string | null }>((resolve) => {
      let data = 0;
      let error: string | null = null;
      const intruder = net.connect({ host: target.host, port: target.port, localAddress: '127.0.0.4' });
      intruder.on('data', (d: Buffer) => (data += d.length));
      intruder.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? 'error'));
      intruder.on('close', () => resolve({ data, error }));
    });
    expect(intruded).toEqual({ data: 0, error: 'ECONNRESET' });
    const data = await connect(target.port, target.host, { localAddress: CLIENT } as net.NetConnectOpts);
    const body = readAll(data);
    expect(await control.cmd('RETR small.txt')).toMatch(/^150 /);
    expect(await body).toEqual(SMALL);
    expect(await control.reply()).toMatch(/^226 /);
    onlyThroughGateway(s.ftp, [/OK DOWNLOAD: Client "127\.0\.0\.1", "\/small\.txt"/]);
  });

  test('bounce protection, active: PORT or EPRT naming another host or a port below 1024 is refused and not forwarded', async () => {
    const s = await setup();
    const { control } = await FtpControl.open(s.port, '127.0.0.1', CLIENT);
    await control.login();
    expect(await control.cmd('PORT 127,0,0,4,195,80')).toBe('500 Illegal PORT command.');
    expect(await control.cmd('PORT 127,0,0,3,0,25')).toBe('500 Illegal PORT command.');
    expect(await control.cmd('EPRT |1|127.0.0.4|50000|')).toBe('500 Illegal EPRT command.');
    expect(await control.cmd('EPRT |2|::1|50000|')).toBe('500 Illegal EPRT command.');
    expect(await control.cmd('EPRT |9|x|50000|')).toMatch(/^522 /);
    expect(await control.cmd('PORT 127,0,0,3')).toMatch(/^501 /);
    expect(await control.cmd('LPRT 4,4,127,0,0,3,2,195,80')).toMatch(/^502 /);
    expect(s.ftp.log()).not.toMatch(/"(?:PORT|EPRT|LPRT)/);
    // The client's own address is fine: the gateway names itself to the server and relays.
    const listener = net.createServer();
    const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve));
    await new Promise<void>((r) => listener.listen(0, CLIENT, r));
    const lport = (listener.address() as net.AddressInfo).port;
    try {
      expect(await control.cmd(`PORT 127,0,0,3,${lport >> 8},${lport & 255}`)).toMatch(/^200 /);
      expect(await control.cmd('RETR small.txt')).toMatch(/^150 /);
      const data = await accepted;
      expect(data.remoteAddress).toBe('127.0.0.1');
      expect(await readAll(data)).toEqual(SMALL);
      expect(await control.reply()).toMatch(/^226 /);
    } finally {
      listener.close();
    }
    onlyThroughGateway(s.ftp, [/"PORT 127,0,0,1,/]);
  });
});
