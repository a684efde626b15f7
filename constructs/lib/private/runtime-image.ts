import * as fs from 'fs';
import * as path from 'path';
import { IgnoreMode } from 'aws-cdk-lib';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import { IConstruct } from 'constructs';
import { TidepoolValidationError } from './errors';

const PACKAGE_NAME = 'tidepool';
/** The single-file runtime that `npm run build` writes. */
export const RUNTIME_BUNDLE = 'dist/tidepool.js';
export const RUNTIME_DOCKERFILE = 'constructs/image/Dockerfile';

/**
 * The image that runs this package's own runtime bundle. The Docker context is the package root narrowed
 * to the bundle and the Dockerfile, so the asset hash (and so a redeploy) changes exactly when either does.
 */
export function defaultRuntimeImage(scope: IConstruct, architecture: ecs.CpuArchitecture): ecs.ContainerImage {
  return runtimeImageFromPackageRoot(scope, findPackageRoot(scope, __dirname), architecture);
}

export function runtimeImageFromPackageRoot(
  scope: IConstruct,
  packageRoot: string,
  architecture: ecs.CpuArchitecture,
): ecs.ContainerImage {
  const bundle = path.join(packageRoot, RUNTIME_BUNDLE);
  if (!fs.existsSync(bundle)) {
    throw new TidepoolValidationError(
      scope,
      `the Tidepool runtime bundle ${bundle} does not exist: run \`npm run build\` first, or pass the \`image\` prop.`,
    );
  }
  return ecs.ContainerImage.fromAsset(packageRoot, {
    file: RUNTIME_DOCKERFILE,
    ignoreMode: IgnoreMode.DOCKER,
    exclude: ['*', `!${RUNTIME_BUNDLE}`, `!${RUNTIME_DOCKERFILE}`],
    // Build for the tasks' architecture, not the machine running `cdk deploy` (an arm64 laptop would
    // otherwise ship an image x86 Fargate cannot start).
    platform: architecture === ecs.CpuArchitecture.ARM64 ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
  });
}

/** Works from the TypeScript sources and from compiled output at any depth under the package. */
function findPackageRoot(scope: IConstruct, startDirectory: string): string {
  for (let directory = startDirectory; ; directory = path.dirname(directory)) {
    const manifest = path.join(directory, 'package.json');
    if (fs.existsSync(manifest) && readPackageName(manifest) === PACKAGE_NAME) return directory;
    if (path.dirname(directory) === directory) {
      throw new TidepoolValidationError(
        scope,
        `could not find the ${PACKAGE_NAME} package root above ${startDirectory}; pass the \`image\` prop.`,
      );
    }
  }
}

function readPackageName(manifest: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(fs.readFileSync(manifest, 'utf8'));
    return typeof parsed === 'object' && parsed !== null && 'name' in parsed ? String(parsed.name) : undefined;
  } catch {
    return undefined;
  }
}
