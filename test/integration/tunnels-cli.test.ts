import * as net from 'node:net';
import { networkInterfaces } from 'node:os';
import { writeFileSync } from 'node:fs';
import { connect, listen, readUntilClose, roundTrip, startEchoServer, startTaggedServer, unusedPort, waitFor } from '../helpers/net';
import { cliResult, runCli, started, writeConfig, type Running } from '../helpers/process';
import { greeting, request4 } from '../helpers/socks';

/** `mapgate run -L` (ad-hoc tunnels) as a real process on real sockets. */

// A MAPGATE_CONFIG in the test's own environment must not turn a file-less run into one with a file.
const NO_ENV = { MAPGATE_CONFIG: '' };

const cfg = (services: string, extra = ''): string => `
admin: { listen: "127.0.0.1:0" }
log: { events: stdout }
shutdownGrace: 1s
${extra}
services:
${services}`;

function runTunnels(args: string[]): Running {
  return runCli(['run', ...args], NO_ENV);
}

/** The listeners (`service@address:port`) of `service` in the started line. */
function listenersOf(info: { listeners: string[] }, service: string): string[] {
  return info.listeners.filter((l) => l.startsWith(`${service}@`)).sort();
}

async function stop(r: Running): Promise<void> {
  r.child.kill('SIGTERM');
  expect(await r.exit).toBe(0);
}

/** A non-loopback IPv4 address of this host, and its interface; null on a host without one. */
function lanAddress(): { name: string; address: string } | null {
  for (const [name, infos] of Object.entries(networkInterfaces())) {
    const a = infos?.find((i) => !i.internal && i.family === 'IPv4');
    if (a) return { name, address: a.address };
  }
  return null;
}

/** Reads from `s` until `pattern` appears; resolves everything read. */
function readUntil(s: net.Socket, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (d: Buffer): void => {
      got += d.toString('latin1');
      if (pattern.test(got)) {
        s.off('data', onData);
        resolve(got);
      }
    };
    s.on('data', onData);
    s.once('error', reject);
  });
}

describe('mapgate run -L', () => {
  test('without a file: two tunnels at once relay bytes, on loopback only, with the defaults of a services-only config', async () => {
    const [a, b] = await Promise.all([startTaggedServer('a'), startTaggedServer('b')]);
    const [pa, pb] = [await unusedPort(), await unusedPort()];
    const r = runTunnels(['-L', `${pa}:127.0.0.1:${a}`, `-L${pb}:localhost:${b}`]);
    const info = await started(r);
    expect((await roundTrip(pa, 'one')).toString()).toBe('a:one');
    expect((await roundTrip(pb, 'two')).toString()).toBe('b:two');
    // Loopback, both families where the host has ::1; never a LAN address.
    const hasV6 = Object.values(networkInterfaces()).some((i) => i?.some((x) => x.address === '::1'));
    expect(listenersOf(info, `L${pa}`)).toEqual([`L${pa}@127.0.0.1:${pa}`, ...(hasV6 ? [`L${pa}@[::1]:${pa}`] : [])]);
    expect(info.listeners.every((l) => /@(127\.0\.0\.1|\[::1\]):/.test(l))).toBe(true);
    // A config of only `services:`: the admin endpoint on its default address.
    expect(info.admin).toEqual({ host: '127.0.0.1', port: 9464 });
    // No file: a reload re-applies the tunnels and says so; they keep serving.
    r.child.kill('SIGHUP');
    await waitFor(() => r.stderr.some((l) => l.includes('no config file to re-read')), 5000, 'the file-less reload');
    await waitFor(() => r.stderr.some((l) => l.includes('"config reloaded"')), 5000, 'the reload to finish');
    expect((await roundTrip(pa, 'again')).toString()).toBe('a:again');
    await stop(r);
  });

  test('with -c, the tunnels are added to the file\'s services and survive SIGHUP and POST /reload', async () => {
    const [a, b, t] = await Promise.all([startTaggedServer('a'), startTaggedServer('b'), startTaggedServer('t')]);
    const tunnelPort = await unusedPort();
    const text = (dest: number): string => cfg(`  - name: file
    port: 0
    bind: [127.0.0.1]
    destination: 127.0.0.1:${dest}
`);
    const file = writeConfig(text(a));
    const r = runTunnels(['-c', file, '-L', `${tunnelPort}:127.0.0.1:${t}`]);
    const info = await started(r);
    const filePort = Number(info.listeners.find((l) => l.startsWith('file@'))!.split(':').pop());
    expect((await roundTrip(filePort, 'x')).toString()).toBe('a:x');
    expect((await roundTrip(tunnelPort, 'x')).toString()).toBe('t:x');

    // The file changes and SIGHUP re-reads it: the file's service follows, the tunnel stays.
    writeFileSync(file, text(b));
    r.child.kill('SIGHUP');
    await waitFor(() => r.stderr.some((l) => l.includes('"config reloaded"')), 5000, 'the reload');
    const reloaded = JSON.parse(r.stderr.find((l) => l.includes('"config reloaded"'))!);
    expect(JSON.stringify(reloaded)).not.toContain(`L${tunnelPort}`);
    expect((await roundTrip(filePort, 'y')).toString()).toBe('b:y');
    expect((await roundTrip(tunnelPort, 'y')).toString()).toBe('t:y');

    // POST /reload (what `mapgate reload` sends) keeps it too.
    const res = await fetch(`http://127.0.0.1:${info.admin!.port}/reload`, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/services \+0 -0 ~0/);
    expect((await roundTrip(tunnelPort, 'z')).toString()).toBe('t:z');
    const status = await (await fetch(`http://127.0.0.1:${info.admin!.port}/status`)).json() as { services: Array<{ name: string; comment: string | null }> };
    expect(status.services.map((s) => [s.name, s.comment])).toEqual([['file', null], [`L${tunnelPort}`, `-L ${tunnelPort}:127.0.0.1:${t}`]]);
    await stop(r);
  });

  test('socks/: a SOCKS5 client without a login reaches any destination', async () => {
    const { port: echo } = await startEchoServer();
    const p = await unusedPort();
    const r = runTunnels(['-c', writeConfig(cfg('  []\n')), '-L', `socks/127.0.0.1:${p}`]);
    expect(listenersOf(await started(r), `L${p}`)).toEqual([`L${p}@127.0.0.1:${p}`]);
    const s = await connect(p);
    s.write(greeting(0));
    expect([...(await readUntil(s, /^[\s\S]{2}/)).slice(0, 2)].map((c) => c.charCodeAt(0))).toEqual([5, 0]);
    s.write(request4('127.0.0.1', echo));
    const reply = await readUntil(s, /^[\s\S]{10}/);
    expect(reply.charCodeAt(1)).toBe(0);
    const rest = readUntilClose(s);
    s.end('through socks');
    expect((await rest).data.toString()).toBe('through socks');
    await stop(r);
  });

  test('ftp/: a protocol ftp service, which rewrites the 227 to name the gateway', async () => {
    const data = net.createServer((c) => c.destroy());
    const dataPort = await listen(data);
    const server = net.createServer((c) => {
      c.on('error', () => {});
      c.write('220 fake ftp\r\n');
      c.on('data', (d) => {
        if (d.toString().startsWith('PASV')) c.write(`227 Entering Passive Mode (127,0,0,1,${dataPort >> 8},${dataPort & 255})\r\n`);
      });
    });
    const ftpPort = await listen(server);
    const p = await unusedPort();
    const r = runTunnels(['-c', writeConfig(cfg('  []\n')), '-L', `ftp/${p}:127.0.0.1:${ftpPort}`]);
    await started(r);
    const s = await connect(p);
    await readUntil(s, /^220 .*\r\n/);
    s.write('PASV\r\n');
    const m = /227 .*\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)/.exec(await readUntil(s, /227 .*\r\n/));
    expect(m).not.toBeNull();
    // A plain tcp tunnel would pass the server's own data port through.
    expect(Number(m![5]) * 256 + Number(m![6])).not.toBe(dataPort);
    s.destroy();
    await stop(r);
  });

  test('-g listens on the internal interfaces (with a file that tags one), and says when none is tagged', async () => {
    const lan = lanAddress();
    const p = await unusedPort();
    if (lan) {
      const r = runTunnels(['-c', writeConfig(cfg('  []\n', `interfaces: { ${lan.name}: internal }`)), '-g', '-L', `${p}:127.0.0.1:9`]);
      expect(listenersOf(await started(r), `L${p}`)).toContain(`L${p}@${lan.address}:${p}`);
      await stop(r);
    }
    const plain = runTunnels(['-c', writeConfig(cfg('  []\n')), '-g', '-L', `${p}:127.0.0.1:9`]);
    const info = await started(plain);
    expect(info.listeners.every((l) => /@(127\.0\.0\.1|\[::1\]):/.test(l))).toBe(true);
    expect(plain.stderr.some((l) => l.includes('-g: no interface is tagged internal'))).toBe(true);
    await stop(plain);
  });

  test('a tunnel that cannot bind stops start-up with the bind message; a clash with the file is named against its -L', async () => {
    const blocker = net.createServer();
    const taken = await listen(blocker);
    const r = runTunnels(['-c', writeConfig(cfg('  []\n')), '-L', `${taken}:127.0.0.1:9`]);
    expect(await r.exit).toBe(1);
    expect(r.stderr.join('\n')).toContain(`service "L${taken}": cannot listen on 127.0.0.1:${taken}: EADDRINUSE`);
    expect(r.stderr.join('\n')).not.toContain('mapgate started');

    const file = writeConfig(cfg('  - name: imap\n    port: 8143\n    destination: 127.0.0.1:143\n'));
    const clash = await cliResult(['run', '-c', file, '-L', '8143:imap.corp.example:143']);
    expect(clash.code).toBe(1);
    expect(clash.stderr).toContain('-L 8143:imap.corp.example:143: port 8143 is already used by service "imap" on 127.0.0.1');
    expect(clash.stderr).toContain(`mapgate: 1 problem in ${file} + 1 -L tunnel`);
  });

  test('check -L validates the tunnels with the file', async () => {
    const file = writeConfig(cfg('  - name: imap\n    port: 8143\n    destination: 127.0.0.1:143\n'));
    const ok = await cliResult(['check', '-c', file, '-L', '8144:imap.corp.example:143', '-L', 'socks/1080']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/\+ 2 -L tunnels: ok: 3 services, 3 ports/);
    const bad = await cliResult(['check', '-c', file, '-L', '8143:x:1']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('-L 8143:x:1: port 8143 is already used by service "imap"');
  });

  const FORM = 'expected [tcp|ftp|socks/][listen-address:]listen-port:host:port (e.g. -L 8143:imap.corp.example:143)';
  const SOCKS_FORM = 'expected socks/[listen-address:]listen-port (e.g. -L socks/1080)';
  test.each([
    [['-L', '8143:imap'], `-L 8143:imap: missing port: ${FORM}`],
    [['-L', '8143:imap:'], `-L 8143:imap:: missing port: ${FORM}`],
    [['-L', '8143'], `-L 8143: missing host:port: ${FORM}`],
    [['-L', '70000:imap:143'], `-L 70000:imap:143: listen-port 70000 is out of range (1-65535): ${FORM}`],
    [['-L', '8143:imap:0'], `-L 8143:imap:0: port 0 is out of range (1-65535): ${FORM}`],
    [['-L', 'udp/53:dns:53'], `-L udp/53:dns:53: unknown protocol "udp" (tcp, ftp or socks): ${FORM}`],
    [['-L', 'socks/1080:imap:143'], `-L socks/1080:imap:143: socks/ takes no host:port: the SOCKS client names its destination: ${SOCKS_FORM}`],
    [['-L', '::1:8143:imap:143'], `-L ::1:8143:imap:143: too many ":" (an IPv6 address needs brackets: [::1]): ${FORM}`],
    [['-L', 'gw:8143:imap:143'], `-L gw:8143:imap:143: listen address "gw" is not an IP address (an IPv6 one in brackets: [::1]): ${FORM}`],
    [['-L', '8143:[imap]:143'], `-L 8143:[imap]:143: [imap] is not an IPv6 address: ${FORM}`],
    [['-g', '-L', 'socks/1080'], '-L socks/1080: -g would make this SOCKS tunnel (no login, any destination) an open proxy'],
    [['-L'], '-L needs a tunnel'],
    [['-g'], '-g applies to -L tunnels'],
  ])('bad usage %j: exit 2 with the expected form', async (args, message) => {
    const r = await cliResult(['run', ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toContain(`mapgate: ${message}`);
  });

  test('-L belongs to run and check only', async () => {
    const r = await cliResult(['status', '-L', '8143:imap:143']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('-L is an option of run and check');
  });
});
