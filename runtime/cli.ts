/**
 * The `tidepool` command line.
 *   tidepool serve --config FILE     (or the config as JSON in TIDEPOOL_CONFIG)
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Command } from 'commander';
import { ConfigError, TidepoolConfig, parseConfig } from './config/schema';
import { createLogger } from './log';
import { SecretError } from './server/credentials';
import { startProxy } from './server/proxy';

export function loadConfig(configFile: string | undefined, env: NodeJS.ProcessEnv): { config: TidepoolConfig; baseDir: string } {
  let text: string;
  let origin: string;
  let baseDir: string;
  if (configFile !== undefined) {
    origin = configFile;
    baseDir = dirname(resolve(configFile));
    try {
      text = readFileSync(configFile, 'utf8');
    } catch (error) {
      throw new ConfigError([`cannot read config file ${configFile}: ${(error as Error).message}`]);
    }
  } else if (env.TIDEPOOL_CONFIG !== undefined && env.TIDEPOOL_CONFIG !== '') {
    origin = 'TIDEPOOL_CONFIG';
    baseDir = process.cwd();
    text = env.TIDEPOOL_CONFIG;
  } else {
    throw new ConfigError(['no config: pass --config FILE or set TIDEPOOL_CONFIG to the config JSON']);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError([`${origin} is not valid JSON: ${(error as Error).message}`]);
  }
  return { config: parseConfig(value), baseDir };
}

export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program.name('tidepool').description('Self-hosted RDS Proxy: a pooling proxy for PostgreSQL and MySQL');
  program
    .command('serve')
    .description('run the proxy')
    .option('-c, --config <file>', 'config file (JSON); defaults to the TIDEPOOL_CONFIG environment variable')
    .action(async (options: { config?: string }) => {
      let loaded: { config: TidepoolConfig; baseDir: string };
      try {
        loaded = loadConfig(options.config, process.env);
      } catch (error) {
        process.stderr.write(`${(error as Error).message}\n`);
        process.exit(2);
      }
      const log = createLogger({ proxyName: loaded.config.proxyName, level: loaded.config.debugLogging ? 'debug' : undefined });
      try {
        const proxy = await startProxy({ config: loaded.config, log, baseDir: loaded.baseDir });
        const stop = (signal: string) => {
          log.info({ event: 'signal', signal }, `received ${signal}`);
          proxy.shutdown().then(
            () => process.exit(0),
            () => process.exit(1),
          );
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      } catch (error) {
        if (error instanceof SecretError) {
          process.stderr.write(`invalid Tidepool config:\n${error.message.split('\n').map((l) => `  - ${l}`).join('\n')}\n`);
          process.exit(2);
        }
        log.fatal({ event: 'start-failed', error: (error as Error).message }, 'Tidepool could not start');
        process.exit(1);
      }
    });
  await program.parseAsync(argv);
}
