import type { Context } from '../context';
import type { CertificateMatch, User } from '../types';
import { asList, cidrs, isObj } from './values';

const CERT_FIELDS = ['cn', 'ou', 'o', 'dns', 'uri', 'email'] as const;

function certificateMatches(value: unknown): CertificateMatch[] {
  return asList(value).filter(isObj).map((m) => {
    const field = (k: string): string | null => (typeof m[k] === 'string' ? (m[k] as string) : null);
    return Object.freeze(Object.fromEntries(CERT_FIELDS.map((k) => [k, field(k)])) as unknown as CertificateMatch);
  });
}

/** `users`: each by source addresses, MAC addresses and client certificates; `names` holds every user defined. */
export function usersConfig(ctx: Context, value: unknown): { users: User[]; names: Set<string> } {
  const users: User[] = [];
  const names = new Set<string>();
  if (!isObj(value)) return { users, names };
  for (const [name, u] of Object.entries(value)) {
    names.add(name);
    if (!isObj(u)) continue;
    users.push(Object.freeze({
      name,
      sources: Object.freeze(cidrs(ctx, ['users', name, 'sources'], u.sources)),
      certificates: Object.freeze(certificateMatches(u.certificates)),
      // One spelling, as the neighbour table prints it: lower case, colons.
      macs: Object.freeze(asList(u.macs).filter((m): m is string => typeof m === 'string').map((m) => m.toLowerCase().replace(/-/g, ':'))),
    }));
  }
  return { users, names };
}
