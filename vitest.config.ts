import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/unit/**/*.test.ts'],
    environment: 'node',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // A poll waits on an event, not a time: the default 1 s is too short on a busy 2-core machine.
    expect: { poll: { timeout: 15_000 } },
  },
});
