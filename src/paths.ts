import { join } from 'node:path';

/**
 * The package's root directory. This file sits one level below it in every layout the code runs
 * in: src/paths.ts (tests), dist/paths.js (the compiled library) and dist/cli.js (the bundled
 * command, where every module's `__dirname` is dist/). Files found relative to the code are found
 * from here, never from a module's own `__dirname`, which the bundle changes.
 */
export const PACKAGE_ROOT = join(__dirname, '..');
