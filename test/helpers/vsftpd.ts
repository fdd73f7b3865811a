import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTeardown } from './net';
import { collectLines } from './process';

/**
 * Debian's vsftpd for the FTP tests (`.ci/run` installs it), on ANOTHER loopback address than
 * the gateway's (127.0.0.2), so that a data connection that bypasses the gateway shows: vsftpd
 * (`pasv_promiscuous=NO`, `port_promiscuous=NO`) accepts data connections only from the address
 * of the control connection — the gateway's — and PORT only naming that address.
 */

export const VSFTPD = '/usr/sbin/vsftpd';
export const FTP_HOST = '127.0.0.2';

export interface Vsftpd {
  readonly host: string;
  readonly port: number;
  /** The anonymous root (read-only for the `ftp` user). */
  readonly root: string;
  /** `upload/` under the root: where anonymous uploads go. */
  readonly uploads: string;
  /** vsftpd's own log (`log_ftp_protocol`): every command and reply, with the client's address. */
  log(): string;
}

/** The uid and gid of Debian's `ftp` user, which vsftpd runs anonymous sessions as. */
function ftpUser(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('ftp:'));
  if (!line) throw new Error('no ftp user: vsftpd needs the one its Debian package creates');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** A port free on `host` now (vsftpd cannot listen on port 0 and tell us which one it got). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function accepting(host: string, port: number, exited: () => string | null, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host, () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    const why = exited();
    if (why !== null || Date.now() > deadline) throw new Error(`vsftpd not accepting on ${host}:${port}: ${why ?? 'timeout'}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts vsftpd with `files` in its anonymous root; killed (its process group, by PID) at teardown. */
export async function startVsftpd(files: Record<string, Buffer>): Promise<Vsftpd> {
  if (!existsSync(VSFTPD)) throw new Error(`${VSFTPD} is missing: install Debian's vsftpd package (.ci/run does)`);
  const dir = mkdtempSync(join(tmpdir(), 'mapgate-vsftpd-'));
  // Registered first, so it runs last: after vsftpd is gone.
  onTeardown(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const root = join(dir, 'root');
  const uploads = join(root, 'upload');
  const empty = join(dir, 'empty');
  mkdirSync(root, { mode: 0o755 });
  mkdirSync(uploads, { mode: 0o755 });
  mkdirSync(empty, { mode: 0o755 });
  const { uid, gid } = ftpUser();
  chownSync(uploads, uid, gid);
  for (const [name, data] of Object.entries(files)) writeFileSync(join(root, name), data, { mode: 0o644 });
  const port = await freePort(FTP_HOST);
  // A random block of passive ports, so that parallel suites rarely meet (vsftpd retries a busy one anyway).
  const pasvMin = 40000 + Math.floor(Math.random() * 20) * 1000;
  const logFile = join(dir, 'vsftpd.log');
  const conf = join(dir, 'vsftpd.conf');
  writeFileSync(conf, [
    'listen=YES', 'listen_ipv6=NO', `listen_address=${FTP_HOST}`, `listen_port=${port}`, 'background=NO',
    'anonymous_enable=YES', 'local_enable=NO', `anon_root=${root}`, 'no_anon_password=YES',
    'write_enable=YES', 'anon_upload_enable=YES', 'anon_mkdir_write_enable=NO', 'anon_umask=022',
    'pasv_enable=YES', `pasv_min_port=${pasvMin}`, `pasv_max_port=${pasvMin + 999}`, 'port_enable=YES',
    'pasv_promiscuous=NO', 'port_promiscuous=NO', 'connect_from_port_20=NO',
    'seccomp_sandbox=NO', `secure_chroot_dir=${empty}`, 'ssl_enable=NO',
    // The vsftpd-style log (not xferlog's format), with every command and reply and the client's address.
    'xferlog_enable=YES', 'xferlog_std_format=NO', `vsftpd_log_file=${logFile}`, 'log_ftp_protocol=YES', 'syslog_enable=NO',
    'accept_timeout=10', 'connect_timeout=10', 'idle_session_timeout=60', 'data_connection_timeout=60',
    '',
  ].join('\n'), { mode: 0o600 });
  // Its own process group: the sessions it forks are killed with it.
  const child = spawn(VSFTPD, [conf], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const out = collectLines(child);
  onTeardown(() => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
  }));
  const exited = (): string | null => (child.exitCode !== null || child.signalCode !== null ? `exited (${child.exitCode ?? child.signalCode}): ${[...out.stdout, ...out.stderr].join('\n')}` : null);
  await accepting(FTP_HOST, port, exited);
  return { host: FTP_HOST, port, root, uploads, log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '') };
}

/**
 * A raw FTP control connection for the tests that must send what no client sends (bounce
 * attempts, overlong lines) or look at single replies: replies are read whole (multi-line ones
 * up to their last line, RFC 959 §4.2), in order.
 */
export class FtpControl {
  private buffered = '';
  private readonly replies: string[] = [];
  private readonly waiters: Array<(reply: string | null) => void> = [];
  private ended = false;

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('error', () => {});
    // A FIN is answered with ours, as clients do.
    socket.on('end', () => socket.end());
    socket.on('close', () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w(null);
    });
  }

  /** Connects (from `localAddress` if given) and reads the greeting. */
  static async open(port: number, host = '127.0.0.1', localAddress?: string): Promise<{ control: FtpControl; greeting: string }> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host, port, localAddress, allowHalfOpen: true });
      onTeardown(() => s.destroy());
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
    const control = new FtpControl(socket);
    return { control, greeting: await control.reply() };
  }

  private onData(d: string): void {
    this.buffered += d;
    for (;;) {
      const reply = takeReply(this.buffered);
      if (!reply) return;
      this.buffered = this.buffered.slice(reply.length);
      const text = reply.replace(/\r?\n$/, '');
      const w = this.waiters.shift();
      if (w) w(text);
      else this.replies.push(text);
    }
  }

  /** The next whole reply (its lines joined by `\n`, terminators dropped); rejects if the connection closes first. */
  reply(): Promise<string> {
    const ready = this.replies.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.ended) return Promise.reject(new Error(`control connection closed (unread: ${JSON.stringify(this.buffered)})`));
    return new Promise((resolve, reject) => this.waiters.push((r) => (r === null ? reject(new Error(`control connection closed (unread: ${JSON.stringify(this.buffered)})`)) : resolve(r))));
  }

  send(line: string): void {
    this.socket.write(`${line}\r\n`, 'latin1');
  }

  /** Sends a command and resolves its reply. */
  cmd(line: string): Promise<string> {
    this.send(line);
    return this.reply();
  }

  /** Logs in as anonymous; throws unless the server says 230. */
  async login(): Promise<void> {
    let r = await this.cmd('USER anonymous');
    if (r.startsWith('331')) r = await this.cmd('PASS mapgate@');
    if (!r.startsWith('230')) throw new Error(`login failed: ${r}`);
  }

  /** Everything left unread when the connection closed. */
  get unread(): string { return this.buffered; }
}

/** The first whole reply at the start of `text`, with its terminators, or null if it is not all there. */
function takeReply(text: string): string | null {
  let at = 0;
  let code: string | null = null;
  for (;;) {
    const nl = text.indexOf('\n', at);
    if (nl < 0) return null;
    const line = text.slice(at, nl).replace(/\r$/, '');
    at = nl + 1;
    if (code === null) {
      if (!/^\d{3}-/.test(line)) return text.slice(0, at);
      code = line.slice(0, 3);
    } else if (line.startsWith(`${code} `) || line === code) {
      return text.slice(0, at);
    }
  }
}

/** The host and port of a 227 reply. */
export function pasvTarget(reply: string): { host: string; port: number } {
  const m = /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(reply.split('\n').pop()!);
  if (!reply.startsWith('227') || !m) throw new Error(`not a 227: ${reply}`);
  return { host: m.slice(1, 5).join('.'), port: Number(m[5]) * 256 + Number(m[6]) };
}

/** The port of a 229 reply. */
export function epsvPort(reply: string): number {
  const m = /\(\|\|\|(\d+)\|\)/.exec(reply);
  if (!reply.startsWith('229') || !m) throw new Error(`not a 229: ${reply}`);
  return Number(m[1]);
}
