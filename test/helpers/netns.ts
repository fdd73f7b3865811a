import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { onTeardown } from './net';

const runAsync = promisify(execFile);

/**
 * A network namespace of the test's own, reached from the root namespace over a veth pair:
 * a client that is not on loopback (or that can vanish) without touching any real interface.
 * Needs root and `ip netns`. The private /30 exists only on the veth pair a test creates.
 */
export interface Namespace {
  /** Name for `ip netns exec`. */
  readonly name: string;
  /** The namespace's end of the veth pair, for `ip link set ... down`. */
  readonly device: string;
  /** The root end's address: where the gateway listens. */
  readonly gatewayAddress: string;
  /** The namespace end's address: where clients come from. */
  readonly clientAddress: string;
}

export function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Whether this machine lets us create a network namespace (root, iproute2, a kernel that allows it). */
export function netnsAvailable(): boolean {
  const probe = `mgp${process.pid % 100_000}`;
  try {
    ip('netns', 'add', probe);
    ip('netns', 'del', probe);
    return true;
  } catch {
    return false;
  }
}

/** Creates the namespace and its veth pair; both are removed at teardown. `slot` (0–9) keeps two in one test file apart. */
export function createNamespace(slot = 0): Namespace {
  const tag = `${process.pid % 100_000}${slot}`;
  const net = `10.213.${(process.pid * 10 + slot) % 250}`;
  const ns: Namespace = { name: `mgst${tag}`, device: `mgst${tag}c`, gatewayAddress: `${net}.1`, clientAddress: `${net}.2` };
  const root = `mgst${tag}r`;
  const remove = (): void => {
    // Deleting the namespace deletes its end of the veth pair, and with it the root end.
    for (const args of [['netns', 'del', ns.name], ['link', 'del', root]]) {
      try {
        ip(...args);
      } catch {
        // Already gone.
      }
    }
  };
  remove();
  onTeardown(remove);
  ip('netns', 'add', ns.name);
  ip('link', 'add', root, 'type', 'veth', 'peer', 'name', ns.device);
  ip('link', 'set', ns.device, 'netns', ns.name);
  ip('addr', 'add', `${ns.gatewayAddress}/30`, 'dev', root);
  ip('link', 'set', root, 'up');
  ip('netns', 'exec', ns.name, 'ip', 'addr', 'add', `${ns.clientAddress}/30`, 'dev', ns.device);
  ip('netns', 'exec', ns.name, 'ip', 'link', 'set', ns.device, 'up');
  ip('netns', 'exec', ns.name, 'ip', 'link', 'set', 'lo', 'up');
  return ns;
}

/**
 * One HTTP request made from inside a namespace (a client that is not on loopback), with an
 * `authorization` header if given: its status (0: no answer) and body. Asynchronous: the server
 * answering it may run in this process.
 */
export async function requestFrom(ns: string, method: string, url: string, authorization?: string): Promise<{ status: number; body: string }> {
  const headers = authorization === undefined ? {} : { authorization };
  const script = `fetch(${JSON.stringify(url)}, { method: ${JSON.stringify(method)}, headers: ${JSON.stringify(headers)} })` +
    '.then(async (r) => console.log(r.status + " " + await r.text()), (e) => console.log("0 " + e.cause?.code))';
  const { stdout } = await runAsync('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { timeout: 20_000 });
  const out = stdout.replace(/\n$/, ''); // console.log's newline, not the body's
  const space = out.indexOf(' ');
  return { status: Number(out.slice(0, space)), body: out.slice(space + 1) };
}

/** Gives the namespace's end of its veth pair another MAC address (the link is set down for it, then up). */
export function setMac(ns: Namespace, mac: string): void {
  for (const args of [['down'], ['address', mac], ['up']]) ip('netns', 'exec', ns.name, 'ip', 'link', 'set', 'dev', ns.device, ...args);
}

/**
 * One TCP conversation from inside a namespace: connects to host:port, sends `send` and
 * half-closes, and resolves what came back until the other side closed (`ERR <code>` when the
 * connection failed). Asynchronous: the server may run in this process.
 */
export async function tcpFrom(ns: string, host: string, port: number, send = ''): Promise<string> {
  const script = `const s = require('net').connect({ host: ${JSON.stringify(host)}, port: ${port}, allowHalfOpen: true });` +
    'const got = []; s.on("data", (c) => got.push(c));' +
    's.on("error", (e) => { process.stdout.write("ERR " + e.code); process.exit(0); });' +
    `s.on("connect", () => s.end(${JSON.stringify(send)}));` +
    's.on("close", () => process.stdout.write(Buffer.concat(got)));';
  const { stdout } = await runAsync('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { timeout: 20_000 });
  return stdout;
}
