import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Real devices, servers and processes: files run in parallel, tests within a file in order.
    fileParallelism: true,
    pool: 'forks',
    env: { CINDERLIB_MCP_LOG_LEVEL: 'warn' },
  },
});
