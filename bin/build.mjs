// Bundles the runtime CLI into one file (dist/tidepool.js): what the container ships and
// what the integration tests run.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

await build({
  entryPoints: ['bin/tidepool.ts'],
  outfile: 'dist/tidepool.js',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  minify: false,
  logLevel: 'warning',
  // pino loads optional transports by name at runtime; the proxy logs plain JSON to stdout and needs none.
  external: ['pino-pretty'],
});
chmodSync('dist/tidepool.js', 0o755);
