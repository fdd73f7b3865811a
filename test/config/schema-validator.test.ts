import { readFileSync } from 'node:fs';
import Ajv from 'ajv';
import { SCHEMA_PATH, VALIDATOR_PATH } from '../../src/config/load';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { validatorSource } = require('../../schema/build-validator.js') as { validatorSource(): string };

/**
 * The gateway validates with code generated from the schema at build time (no compile at start):
 * it must be the schema's code, and judge documents exactly as compiling the schema would.
 */
describe('the generated schema validator', () => {
  test('is what the schema generates now (npm run build regenerates it)', () => {
    expect(readFileSync(VALIDATOR_PATH, 'utf8')).toBe(validatorSource());
  });

  test('gives the errors a compiled schema gives, for good and bad documents', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const generated = require(VALIDATOR_PATH) as ReturnType<Ajv['compile']>;
    const compiled = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, verbose: true }).compile(JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')));
    const documents: unknown[] = [
      { services: [{ name: 'imap', port: 143, destination: 'mail:143' }] },
      { services: [{ name: 'imap', port: 'x', destination: 7, extra: true }] },
      { services: 'none', admin: { listen: 5 } },
      { services: [{ name: 's', port: 1080, protocol: 'socks', socks: { auth: 'maybe' }, mappings: [{ to: [1] }] }] },
      { schedules: { x: { timezone: 'UTC', windows: [{ days: ['funday'], from: '25:00', to: '1' }] } }, services: [] },
      null,
    ];
    for (const doc of documents) {
      const ok = generated(doc);
      expect(ok).toBe(compiled(doc));
      expect(generated.errors ?? null).toEqual(compiled.errors ?? null);
    }
    expect(generated(documents[1])).toBe(false);
    expect(generated.errors!.length).toBeGreaterThan(2);
  });
});
