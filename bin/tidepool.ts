#!/usr/bin/env node
import { main } from '../runtime/cli';

process.on('uncaughtException', (error) => {
  // A bug must not take every client down silently; log it loudly and keep serving.
  process.stderr.write(`${JSON.stringify({ level: 60, event: 'uncaught-exception', error: error.stack ?? String(error) })}\n`);
});

main(process.argv).catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
