import * as net from 'node:net';
import type { ClientDisconnectEvent } from '../../src/events/events';
import type { Gateway } from '../../src/gateway';
import { REPLIES } from '../../src/protocols/ftp/session';
import { parseConfig } from '../../src/config/load';
import { connect, listen, nextDisconnect, onTeardown, portOf, readAll, startGateway, unusedPort, waitFor } from '../helpers/net';
import { epsvPort, FtpControl, pasvTarget } from '../helpers/vsftpd';

/**
 * The FTP control channel against a scripted server (on 127.0.0.2, the gateway on 127.0.0.1):
 * what no real server does on demand — replies split anywhere, multi-line replies around a 227,
 * other hosts named, overlong lines — and the limits: data timeouts, data-channel counts, idle,
 * backpressure, half-close.
 */

const SERVER = '127.0.0.2';
const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const local = (text: string): string => text.replace(/\r\n$/, '');

/** Values in arrival order, each taken once. */
class Inbox<T> {
  private readonly items: T[] = [];
  private readonly waiters: Array<(v: T) => void> = [];
  push(v: T): void {
    const w = this.waiters.shift();
    if (w) w(v);
    else this.items.push(v);
  }
  next(): Promise<T> {
    return this.items.length > 0 ? Promise.resolve(this.items.shift()!) : new Promise((r) => this.waiters.push(r));
  }
  get size(): number { return this.items.length; }
}

/** The server's side of one control connection: the lines the gateway sent, and raw writes back. */
class FakeControl {
  readonly lines = new Inbox<string>();
  /** Every line received, in order. */
  readonly seen: string[] = [];
  /** The gateway's FIN came. */
  readonly ended: Promise<void>;
  private buffered = '';

  constructor(readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('error', () => {});
    socket.on('data', (d: string) => {
      this.buffered += d;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl).replace(/\r$/, '');
        this.buffered = this.buffered.slice(nl + 1);
        this.seen.push(line);
        this.lines.push(line);
      }
    });
    this.ended = new Promise((resolve) => socket.once('end', () => resolve()));
  }

  /** The next line the gateway sent; fails the test if it is not `expected` (string or pattern). */
  async expect(expected: string | RegExp): Promise<string> {
    const line = await this.lines.next();
    if (typeof expected === 'string') expect(line).toBe(expected);
    else expect(line).toMatch(expected);
    return line;
  }

  send(raw: string): void {
    this.socket.write(raw, 'latin1');
  }

  /** What arrived after the last LF. */
  get unterminated(): string { return this.buffered; }
}

/** A scripted FTP server: greets each connection, then the test drives it. */
async function startFakeFtp(host = SERVER): Promise<{ port: number; next(): Promise<FakeControl> }> {
  const controls = new Inbox<FakeControl>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const c = new FakeControl(s);
    c.send('220 fake ready\r\n');
    controls.push(c);
  });
  const port = await listen(server, host);
  return { port, next: () => controls.next() };
}

/** A listener standing for the server's data port (passive) or for a client's (active). */
async function startDataListener(host: string): Promise<{ port: number; next(): Promise<net.Socket> }> {
  const accepted = new Inbox<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    accepted.push(s);
  });
  const port = await listen(server, host);
  return { port, next: () => accepted.next() };
}

function ftpYaml(destination: string, ftp = '{ dataTimeout: 2s }', extra = '', bind = '127.0.0.1'): string {
  return `admin: { listen: "off" }
log: { events: "off" }
services:
  - name: ftp
    port: 0
    bind: ["${bind}"]
    protocol: ftp
    destination: "${destination}"
    ftp: ${ftp}
${extra}`;
}

async function startFtpGateway(destination: string, ftp?: string, extra?: string, bind?: string): Promise<{ gw: Gateway; port: number }> {
  const gw = await startGateway(ftpYaml(destination, ftp, extra, bind));
  return { gw, port: portOf(gw, 'ftp') };
}

/** A gateway in front of a fake server, a client logged in to neither (the fake needs no login). */
async function session(ftp?: string, extra?: string): Promise<{ gw: Gateway; port: number; server: FakeControl; client: FtpControl }> {
  const fake = await startFakeFtp();
  const { gw, port } = await startFtpGateway(`${SERVER}:${fake.port}`, ftp, extra);
  const { control: client, greeting } = await FtpControl.open(port);
  expect(greeting).toBe('220 fake ready');
  return { gw, port, server: await fake.next(), client };
}

const hostPort = (host: string, port: number): string => `${host.split('.').join(',')},${port >> 8},${port & 255}`;

/** Connects and resolves how it ended: the bytes read and the error code (ECONNREFUSED, ECONNRESET), if any. */
function attempt(port: number, host = '127.0.0.1', localAddress?: string): Promise<{ data: string; error: string | null }> {
  return new Promise((resolve) => {
    let data = '';
    let error: string | null = null;
    const s = net.connect({ host, port, localAddress });
    s.setEncoding('latin1');
    s.on('data', (d: string) => (data += d));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? 'error'));
    s.on('close', () => resolve({ data, error }));
    // An accepted connection stays open: close ours after a moment to see whether it was.
    setTimeout(() => s.destroy(), 200);
  });
}

/** PASV at the client, answered by the fake with a 227 naming `data` on the server; resolves where the gateway listens. */
async function pasv(client: FtpControl, server: FakeControl, dataPort: number, host = SERVER): Promise<{ host: string; port: number }> {
  client.send('PASV');
  await server.expect('PASV');
  server.send(`227 Entering Passive Mode (${hostPort(host, dataPort)}).\r\n`);
  const target = pasvTarget(await client.reply());
  expect(target.host).toBe('127.0.0.1');
  return target;
}

describe('FTP control channel', () => {
  test('multi-line replies and lines split across writes: only the last line of a 227 carries the address; the rest passes byte for byte', async () => {
    const { server, client } = await session();
    const data = await startDataListener(SERVER);
    client.send('STAT');
    await server.expect('STAT');
    server.send('211-Status of fake\r\n227 Entering Passive Mode (1,2,3,4,5,6) is text here\r\n 229 (|||7|)\n211 End of status\r\n');
    expect(await client.reply()).toBe('211-Status of fake\r\n227 Entering Passive Mode (1,2,3,4,5,6) is text here\r\n 229 (|||7|)\n211 End of status');
    client.send('PASV');
    await server.expect('PASV');
    server.send('227-Entering Passive Mode, in more than one line\r\n 227 (9,9,9,9,9,9)\n227 Entering Passive Mode (127,0,');
    await delay(30);
    server.send(`0,2,${data.port >> 8},${data.port & 255}).\r\n`);
    const reply = await client.reply();
    expect(reply).toMatch(/^227-Entering Passive Mode, in more than one line\r\n 227 \(9,9,9,9,9,9\)\n227 Entering Passive Mode \(127,0,0,1,\d+,\d+\)\.$/);
    const target = pasvTarget(reply);
    expect(target.port).not.toBe(data.port);
    const socket = await connect(target.port, target.host);
    const got = readAll(socket);
    const accepted = await data.next();
    // The server sees the data connection come from the gateway, from the control connection's address.
    expect(accepted.remoteAddress).toBe('127.0.0.1');
    accepted.end('payload');
    expect((await got).toString()).toBe('payload');
    // Exactly one connection: the listener closed once the client's came.
    expect((await attempt(target.port)).error).toBe('ECONNREFUSED');
  });

  test('a 229 written byte by byte is rewritten; a PORT split across writes is still checked', async () => {
    const { server, client } = await session();
    client.send('EPSV');
    await server.expect('EPSV');
    for (const ch of '229 Entering Extended Passive Mode (|||50001|)\r\n') {
      server.send(ch);
      await delay(1);
    }
    const port = epsvPort(await client.reply());
    expect(port).not.toBe(50001);
    for (const piece of ['PO', 'RT 127,0,0,', '4,195,80\r', '\n']) {
      client.socket.write(piece);
      await delay(10);
    }
    expect(await client.reply()).toBe(local(REPLIES.illegalPort('PORT')));
    client.send('NOOP');
    await server.expect('NOOP');
  });

  test('pipelined commands: the rewritten PORT reaches the server before the command after it, and the gateway\'s own replies come in order', async () => {
    const { server, client } = await session();
    const mine = await startDataListener('127.0.0.1');
    client.socket.write(`NOOP\r\nAUTH TLS\r\nPORT ${hostPort('127.0.0.1', mine.port)}\r\nRETR x\r\n`);
    await server.expect('NOOP');
    await delay(50);
    server.send('200 NOOP ok\r\n');
    const port = await server.expect(/^PORT 127,0,0,1,\d+,\d+$/);
    expect(port).not.toBe(`PORT ${hostPort('127.0.0.1', mine.port)}`);
    server.send('200 PORT ok\r\n');
    await server.expect('RETR x');
    server.send('550 no such file\r\n');
    expect(await client.reply()).toBe('200 NOOP ok');
    expect(await client.reply()).toBe(local(REPLIES.auth));
    expect(await client.reply()).toBe('200 PORT ok');
    expect(await client.reply()).toBe('550 no such file');
    expect(server.seen).not.toContain('AUTH TLS');
  });

  test('a reply of the gateway waiting for an unanswered command goes out when the server closes instead', async () => {
    const { server, client } = await session();
    client.socket.write('NOOP\r\nAUTH TLS\r\n');
    await server.expect('NOOP');
    server.socket.end();
    expect(await client.reply()).toBe(local(REPLIES.auth));
    await expect(client.reply()).rejects.toThrow(/closed/);
  });

  test('AUTH, PBSZ and PROT are answered by the gateway; FEAT no longer offers them', async () => {
    const { server, client } = await session();
    client.send('FEAT');
    await server.expect('FEAT');
    server.send('211-Features:\r\n AUTH TLS\r\n EPSV\r\n PBSZ\r\n PROT\r\n UTF8\r\n211 End\r\n');
    expect(await client.reply()).toBe('211-Features:\r\n EPSV\r\n UTF8\r\n211 End');
    expect(await client.cmd('AUTH TLS')).toBe(local(REPLIES.auth));
    expect(await client.cmd('auth ssl')).toBe(local(REPLIES.auth));
    expect(await client.cmd('PBSZ 0')).toBe(local(REPLIES.security('PBSZ')));
    expect(await client.cmd('PROT P')).toBe(local(REPLIES.security('PROT')));
    // Only FEAT's reply is filtered: the same lines in another reply pass.
    client.send('STAT');
    await server.expect('STAT');
    server.send('211-Status:\r\n AUTH TLS\r\n211 End\r\n');
    expect(await client.reply()).toBe('211-Status:\r\n AUTH TLS\r\n211 End');
    expect(server.seen).toEqual(['FEAT', 'STAT']);
  });

  test('a 227 naming another host is refused unless allowForeignPassive; 227/229 naming a port below 1024 or unreadable are refused', async () => {
    const { server, client } = await session();
    const cases: Array<[string, string, string]> = [
      ['PASV', '227 Entering Passive Mode (127,0,0,5,195,80).', REPLIES.foreign],
      ['PASV', '227 Entering Passive Mode (127,0,0,2,0,21).', REPLIES.lowPort],
      ['PASV', '227 Entering Passive Mode.', REPLIES.unreadable],
      ['EPSV', '229 Entering Extended Passive Mode (|||21|)', REPLIES.lowPort],
      ['EPSV', '229 Entering Extended Passive Mode (127.0.0.2:50000)', REPLIES.unreadable],
    ];
    for (const [command, answer, ours] of cases) {
      client.send(command);
      await server.expect(command);
      server.send(`${answer}\r\n`);
      expect(await client.reply()).toBe(local(ours));
    }
    // With allowForeignPassive, the gateway connects to the other host (here 127.0.0.5).
    const fake = await startFakeFtp();
    const { port } = await startFtpGateway(`${SERVER}:${fake.port}`, '{ allowForeignPassive: true }');
    const { control } = await FtpControl.open(port);
    const foreign = await startDataListener('127.0.0.5');
    const target = await pasv(control, await fake.next(), foreign.port, '127.0.0.5');
    const got = readAll(await connect(target.port, target.host));
    (await foreign.next()).end('from elsewhere');
    expect((await got).toString()).toBe('from elsewhere');
  });

  test('a client on IPv6 gets 425 for a 227 (it cannot name IPv6) and a working 229; its PORT is refused, its EPRT becomes the server\'s family', async () => {
    const fake = await startFakeFtp();
    const { port } = await startFtpGateway(`${SERVER}:${fake.port}`, '{ dataTimeout: 2s }', '', '::1');
    const { control: client } = await FtpControl.open(port, '::1');
    const server = await fake.next();
    client.send('PASV');
    await server.expect('PASV');
    server.send('227 Entering Passive Mode (127,0,0,2,195,80).\r\n');
    expect(await client.reply()).toBe(local(REPLIES.useEpsv));
    const data = await startDataListener(SERVER);
    client.send('EPSV');
    await server.expect('EPSV');
    server.send(`229 Entering Extended Passive Mode (|||${data.port}|)\r\n`);
    const got = readAll(await connect(epsvPort(await client.reply()), '::1'));
    (await data.next()).end('over IPv6');
    expect((await got).toString()).toBe('over IPv6');
    expect(await client.cmd('PORT 127,0,0,1,195,80')).toBe(local(REPLIES.illegalPort('PORT')));
    client.send('EPRT |2|::1|50000|');
    await server.expect(/^EPRT \|1\|127\.0\.0\.1\|\d+\|$/);
  });

  test('PORT to a server on IPv6 becomes EPRT |2|; a PORT the server refuses closes its listener at once', async () => {
    const fake = await startFakeFtp('::1');
    const { port } = await startFtpGateway(`[::1]:${fake.port}`);
    const { control: client } = await FtpControl.open(port);
    const server = await fake.next();
    client.send('PORT 127,0,0,1,195,80');
    const line = await server.expect(/^EPRT \|2\|::1\|\d+\|$/);
    const ours = Number(line.split('|')[3]);
    expect((await attempt(ours, '::1')).error).toBeNull();
    client.send('PORT 127,0,0,1,195,81');
    const second = Number((await server.expect(/^EPRT \|2\|::1\|\d+\|$/)).split('|')[3]);
    server.send('200 ok\r\n');
    server.send('500 EPRT refused\r\n');
    expect(await client.reply()).toBe('200 ok');
    expect(await client.reply()).toBe('500 EPRT refused');
    expect((await attempt(second, '::1')).error).toBe('ECONNREFUSED');
  });

  test('active bounce protection: the gateway\'s listener resets a connection that is not from the server, and relays the server\'s to the client', async () => {
    const { server, client } = await session();
    const mine = await startDataListener('127.0.0.1');
    client.send(`PORT ${hostPort('127.0.0.1', mine.port)}`);
    const line = await server.expect(/^PORT 127,0,0,1,\d+,\d+$/);
    const n = line.slice(5).split(',').map(Number);
    const ours = n[4] * 256 + n[5];
    expect(await attempt(ours, '127.0.0.1', '127.0.0.4')).toEqual({ data: '', error: 'ECONNRESET' });
    const fromServer = await connect(ours, '127.0.0.1', { localAddress: SERVER } as net.NetConnectOpts);
    const atClient = await mine.next();
    expect(atClient.remoteAddress).toBe('127.0.0.1');
    fromServer.end('active data');
    expect((await readAll(atClient)).toString()).toBe('active data');
  });

  test('a data listener nobody connects to closes after dataTimeout', async () => {
    const { server, client } = await session('{ dataTimeout: 300ms }');
    const data = await startDataListener(SERVER);
    const soon = await pasv(client, server, data.port);
    expect((await attempt(soon.port)).error).toBeNull();
    const late = await pasv(client, server, data.port);
    await delay(450);
    expect((await attempt(late.port)).error).toBe('ECONNREFUSED');
  });

  test('maxDataChannels: a PASV or PORT beyond it gets 425 until a channel closes; a listener nobody used is superseded, not counted', async () => {
    const { server, client } = await session('{ maxDataChannels: 2 }');
    const data = await startDataListener(SERVER);
    // Superseded: the first listener closes when the second PASV comes.
    const unused = await pasv(client, server, data.port);
    const open: Array<[net.Socket, net.Socket]> = [];
    for (let i = 0; i < 2; i++) {
      const t = await pasv(client, server, data.port);
      open.push([await connect(t.port, t.host), await data.next()]);
    }
    expect((await attempt(unused.port)).error).toBe('ECONNREFUSED');
    client.send('PASV');
    await server.expect('PASV');
    server.send(`227 Entering Passive Mode (${hostPort(SERVER, data.port)}).\r\n`);
    expect(await client.reply()).toBe(local(REPLIES.tooMany));
    expect(await client.cmd(`PORT ${hostPort('127.0.0.1', 50000)}`)).toBe(local(REPLIES.tooMany));
    expect(server.seen.filter((l) => l.startsWith('PORT'))).toEqual([]);
    // The transfer ends: both ends close.
    for (const end of open[0]) end.destroy();
    await delay(50);
    await pasv(client, server, data.port);
  });

  test('every data channel closes with its control connection, and ClientDisconnect counts their bytes', async () => {
    const { gw, server, client } = await session();
    const data = await startDataListener(SERVER);
    const t = await pasv(client, server, data.port);
    const socket = await connect(t.port, t.host);
    const atServer = await data.next();
    const payload = Buffer.alloc(5000, 'd');
    atServer.write(payload);
    let got = 0;
    socket.on('data', (d: Buffer) => (got += d.length));
    await waitFor(() => got === payload.length);
    const listening = await pasv(client, server, data.port);
    const event = nextDisconnect(gw);
    // The server ends its session when the control connection does, as servers do.
    void server.ended.then(() => server.socket.end());
    // Both ends of the data connection see the gateway close it.
    atServer.resume();
    const closedAtServer = new Promise((r) => atServer.once('end', r));
    const closedAtClient = new Promise((r) => socket.once('end', r));
    client.socket.destroy();
    const e: ClientDisconnectEvent = await event;
    await Promise.all([closedAtServer, closedAtClient]);
    expect((await attempt(listening.port)).error).toBe('ECONNREFUSED');
    expect(e.reason).toBe('client-closed');
    expect(e.bytesToClient).toBeGreaterThan(payload.length);
  });

  test('a line longer than 8 KiB closes the connection: from the client (still unterminated) with 500, from the server (whole) with 421', async () => {
    const first = await session();
    const event = nextDisconnect(first.gw);
    first.client.socket.write('NOOP ' + 'x'.repeat(9000));
    expect(await first.client.reply()).toBe(local(REPLIES.clientLine));
    expect(await event).toMatchObject({ reason: 'client-closed', error: 'MAPGATE_ERR_FTP_LINE' });
    await first.server.ended;
    expect(first.server.seen).toEqual([]);
    const second = await session();
    const event2 = nextDisconnect(second.gw);
    second.server.send('200-' + 'y'.repeat(9000) + '\r\n');
    expect(await second.client.reply()).toBe(local(REPLIES.serverLine));
    expect(await event2).toMatchObject({ reason: 'upstream-closed', error: 'MAPGATE_ERR_FTP_LINE' });
  });

  test('passivePorts: data listeners take a free port of the range (a busy one is skipped); none free gets 425', async () => {
    const taken: net.Server[] = [];
    let from = 0;
    // Three consecutive ports free now: held by the test, then handed back one at a time.
    while (taken.length < 3) {
      const port = from === 0 ? await unusedPort() : from + taken.length;
      const s = net.createServer();
      const ok = await new Promise<boolean>((r) => { s.once('error', () => r(false)); s.listen(port, '127.0.0.1', () => r(true)); });
      if (ok && port + 3 <= 65535) {
        if (from === 0) from = port;
        taken.push(s);
      } else {
        for (const t of taken.splice(0)) t.close();
        from = 0;
      }
    }
    onTeardown(() => { for (const t of taken) t.close(); });
    const { server, client } = await session(`{ passivePorts: "${from}-${from + 2}" }`);
    const data = await startDataListener(SERVER);
    await new Promise((r) => taken.pop()!.close(r));
    // Each PASV supersedes the last (its port is free again) and starts at a random port of the range.
    for (let i = 0; i < 5; i++) expect((await pasv(client, server, data.port)).port).toBe(from + 2);
    const t = await pasv(client, server, data.port);
    expect(t.port).toBe(from + 2);
    const socket = await connect(t.port, t.host);
    await data.next();
    // Its listener closed with the connection; the test takes the port back: the range is full.
    const last = net.createServer();
    await new Promise<void>((r) => last.listen(from + 2, '127.0.0.1', r));
    taken.push(last);
    client.send('PASV');
    await server.expect('PASV');
    server.send(`227 Entering Passive Mode (${hostPort(SERVER, data.port)}).\r\n`);
    expect(await client.reply()).toBe(local(REPLIES.noPort));
    socket.destroy();
  });

  test('a reload leaves data channels alone; a shutdown closes them with the control connection', async () => {
    const fake = await startFakeFtp();
    const yaml = ftpYaml(`${SERVER}:${fake.port}`);
    const gw = await startGateway(yaml);
    const { control: client } = await FtpControl.open(portOf(gw, 'ftp'));
    const server = await fake.next();
    const data = await startDataListener(SERVER);
    const open = await pasv(client, server, data.port);
    const echo = await startDataListener('127.0.0.1');
    const reloaded = await gw.reload(parseConfig(`${yaml}  - name: other
    port: 0
    bind: [127.0.0.1]
    destination: "127.0.0.1:${echo.port}"
`, 'test.yaml'));
    expect(reloaded).toMatchObject({ ok: true, added: ['other'] });
    const socket = await connect(open.port, open.host);
    const atServer = await data.next();
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString()));
    atServer.write('after the reload');
    await waitFor(() => got === 'after the reload');
    const listening = await pasv(client, server, data.port);
    const event = nextDisconnect(gw);
    atServer.resume();
    const ended = Promise.all([new Promise((r) => socket.once('end', r)), new Promise((r) => atServer.once('end', r))]);
    await gw.destroy();
    expect((await event).reason).toBe('shutdown');
    await ended;
    expect((await attempt(listening.port)).error).toBe('ECONNREFUSED');
  });

  test('a server that cannot be reached: the client reads 421 before the close', async () => {
    const { gw, port } = await startFtpGateway(`127.0.0.1:${await unusedPort()}`);
    const event = nextDisconnect(gw);
    const s = await connect(port);
    expect((await readAll(s)).toString()).toBe('421 Service not available (connect-failed), closing control connection.\r\n');
    expect(await event).toMatchObject({ reason: 'connect-failed', error: 'ECONNREFUSED', bytesToClient: 73 });
  });

  test('idle timeout: a download that trickles keeps the control connection open; then nothing moving closes it with 421', async () => {
    const { gw, server, client } = await session('{ dataTimeout: 5s }', '    idleTimeout: 400ms\n');
    const data = await startDataListener(SERVER);
    const t = await pasv(client, server, data.port);
    const socket = await connect(t.port, t.host);
    const atServer = await data.next();
    let got = 0;
    socket.on('data', (d: Buffer) => (got += d.length));
    const event = nextDisconnect(gw);
    let idle = false;
    client.reply().then((r) => { idle = r === local(REPLIES.idle); }, () => {});
    for (let i = 0; i < 12; i++) {
      atServer.write('.');
      await delay(100);
    }
    expect(idle).toBe(false);
    expect(got).toBe(12);
    atServer.end();
    const e = await event;
    expect(e.reason).toBe('idle-timeout');
    expect(idle).toBe(true);
  });

  test('half-close: the client\'s FIN reaches the server after its last line (even unterminated); the server\'s last reply still reaches the client', async () => {
    const { gw, server, client } = await session();
    const event = nextDisconnect(gw);
    client.socket.write('NOOP\r\n');
    client.socket.end('QUIT');
    await server.expect('NOOP');
    await server.ended;
    expect(server.unterminated).toBe('QUIT');
    server.socket.end('200 still here\r\n221 bye\r\n');
    expect(await client.reply()).toBe('200 still here');
    expect(await client.reply()).toBe('221 bye');
    expect((await event).reason).toBe('client-closed');
  });

  test('backpressure: a client that reads nothing stops the gateway reading the server, and a client that pipelines without end is read no further', async () => {
    const fake = await startFakeFtp();
    const { gw, port } = await startFtpGateway(`${SERVER}:${fake.port}`);
    const raw = await connect(port);
    raw.pause();
    const server = await fake.next();
    const line = `211-${'x'.repeat(1018)}\r\n`;
    const lines = 40 * 1024;
    let full = false;
    for (let i = 0; i < lines; i++) full = !server.socket.write(line) || full;
    server.socket.write('211 End\r\n');
    expect(full).toBe(true);
    // The gateway stops reading the server once the client's socket is full: what it took (all of it
    // written to the client's socket, kernel and Node buffers) stops growing, far below what was sent.
    const taken = (): number => gw.status().connections[0].bytesToClient;
    let last = -1;
    for (let i = 0; i < 50 && taken() !== last; i++) {
      last = taken();
      await delay(100);
    }
    expect(last).toBeLessThan(lines * line.length / 2);
    let received = 0;
    raw.on('data', (d: Buffer) => (received += d.length));
    raw.resume();
    const total = '220 fake ready\r\n'.length + lines * line.length + '211 End\r\n'.length;
    await waitFor(() => received === total, 10_000, 'every reply');
    // The other way: 200 pipelined commands, none answered: the server gets the first 64, the next 64 once those are answered.
    raw.write('NOOP\r\n'.repeat(200));
    await waitFor(() => server.seen.length >= 64);
    await delay(100);
    expect(server.seen.length).toBe(64);
    server.send('200 ok\r\n'.repeat(64));
    await waitFor(() => server.seen.length >= 128);
    await delay(100);
    expect(server.seen.length).toBe(128);
  });

  test('Telnet sequences before a verb pass through unchanged, and do not hide a PORT from the check', async () => {
    const { server, client } = await session();
    client.socket.write(Buffer.from([0xff, 0xf4, 0xff, 0xf2, ...Buffer.from('ABOR\r\n')]));
    expect(await server.expect(/ABOR$/)).toBe('\xff\xf4\xff\xf2ABOR');
    server.send('226 ABOR ok\r\n');
    expect(await client.reply()).toBe('226 ABOR ok');
    client.socket.write(Buffer.from([0xff, 0xf4, 0xf2, ...Buffer.from('PORT 127,0,0,4,195,80\r\n')]));
    expect(await client.reply()).toBe(local(REPLIES.illegalPort('PORT')));
    expect(server.seen.filter((l) => l.includes('PORT'))).toEqual([]);
  });
});
