/**
 * Lambda handler for the integ tests: logs in through the proxy with the database secret and runs
 * `SELECT 1`. Returns 1 on success; throws (so the assertion fails) otherwise.
 */
import mysql from 'mysql2/promise';
import { Client } from 'pg';

interface DatabaseSecret {
  readonly username: string;
  readonly password: string;
}

// The Lambda runtime provides the AWS SDK v3; it is not a dependency of this package.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { SecretsManagerClient, GetSecretValueCommand } = require('@aws-sdk/client-secrets-manager');

async function readSecret(secretArn: string): Promise<DatabaseSecret> {
  const response = await new SecretsManagerClient({}).send(new GetSecretValueCommand({ SecretId: secretArn }));
  return JSON.parse(response.SecretString) as DatabaseSecret;
}

function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

export async function handler(): Promise<number> {
  const host = requiredEnv('PROXY_HOST');
  const port = Number(requiredEnv('PROXY_PORT'));
  const { username, password } = await readSecret(requiredEnv('SECRET_ARN'));
  // The proxy presents a self-signed certificate by default: encrypt, but do not verify.
  const ssl = { rejectUnauthorized: false };
  if (requiredEnv('ENGINE') === 'mysql') {
    const connection = await mysql.createConnection({ host, port, user: username, password, ssl, connectTimeout: 10_000 });
    try {
      const [rows] = await connection.query('SELECT 1 AS result');
      return (rows as Array<{ result: number }>)[0].result;
    } finally {
      await connection.end();
    }
  }
  const client = new Client({ host, port, user: username, password, database: 'postgres', ssl, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    const result = await client.query<{ result: number }>('SELECT 1 AS result');
    return result.rows[0].result;
  } finally {
    await client.end();
  }
}
