/**
 * SecretsManagerCredentialSource with the real @aws-sdk/client-secrets-manager client,
 * pointed at a local endpoint that speaks the service's JSON 1.1 protocol.
 */
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { silentLogger } from '../../runtime/log';
import { StaticCredentialSource } from '../../runtime/server/credentials';
import {
  CombinedCredentialSource,
  SecretsManagerCredentialSource,
  createSecretsManagerClient,
  secretArnEntries,
  startSecretsManagerSource,
  type SecretArnEntry,
} from '../../runtime/secrets/secrets-manager';
import { startLocalSecretsManagerEndpoint, type LocalSecretsManagerEndpoint } from './secrets-manager-endpoint';

const ACCESS_KEY = 'AKIDTESTSECRETS';

interface LogLine {
  obj: object;
  msg: string;
}

function recordingLogger(): { warn(obj: object, msg: string): void; info(obj: object, msg: string): void; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return {
    lines,
    warn: (obj, msg) => lines.push({ obj, msg }),
    info: (obj, msg) => lines.push({ obj, msg }),
  };
}

function entry(secretArn: string, iamAuth: 'DISABLED' | 'REQUIRED' = 'DISABLED'): SecretArnEntry {
  return { secretArn, clientPasswordAuthType: 'POSTGRES_SCRAM_SHA_256', iamAuth };
}

describe('Secrets Manager credential source (real SDK client, local endpoint)', () => {
  let endpoint: LocalSecretsManagerEndpoint;
  let client: SecretsManagerClient;
  const sources: SecretsManagerCredentialSource[] = [];

  beforeAll(async () => {
    endpoint = await startLocalSecretsManagerEndpoint({ accessKeyIds: [ACCESS_KEY] });
    client = createSecretsManagerClient(
      { region: endpoint.region, secretsManagerEndpoint: endpoint.url },
      { credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: 'test-secret-key' }, maxAttempts: 1 },
    );
  });
  afterEach(() => {
    for (const s of sources.splice(0)) s.stop();
  });
  afterAll(async () => {
    client.destroy();
    await endpoint.close();
  });

  function source(entries: SecretArnEntry[], extra: { onDemandMinIntervalSeconds?: number; refreshIntervalSeconds?: number; now?: () => number } = {}) {
    const logger = recordingLogger();
    const s = new SecretsManagerCredentialSource({ client, entries, logger, refreshIntervalSeconds: 0, ...extra });
    sources.push(s);
    return { source: s, logger };
  }

  it('reads username and password, ignoring other keys, with the entry auth settings', async () => {
    const arn = endpoint.putSecret('app-user', JSON.stringify({ username: 'app', password: 'p1', engine: 'postgres', host: 'db', port: 5432 }));
    const { source: s } = source([{ secretArn: arn, clientPasswordAuthType: 'POSTGRES_MD5', iamAuth: 'REQUIRED' }]);
    await s.start();
    expect(s.lookup('app')).toEqual({ username: 'app', password: 'p1', clientPasswordAuthType: 'POSTGRES_MD5', iamAuth: 'REQUIRED' });
    expect(s.lookup('nobody')).toBeUndefined();
    expect(endpoint.calls.some((c) => c.target === 'secretsmanager.GetSecretValue' && c.secretId === arn && c.status === 200)).toBe(true);
  });

  it('picks up a rotated password on the background refresh', async () => {
    const arn = endpoint.putSecret('rot-bg', JSON.stringify({ username: 'rotbg', password: 'old' }));
    const logger = recordingLogger();
    const s = new SecretsManagerCredentialSource({ client, entries: [entry(arn)], logger, refreshIntervalSeconds: 0.2 });
    sources.push(s);
    await s.start();
    expect(s.lookup('rotbg')?.password).toBe('old');
    endpoint.putSecret('rot-bg', JSON.stringify({ username: 'rotbg', password: 'new' }));
    const deadline = Date.now() + 5000;
    while (s.lookup('rotbg')?.password !== 'new' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(s.lookup('rotbg')?.password).toBe('new');
    // The rotation is logged without the value.
    expect(JSON.stringify(logger.lines)).not.toContain('"new"');
  });

  it('picks up a rotated password on demand, rate-limited per secret', async () => {
    let clock = 1_000_000;
    const arn = endpoint.putSecret('rot-od', JSON.stringify({ username: 'rotod', password: 'v1' }));
    const { source: s } = source([entry(arn)], { onDemandMinIntervalSeconds: 10, now: () => clock });
    await s.start();
    endpoint.putSecret('rot-od', JSON.stringify({ username: 'rotod', password: 'v2' }));
    // Right after the start read, an on-demand refresh is within the minimum interval: no call.
    const readsBefore = endpoint.readsOf('rot-od');
    expect(await s.refresh('rotod')).toBe(false);
    expect(endpoint.readsOf('rot-od')).toBe(readsBefore);
    expect(s.lookup('rotod')?.password).toBe('v1');
    clock += 10_000;
    expect(await s.refresh('rotod')).toBe(true);
    expect(s.lookup('rotod')?.password).toBe('v2');
    // A storm of refreshes (a client hammering a wrong password) makes at most one call.
    clock += 10_000;
    const before = endpoint.readsOf('rot-od');
    await Promise.all(Array.from({ length: 20 }, () => s.refresh('rotod')));
    expect(endpoint.readsOf('rot-od') - before).toBe(1);
    // Unchanged password: refresh reports false, so the engine does not retry the login.
    expect(await s.refresh('rotod')).toBe(false);
  });

  it('an unreadable secret fails only its own user, logs no secret values, and recovers', async () => {
    const good = endpoint.putSecret('good', JSON.stringify({ username: 'gooduser', password: 'goodpw' }));
    const denied = endpoint.putSecret('denied', JSON.stringify({ username: 'denieduser', password: 'deniedpw' }));
    const malformed = endpoint.putSecret('malformed', JSON.stringify({ username: 'mal', pass: 'x' }));
    const missing = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-abcdef';
    endpoint.setDenied('denied', true);
    let clock = 5_000_000;
    const { source: s, logger } = source([entry(good), entry(denied), entry(malformed), entry(missing)], { now: () => clock });
    await s.start();
    expect(s.lookup('gooduser')?.password).toBe('goodpw');
    expect(s.lookup('denieduser')).toBeUndefined();
    expect(s.lookup('mal')).toBeUndefined();
    const warnings = logger.lines.filter((l) => l.msg.startsWith('cannot read secret'));
    expect(warnings.map((w) => (w.obj as { secretArn: string }).secretArn).sort()).toEqual([denied, malformed, missing].sort());
    expect(JSON.stringify(warnings)).toContain('AccessDeniedException');
    expect(JSON.stringify(warnings)).toContain('ResourceNotFoundException');
    expect(JSON.stringify(logger.lines)).not.toMatch(/goodpw|deniedpw/);
    expect(s.status().filter((st) => st.ok).map((st) => st.secretArn)).toEqual([good]);

    // Access granted again: the failed login's refresh (user unknown so far) reads it.
    endpoint.setDenied('denied', false);
    clock += 60_000;
    expect(await s.refresh('denieduser')).toBe(true);
    expect(s.lookup('denieduser')?.password).toBe('deniedpw');
    expect(s.lookup('gooduser')?.password).toBe('goodpw');
  });

  it('keeps the last good password through transient errors but drops it when access is revoked', async () => {
    let clock = 9_000_000;
    const arn = endpoint.putSecret('flaky', JSON.stringify({ username: 'flaky', password: 'fpw' }));
    const { source: s, logger } = source([entry(arn)], { now: () => clock, onDemandMinIntervalSeconds: 1 });
    await s.start();
    endpoint.failNext('flaky', 1, 'InternalServiceError');
    clock += 2000;
    await s.refreshAll();
    expect(s.lookup('flaky')?.password).toBe('fpw');
    expect(logger.lines.some((l) => l.msg.includes('keeping the last value'))).toBe(true);
    endpoint.setDenied('flaky', true);
    await s.refreshAll();
    expect(s.lookup('flaky')).toBeUndefined();
  });

  it('serves 200 secrets read at start with bounded concurrency', async () => {
    const entries = Array.from({ length: 200 }, (_, i) => entry(endpoint.putSecret(`bulk-${i}`, JSON.stringify({ username: `user${i}`, password: `pw${i}` }))));
    const { source: s } = source(entries);
    const started = Date.now();
    await s.start();
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(s.size).toBe(200);
    for (let i = 0; i < 200; i++) expect(s.lookup(`user${i}`)?.password).toBe(`pw${i}`);
    expect(() => new SecretsManagerCredentialSource({ client, entries: [...entries, entries[0]!], logger: recordingLogger() })).toThrow(/at most 200/);
  });

  it('combines secretFile and secretArn sources; refresh goes to the refreshable one', async () => {
    const arn = endpoint.putSecret('combo', JSON.stringify({ username: 'arnuser', password: 'a1' }));
    const { source: arnSource } = source([entry(arn)], { onDemandMinIntervalSeconds: 0 });
    await arnSource.start();
    const file = new StaticCredentialSource([{ username: 'fileuser', password: 'f1', clientPasswordAuthType: 'POSTGRES_SCRAM_SHA_256', iamAuth: 'DISABLED' }]);
    const combined = new CombinedCredentialSource([file, arnSource]);
    expect(combined.lookup('fileuser')?.password).toBe('f1');
    expect(combined.lookup('arnuser')?.password).toBe('a1');
    expect(combined.lookup('other')).toBeUndefined();
    endpoint.putSecret('combo', JSON.stringify({ username: 'arnuser', password: 'a2' }));
    expect(await combined.refresh('arnuser')).toBe(true);
    expect(combined.lookup('arnuser')?.password).toBe('a2');
  });

  it('maps config auth entries to secretArn entries with the engine default auth type', () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:x-abcdef';
    expect(
      secretArnEntries('MYSQL', [
        { secretFile: 'a.json', iamAuth: 'DISABLED' },
        { secretArn: arn, iamAuth: 'REQUIRED' },
      ]),
    ).toEqual([{ secretArn: arn, clientPasswordAuthType: 'MYSQL_NATIVE_PASSWORD', iamAuth: 'REQUIRED' }]);
  });

  it('starts from config auth entries, and makes no source without secretArn entries', async () => {
    const arn = endpoint.putSecret('from-config', JSON.stringify({ username: 'cfg', password: 'c1' }));
    const logger = recordingLogger();
    const started = await startSecretsManagerSource({
      engine: 'POSTGRESQL',
      auth: [{ secretArn: arn, iamAuth: 'DISABLED' }],
      refreshIntervalSeconds: 3600,
      logger,
      client,
    });
    expect(started).toBeDefined();
    sources.push(started!);
    expect(started!.lookup('cfg')).toMatchObject({ password: 'c1', clientPasswordAuthType: 'POSTGRES_SCRAM_SHA_256' });
    // The proxy's pino logger fits the logger parameter.
    expect(await startSecretsManagerSource({ engine: 'POSTGRESQL', auth: [{ secretFile: 'x.json', iamAuth: 'DISABLED' }], logger: silentLogger() })).toBeUndefined();
  });

  it('fails reads made with unknown credentials (the endpoint checks the SDK signed for it)', async () => {
    const arn = endpoint.putSecret('authcheck', JSON.stringify({ username: 'ac', password: 'x' }));
    const badClient = new SecretsManagerClient({
      region: endpoint.region,
      endpoint: endpoint.url,
      credentials: { accessKeyId: 'AKIDUNKNOWN', secretAccessKey: 'x' },
      maxAttempts: 1,
    });
    const logger = recordingLogger();
    const s = new SecretsManagerCredentialSource({ client: badClient, entries: [entry(arn)], logger, refreshIntervalSeconds: 0 });
    await s.start();
    expect(s.lookup('ac')).toBeUndefined();
    expect(JSON.stringify(logger.lines)).toContain('UnrecognizedClientException');
    badClient.destroy();
  });
});
