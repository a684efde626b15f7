/**
 * bin/app.ts, the sample `cdk deploy` target. It uses the real runtime image asset, so it needs the bundle
 * that `npm run build` writes (npm test builds it first).
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { buildSampleApp, TidepoolSampleStack } from '../../bin/app';
import { acknowledgements, awsSolutionsFindings } from './support';

const REPO_ROOT = path.resolve(__dirname, '..', '..');

describe.each([
  ['postgres', 'TidepoolSamplePostgres', 'aurora-postgresql', 5432],
  ['mysql', 'TidepoolSampleMysql', 'aurora-mysql', 3306],
])('the sample app with -c engine=%s', (engine, stackName, auroraEngine, port) => {
  let stack: TidepoolSampleStack;
  let template: Template;

  beforeAll(() => {
    stack = buildSampleApp(new App({ context: { engine } }));
    template = Template.fromStack(stack);
  });

  test('synthesizes a VPC, an Aurora cluster and a proxy on the engine port', () => {
    expect(stack.stackName).toBe(stackName);
    template.hasResourceProperties('AWS::RDS::DBCluster', { Engine: auroraEngine, StorageEncrypted: true });
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', { Port: port, Protocol: 'TCP' });
    template.hasOutput('ProxyEndpoint', { Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^ProxyLoadBalancer'), 'DNSName'] } });
  });

  test('runs the runtime image built from the bundle', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [Match.objectLike({ Image: { 'Fn::Sub': Match.stringLikeRegexp('container-assets') } })],
    });
  });

  test('has the default alarms and a dashboard', () => {
    template.resourceCountIs('AWS::CloudWatch::Alarm', 3);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'AvailabilityPercentage', Namespace: 'Tidepool' });
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
  });

  test('passes the AWS Solutions checks, with a reason for every acknowledgement', () => {
    expect(awsSolutionsFindings(stack)).toEqual([]);
    for (const ack of acknowledgements(stack)) expect(ack.reason.length).toBeGreaterThan(40);
  });
});

test('fails for an unknown engine', () => {
  expect(() => buildSampleApp(new App({ context: { engine: 'oracle' } }))).toThrow(
    /unknown engine 'oracle': pass -c engine=postgres or -c engine=mysql/,
  );
});

test('runs as the CDK CLI runs it and writes a cloud assembly', () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidepool-sample-'));
  try {
    const cdkJson = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'cdk.json'), 'utf8'));
    expect(cdkJson.app).toBe('npx ts-node --prefer-ts-exts bin/app.ts');
    // The CLI sets CDK_OUTDIR and CDK_CONTEXT_JSON; transpile-only keeps this test fast (tsc checks types elsewhere).
    execFileSync(process.execPath, ['-r', 'ts-node/register/transpile-only', 'bin/app.ts'], {
      cwd: REPO_ROOT,
      env: { ...process.env, CDK_OUTDIR: outdir, CDK_CONTEXT_JSON: JSON.stringify({ engine: 'mysql' }) },
      stdio: 'pipe',
    });
    const manifest = JSON.parse(fs.readFileSync(path.join(outdir, 'manifest.json'), 'utf8'));
    expect(Object.keys(manifest.artifacts)).toContain('TidepoolSampleMysql');
  } finally {
    fs.rmSync(outdir, { recursive: true, force: true });
  }
});
