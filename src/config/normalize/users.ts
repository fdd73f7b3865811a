import { parseScryptHash } from '../../auth/password';
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
    // The schema checked the form; a hash whose parameters could never verify is refused here.
    if (typeof u.password === 'string' && /^scrypt:/.test(u.password) && parseScryptHash(u.password) === null) {
      ctx.add(['users', name, 'password'], 'this scrypt hash has parameters no login could verify with (N a power of two, at most 32 MiB of memory, p at most 16): print a new one with `mapgate passwd`');
    }
    users.push(Object.freeze({
      name,
      sources: Object.freeze(cidrs(ctx, ['users', name, 'sources'], u.sources)),
      certificates: Object.freeze(certificateMatches(u.certificates)),
      // One spelling, as the neighbour table prints it: lower case, colons.
      password: typeof u.password === 'string' ? u.password : null,
      macs: Object.freeze(asList(u.macs).filter((m): m is string => typeof m === 'string').map((m) => m.toLowerCase().replace(/-/g, ':'))),
    }));
  }
  return { users, names };
}
