import * as fs from 'node:fs';
import { chromium, type Browser, type BrowserContextOptions, type Page } from 'playwright-core';
import { onTeardown } from './net';

/** Debian's `chromium` package; CI installs it (see .ci/run). */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * `describe` when Chromium is installed. Under CI (.ci/run installs it) a missing browser is a
 * failure, never a silent skip; on a developer's machine without it the tests are skipped, and
 * say so.
 */
export function describeWithChromium(what: string): jest.Describe {
  if (fs.existsSync(CHROMIUM)) return describe;
  if (process.env.CI) throw new Error(`${CHROMIUM} is missing: the ${what} need Debian's chromium package`);
  // eslint-disable-next-line no-console
  console.warn(`SKIPPED ${what}: ${CHROMIUM} is missing (apt-get install -y chromium)`);
  return describe.skip;
}

/**
 * Headless Chromium for the file's tests: launched before them, closed after. The flags are the
 * ones this closed network needs (no background networking, no component updates, no QUIC).
 */
export function useChromium(): () => Browser {
  let browser: Browser | undefined;
  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM)) return;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      timeout: 30_000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 40_000);
  afterAll(async () => {
    await browser?.close();
  });
  return () => browser!;
}

/** Every wait of a browser test is bounded by this (ms). */
export const PAGE_WAIT_MS = 10_000;

/**
 * A page in a fresh context of `browser` (closed at teardown), collecting console errors and page
 * errors (CSP violations among them) so a test can assert there were none.
 */
export async function watchedPage(browser: Browser, options: BrowserContextOptions = {}): Promise<{ page: Page; problems: string[] }> {
  const context = await browser.newContext(options);
  onTeardown(() => context.close());
  const page = await context.newPage();
  page.setDefaultTimeout(PAGE_WAIT_MS);
  const problems: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  return { page, problems };
}
