/**
 * Structured JSON logs to stdout (pino). Secrets never go into a log line: callers log
 * user names and reasons, never passwords, tokens or secret values.
 */
import pino, { Logger } from 'pino';

export type { Logger };

export function createLogger(options: { proxyName: string; level?: string }): Logger {
  return pino({
    level: options.level ?? process.env.TIDEPOOL_LOG_LEVEL ?? 'info',
    base: { proxy: options.proxyName },
    redact: { paths: ['password', '*.password', 'token', '*.token', 'secret', '*.secret'], censor: '[redacted]' },
  });
}

/** A logger that drops everything, for embedding the proxy in tests or tools. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
