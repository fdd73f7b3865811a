import type { CertificateMatch, User } from '../config/types';
import { anyContains, type ClientAddress } from '../config/cidr';

/**
 * How the gateway knows who a client is: `certificate` (authenticated: a verified client
 * certificate matched a user), `password` (authenticated: a SOCKS login), `mac` (assumed from the MAC address the kernel's neighbour table
 * gives for the client's IPv4 address), `source` (assumed from the client address, as WinGate
 * assumes users), or null (unknown).
 */
export type Auth = 'certificate' | 'password' | 'mac' | 'source' | null;

export interface Identity {
  readonly user: string | null;
  readonly auth: Auth;
}

/** The fields of a verified client certificate that users are matched by; every list may be empty. */
export interface PeerCertificate {
  readonly cn: readonly string[];
  readonly ou: readonly string[];
  readonly o: readonly string[];
  readonly dns: readonly string[];
  readonly uri: readonly string[];
  readonly email: readonly string[];
}

const NOBODY: Identity = Object.freeze({ user: null, auth: null });

/** The first user whose sources contain the client address, or null. */
export function findUser(users: readonly User[], client: ClientAddress | null): string | null {
  if (client === null) return null;
  for (let i = 0; i < users.length; i++) if (anyContains(users[i].sources, client)) return users[i].name;
  return null;
}

/** The first user one of whose MAC addresses is `mac` (lower case), or null. */
export function findUserByMac(users: readonly User[], mac: string): string | null {
  for (let i = 0; i < users.length; i++) if (users[i].macs.includes(mac)) return users[i].name;
  return null;
}

/** Whether any user is recognised by MAC address (only then is the neighbour table read). */
export function anyMacUsers(users: readonly User[]): boolean {
  return users.some((u) => u.macs.length > 0);
}

/** Whether every field the entry gives is one of the certificate's values for it (exact match). */
export function certificateMatches(m: CertificateMatch, c: PeerCertificate): boolean {
  return (m.cn === null || c.cn.includes(m.cn))
    && (m.ou === null || c.ou.includes(m.ou))
    && (m.o === null || c.o.includes(m.o))
    && (m.dns === null || c.dns.includes(m.dns))
    && (m.uri === null || c.uri.includes(m.uri))
    && (m.email === null || c.email.includes(m.email));
}

/**
 * Who the client is. With a verified certificate: the first user one of whose entries it
 * matches, or nobody (the certificate says who the client is, and it is no user of ours; its
 * address does not make it one). Without: the user whose password the client gave (`login`,
 * checked by the SOCKS stage), then the first user with the client's MAC address (`mac`, looked
 * up by the caller), then the first user whose sources contain the address, or nobody. Pure.
 */
export function identify(
  users: readonly User[], client: ClientAddress | null, certificate: PeerCertificate | null, mac: string | null = null, login: string | null = null,
): Identity {
  if (certificate !== null) {
    for (let i = 0; i < users.length; i++) {
      const entries = users[i].certificates;
      for (let j = 0; j < entries.length; j++) if (certificateMatches(entries[j], certificate)) return { user: users[i].name, auth: 'certificate' };
    }
    return NOBODY;
  }
  if (login !== null) return { user: login, auth: 'password' };
  if (mac !== null) {
    const byMac = findUserByMac(users, mac);
    if (byMac !== null) return { user: byMac, auth: 'mac' };
  }
  const user = findUser(users, client);
  return user === null ? NOBODY : { user, auth: 'source' };
}
