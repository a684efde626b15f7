/**
 * The local STS endpoint speaks STS's wire protocol: the real @aws-sdk/client-sts (signed
 * POST, query protocol, XML answers and errors) gets the configured identity from it.
 */
import { Agent } from 'node:https';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { startLocalStsEndpoint, type LocalStsEndpoint } from './sts-endpoint';

describe('local STS endpoint with the real STS client', () => {
  let sts: LocalStsEndpoint;

  beforeAll(async () => {
    sts = await startLocalStsEndpoint({
      identities: [{ accessKeyId: 'AKIDBOB', secretAccessKey: 'bob-secret', arn: 'arn:aws:iam::210987654321:user/bob', userId: 'AIDABOB' }],
    });
  });
  afterAll(async () => {
    await sts.close();
  });

  function client(secretAccessKey: string, accessKeyId = 'AKIDBOB'): STSClient {
    return new STSClient({
      region: 'us-east-1',
      endpoint: sts.url,
      credentials: { accessKeyId, secretAccessKey },
      maxAttempts: 1,
      requestHandler: { httpsAgent: new Agent({ ca: sts.ca }) },
    });
  }

  it('answers GetCallerIdentity for a correctly signed request', async () => {
    const c = client('bob-secret');
    const out = await c.send(new GetCallerIdentityCommand({}));
    expect(out).toMatchObject({ Arn: 'arn:aws:iam::210987654321:user/bob', UserId: 'AIDABOB', Account: '210987654321' });
    expect(sts.calls.at(-1)).toMatchObject({ method: 'POST', action: 'GetCallerIdentity', status: 200 });
    c.destroy();
  });

  it('rejects a wrong secret key with SignatureDoesNotMatch and an unknown key with InvalidClientTokenId', async () => {
    const wrong = client('not-bob');
    await expect(wrong.send(new GetCallerIdentityCommand({}))).rejects.toMatchObject({ name: 'SignatureDoesNotMatch', $metadata: { httpStatusCode: 403 } });
    const unknown = client('x', 'AKIDNOBODY');
    await expect(unknown.send(new GetCallerIdentityCommand({}))).rejects.toMatchObject({ name: 'InvalidClientTokenId' });
    wrong.destroy();
    unknown.destroy();
  });

  it('rejects requests signed too long ago with ExpiredToken', async () => {
    const c = client('bob-secret');
    // A client whose clock runs 20 minutes late signs requests STS considers too old.
    c.config.systemClockOffset = -20 * 60 * 1000;
    await expect(c.send(new GetCallerIdentityCommand({}))).rejects.toMatchObject({ name: 'ExpiredToken' });
    c.destroy();
  });
});
