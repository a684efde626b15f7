/**
 * Loads the secrets clients authenticate against and the proxy logs in to the database
 * with. A secret has the Secrets Manager SecretString shape {"username","password"};
 * other keys are ignored.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { AuthConfig, EngineFamily, effectiveClientAuthType } from '../config/schema';
import type { Credential, CredentialSource } from '../session/types';

export class SecretError extends Error {}

export function parseSecretString(text: string, origin: string): { username: string; password: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new SecretError(`${origin}: not valid JSON`);
  }
  if (typeof value !== 'object' || value === null) throw new SecretError(`${origin}: must be a JSON object`);
  const { username, password } = value as Record<string, unknown>;
  if (typeof username !== 'string' || username === '') throw new SecretError(`${origin}: "username" must be a non-empty string`);
  if (typeof password !== 'string' || password === '') throw new SecretError(`${origin}: "password" must be a non-empty string`);
  return { username, password };
}

export class StaticCredentialSource implements CredentialSource {
  private readonly byUser = new Map<string, Credential>();

  constructor(credentials: Credential[]) {
    for (const credential of credentials) this.byUser.set(credential.username, credential);
  }

  lookup(username: string): Credential | undefined {
    return this.byUser.get(username);
  }

  /** Every credential, in config order. */
  all(): Credential[] {
    return [...this.byUser.values()];
  }

  get size(): number {
    return this.byUser.size;
  }
}

/** Reads every `secretFile` entry (secretArn ones are skipped); relative paths resolve against `baseDir` (the config file's folder). */
export function loadFileCredentials(engine: EngineFamily, auth: AuthConfig[], baseDir: string): StaticCredentialSource {
  const credentials: Credential[] = [];
  const problems: string[] = [];
  auth.forEach((entry, index) => {
    // secretArn entries are read from Secrets Manager (runtime/secrets).
    if (entry.secretArn !== undefined) return;
    const path = resolve(baseDir, entry.secretFile!);
    try {
      const secret = parseSecretString(readFileSync(path, 'utf8'), `auth.${index}.secretFile (${path})`);
      credentials.push({
        username: secret.username,
        password: secret.password,
        clientPasswordAuthType: effectiveClientAuthType(engine, entry),
        iamAuth: entry.iamAuth,
      });
    } catch (error) {
      problems.push(error instanceof SecretError ? error.message : `auth.${index}.secretFile: cannot read ${path}: ${(error as Error).message}`);
    }
  });
  if (problems.length > 0) throw new SecretError(problems.join('\n'));
  return new StaticCredentialSource(credentials);
}
