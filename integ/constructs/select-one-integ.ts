/**
 * Builds an integ-runner test: deploy the sample app for one engine, then invoke a Lambda function in the
 * VPC that runs `SELECT 1` through the proxy. Run with an AWS account:
 *   npm run build && npx @aws-cdk/integ-runner --language typescript --directory integ
 */
import * as path from 'path';
import { ExpectedResult, IntegTest } from '@aws-cdk/integ-tests-alpha';
import { App, Duration } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { SampleEngine, TidepoolSampleStack } from '../../bin/app';

export function selectOneIntegTest(engine: SampleEngine): App {
  const app = new App();
  const stack = new TidepoolSampleStack(app, `TidepoolInteg-${engine}`, { engine });

  const selectOne = new NodejsFunction(stack, 'SelectOne', {
    entry: path.join(__dirname, 'select-one-handler.ts'),
    runtime: lambda.Runtime.NODEJS_22_X,
    timeout: Duration.minutes(1),
    vpc: stack.vpc,
    vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
    environment: {
      ENGINE: engine,
      PROXY_HOST: stack.proxy.endpoint,
      PROXY_PORT: String(stack.proxy.port),
      SECRET_ARN: stack.database.secret!.secretArn,
    },
    // pg-native is an optional native add-on that pg only loads on request.
    bundling: { externalModules: ['@aws-sdk/*', 'pg-native'] },
  });
  stack.database.secret!.grantRead(selectOne);
  stack.proxy.connections.allowDefaultPortFrom(selectOne, 'Integ test client');

  const integ = new IntegTest(app, `TidepoolSelectOne-${engine}`, {
    testCases: [stack],
    // The runtime image hash changes with every runtime change; the template is what the snapshot guards.
    diffAssets: false,
  });
  integ.assertions
    .invokeFunction({ functionName: selectOne.functionName })
    .expect(ExpectedResult.objectLike({ Payload: '1' }))
    .waitForAssertions({ totalTimeout: Duration.minutes(5), interval: Duration.seconds(15) });
  // The writer-unavailable alarm reads OK only once the tasks publish AvailabilityPercentage with the
  // dimensions the alarm watches (missing data counts as breaching), so this proves the metrics arrive.
  integ.assertions
    .awsApiCall('CloudWatch', 'describeAlarms', { AlarmNames: [stack.alarms.writerUnavailable.alarmName] })
    .expect(ExpectedResult.objectLike({ MetricAlarms: [{ StateValue: 'OK' }] }))
    .waitForAssertions({ totalTimeout: Duration.minutes(10), interval: Duration.seconds(30) });
  return app;
}
