#!/usr/bin/env node
import { main } from '../runtime/cli';

// A bug in one session must not take every client down: log it loudly and keep serving.
process.on('uncaughtException', (error) => {
  process.stderr.write(`${JSON.stringify({ level: 60, event: 'uncaught-exception', error: error.stack ?? String(error) })}\n`);
});
process.on('unhandledRejection', (reason) => {
  const error = reason instanceof Error ? (reason.stack ?? reason.message) : String(reason);
  process.stderr.write(`${JSON.stringify({ level: 60, event: 'unhandled-rejection', error })}\n`);
});

main(process.argv).catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
