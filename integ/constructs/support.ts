/** Shared fixtures for the construct tests. */
import { App, Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as rds from 'aws-cdk-lib/aws-rds';
import { AwsSolutionsChecks } from 'cdk-nag';
import { IConstruct } from 'constructs';

/** Tests pass an image so they need neither the runtime bundle nor Docker. */
export const TEST_IMAGE = ecs.ContainerImage.fromRegistry('public.ecr.aws/tidepool/runtime:test');

export interface Fixture {
  readonly app: App;
  readonly stack: Stack;
  readonly vpc: ec2.Vpc;
  readonly cluster: rds.DatabaseCluster;
}

export function newFixture(engine: 'postgres' | 'mysql' = 'postgres'): Fixture {
  const app = new App();
  const stack = new Stack(app, 'TestStack');
  const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
  const cluster = new rds.DatabaseCluster(stack, 'Database', {
    engine:
      engine === 'mysql'
        ? rds.DatabaseClusterEngine.auroraMysql({ version: rds.AuroraMysqlEngineVersion.VER_3_08_2 })
        : rds.DatabaseClusterEngine.auroraPostgres({ version: rds.AuroraPostgresEngineVersion.VER_16_8 }),
    writer: rds.ClusterInstance.serverlessV2('Writer'),
    vpc,
  });
  return { app, stack, vpc, cluster };
}

/**
 * The TIDEPOOL_CONFIG the template hands the container, parsed. Intrinsics inside it (ARNs, endpoints)
 * become strings such as `<Ref:DatabaseSecret>` or `<GetAtt:Database.Endpoint.Port>`.
 */
export function renderedConfig(template: Template): Record<string, any> {
  const taskDefinitions = Object.values(template.findResources('AWS::ECS::TaskDefinition'));
  if (taskDefinitions.length !== 1) throw new Error(`expected one task definition, found ${taskDefinitions.length}`);
  const environment: Array<{ Name: string; Value: unknown }> = taskDefinitions[0].Properties.ContainerDefinitions[0].Environment;
  const value = environment.find((entry) => entry.Name === 'TIDEPOOL_CONFIG')?.Value;
  if (typeof value === 'string') return JSON.parse(value);
  const joined = (value as { 'Fn::Join': [string, unknown[]] })['Fn::Join'];
  let text = '';
  for (const part of joined[1]) {
    if (typeof part === 'string') {
      text += part;
      continue;
    }
    const placeholder = describeIntrinsic(part);
    // Inside a JSON string the placeholder is spliced in; in a number's place it becomes a string of its own.
    text += insideJsonString(text) ? placeholder : JSON.stringify(placeholder);
  }
  return JSON.parse(text);
}

function describeIntrinsic(intrinsic: unknown): string {
  const object = intrinsic as Record<string, unknown>;
  if ('Ref' in object) return `<Ref:${String(object.Ref)}>`;
  if ('Fn::GetAtt' in object) return `<GetAtt:${(object['Fn::GetAtt'] as string[]).join('.')}>`;
  return `<${JSON.stringify(object)}>`;
}

function insideJsonString(text: string): boolean {
  let inside = false;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') inside = !inside;
  }
  return inside;
}

/** Runs the AWS Solutions rules over a synthesized stack; returns "rule at path" for every finding left. */
export function awsSolutionsFindings(stack: Stack): string[] {
  Template.fromStack(stack); // resolve Lazy values and run aspects first, as `cdk synth` would
  const report = new AwsSolutionsChecks().validateScope(stack);
  return report.violations.flatMap((violation) =>
    violation.violatingResources.map((resource) => `${violation.ruleName} at ${resource.constructPath}`),
  );
}

/** Every acknowledgement in the tree, so a test can insist each one says why. */
export function acknowledgements(scope: IConstruct): Array<{ path: string; id: string; reason: string }> {
  return scope.node.findAll().flatMap((construct) =>
    construct.node.metadata
      .filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((entry) =>
        Object.entries(entry.data as Record<string, string>).map(([id, reason]) => ({
          path: construct.node.path,
          id: id.replace(/^annotation::/i, ''),
          reason,
        })),
      ),
  );
}
