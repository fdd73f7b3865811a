import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, copyFileSync, chmodSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listen, onTeardown } from './net';

const SSHD = '/usr/sbin/sshd';

/** A running sshd for tests: where it listens and how to log in to it. */
export interface TestSshd {
  readonly port: number;
  /** The client key authorized for root. */
  readonly clientKey: string;
  /** Runs `ssh … root@127.0.0.1 -p PORT command…` with the test key and no known_hosts; `options` go before the host. */
  ssh(command: string[], options?: string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/**
 * Starts OpenSSH's sshd on 127.0.0.1, port 0: a Node server accepts and runs `sshd -i` (inetd
 * mode) per connection with the socket as its stdin and stdout, because sshd itself cannot
 * listen on port 0. A temporary host key, and a temporary client key authorized for root (the
 * tests run as root), in a temp dir; no PAM, no passwords, nothing of the system's config.
 * sshd needs its privilege-separation directory, `/run/sshd` (the systemd unit makes it): made
 * if missing. Everything is removed, and every sshd killed by PID, at teardown.
 */
export async function startSshd(): Promise<TestSshd> {
  const dir = mkdtempSync(join(tmpdir(), 'mapgate-sshd-'));
  onTeardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const hostKey = join(dir, 'host_ed25519');
  const clientKey = join(dir, 'client_ed25519');
  for (const key of [hostKey, clientKey]) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'mapgate-test', '-f', key]);
  const authorized = join(dir, 'authorized_keys');
  copyFileSync(`${clientKey}.pub`, authorized);
  chmodSync(authorized, 0o600);
  const config = join(dir, 'sshd_config');
  writeFileSync(config, [
    `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${authorized}`,
    'AuthenticationMethods publickey',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'PermitRootLogin prohibit-password',
    // The temp dir is world-readable and not root's home: StrictModes would refuse the key.
    'StrictModes no',
    'UseDNS no',
    'PrintMotd no',
    'PrintLastLog no',
    'PidFile none',
    'LogLevel ERROR',
  ].join('\n') + '\n');

  const children = new Set<ChildProcess>();
  onTeardown(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
  const log: string[] = [];
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    socket.on('error', () => {});
    const child = spawn(SSHD, ['-i', '-e', '-f', config], { stdio: [socket, socket, 'pipe'] });
    children.add(child);
    child.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
    child.once('exit', () => children.delete(child));
    child.once('error', (err) => log.push(String(err)));
    // The child has its own copy of the descriptor; ours would keep the connection open after it exits.
    socket.destroy();
  });
  const port = await listen(server);

  return {
    port,
    clientKey,
    ssh(command, options = []) {
      const args = [
        '-F', '/dev/null', '-i', clientKey, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
        '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'ConnectTimeout=10',
        ...options, '-p', String(port), 'root@127.0.0.1', ...command,
      ];
      return new Promise((resolve) => {
        execFile('ssh', args, { timeout: 20_000 }, (err, stdout, stderr) => {
          const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
          resolve({ code, stdout, stderr: stderr + (code === 0 ? '' : `\n[sshd] ${log.join('')}`) });
        });
      });
    },
  };
}
