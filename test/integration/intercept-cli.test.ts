import { cliResult, writeConfig } from '../helpers/process';

/** `mapgate intercept-rules` as a process: nftables by default, an iptables script with --iptables, usage errors exit 2. */

const CONFIG = `
admin: { listen: "off" }
interfaces: { lan9: internal, wan9: external }
services:
  - { name: imap, port: 1143, bind: internal, intercept: [143, 993], destination: "mail.corp.example:143" }
  - { name: plain, port: 1144, bind: internal, destination: "x.corp.example:1" }
`;

describe('mapgate intercept-rules', () => {
  test('prints nftables rules for the intercept ports on internal interfaces only', async () => {
    const r = await cliResult(['intercept-rules', '-c', writeConfig(CONFIG)]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('table inet mapgate');
    expect(r.stdout).toContain('iifname "lan9" tcp dport { 143, 993 } redirect');
    expect(r.stdout).not.toContain('"wan9"');
    expect(r.stdout).toContain('nft delete table inet mapgate');
  });

  test('--iptables prints a script with the REDIRECT rules and how to remove them', async () => {
    const r = await cliResult(['intercept-rules', '-c', writeConfig(CONFIG), '--iptables']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/-i lan9 -p tcp --dport 143 -j REDIRECT --to-ports 143/);
    expect(r.stdout).toMatch(/-i lan9 -p tcp --dport 993 -j REDIRECT --to-ports 993/);
    expect(r.stdout).not.toContain('wan9');
  });

  test('--iptables belongs to intercept-rules; a bad config exits 1', async () => {
    const bad = await cliResult(['check', '-c', writeConfig(CONFIG), '--iptables']);
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringContaining('--iptables is an option of intercept-rules')]);
    const broken = await cliResult(['intercept-rules', '-c', writeConfig('services: [ { name: a } ]\n')]);
    expect(broken.code).toBe(1);
  });
});
