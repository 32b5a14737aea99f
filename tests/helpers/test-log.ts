/**
 * Figures a test measures (query plans, timings, counts) are printed only with LMHOST_TEST_LOG set, so a
 * passing run stays quiet: `LMHOST_TEST_LOG=1 npx vitest run tests/fast/store-contract.test.ts`.
 */
export function testLog(message: string): void {
  if (process.env.LMHOST_TEST_LOG) process.stdout.write(`${message}\n`);
}
