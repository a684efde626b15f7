/**
 * The `tidepool` command line.
 *   tidepool serve --config FILE     (or the config as JSON in TIDEPOOL_CONFIG)
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Command } from 'commander';
import { ConfigError, TidepoolConfig, parseConfig } from './config/schema';
import { createLogger } from './log';
import { generateAuthToken } from './secrets/iam-token';
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
  program
    .command('token')
    .description('print an IAM authentication token to use as the password for a user whose secret has iamAuth REQUIRED')
    .requiredOption('--proxy <name>', 'the proxy name (proxyName in its config)')
    .requiredOption('--user <dbUser>', 'the database user to log in as')
    .option('--region <region>', 'AWS region of the STS endpoint (default: AWS_REGION)')
    .option('--expires-in <seconds>', 'token lifetime in seconds, at most 900', '900')
    .option('--sts-endpoint <url>', 'STS endpoint to sign for (default: the region\'s public endpoint)')
    .action(async (options: { proxy: string; user: string; region?: string; expiresIn: string; stsEndpoint?: string }) => {
      const region = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
      if (region === undefined) {
        process.stderr.write('no region: pass --region or set AWS_REGION\n');
        process.exit(2);
      }
      const expiresIn = Number(options.expiresIn);
      if (!Number.isInteger(expiresIn) || expiresIn < 1 || expiresIn > 900) {
        process.stderr.write('--expires-in must be a whole number of seconds from 1 to 900\n');
        process.exit(2);
      }
      const token = await generateAuthToken({
        proxyName: options.proxy,
        dbUser: options.user,
        region,
        expiresIn,
        ...(options.stsEndpoint !== undefined ? { stsEndpoint: options.stsEndpoint } : {}),
      });
      process.stdout.write(`${token}\n`);
    });
  await program.parseAsync(argv);
}
