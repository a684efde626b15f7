/** Unit tests sit next to the code; end-to-end and construct tests live in integ/. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/runtime', '<rootDir>/constructs', '<rootDir>/integ'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { isolatedModules: true, diagnostics: false }] },
  testTimeout: 120000,
  maxWorkers: 2,
};
