/**
 * Jest config of `npm run test:stress`: issue 3's large fault tests, each with real processes
 * (the gateway runs as its own `node dist/cli.js run`) and real sockets. Tests run one at a time
 * (--runInBand is forced by maxWorkers: 1) so their memory and descriptor figures are not mixed.
 */
/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  rootDir: '../..',
  roots: ['<rootDir>/test/stress'],
  testMatch: ['**/*.test.ts'],
  maxWorkers: 1,
  testTimeout: 120000,
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', diagnostics: { warnOnly: false } }] },
};
