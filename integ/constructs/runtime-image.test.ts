import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Stack } from 'aws-cdk-lib';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import { RUNTIME_BUNDLE, RUNTIME_DOCKERFILE, runtimeImageFromPackageRoot } from '../../constructs/lib/private/runtime-image';

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const temporaryDirectories: string[] = [];

function temporaryDirectory(prefix: string): string {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  temporaryDirectories.push(directory);
  return directory;
}

afterAll(() => {
  for (const directory of temporaryDirectories) fs.rmSync(directory, { recursive: true, force: true });
});

/** A throwaway package root shaped like this repository: manifest, bundle, Dockerfile and unrelated files. */
function fakePackageRoot(bundleText: string | undefined): string {
  const root = temporaryDirectory('tidepool-image-');
  const write = (file: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), text);
  };
  write('package.json', JSON.stringify({ name: 'tidepool' }));
  write(RUNTIME_DOCKERFILE, fs.readFileSync(path.join(REPO_ROOT, RUNTIME_DOCKERFILE), 'utf8'));
  write('node_modules/left-pad/index.js', 'module.exports = 1;');
  write('runtime/server.ts', 'export {};');
  if (bundleText !== undefined) write(RUNTIME_BUNDLE, bundleText);
  return root;
}

interface SynthesizedImage {
  readonly hash: string;
  readonly stagedFiles: string[];
  readonly source: { dockerFile: string; platform: string };
}

function synthesizeImage(packageRoot: string, architecture = ecs.CpuArchitecture.X86_64): SynthesizedImage {
  const outdir = temporaryDirectory('tidepool-cdkout-');
  const app = new App({ outdir });
  const stack = new Stack(app, 'ImageStack');
  const taskDefinition = new ecs.FargateTaskDefinition(stack, 'TaskDefinition');
  taskDefinition.addContainer('Container', { image: runtimeImageFromPackageRoot(stack, packageRoot, architecture) });
  app.synth();
  const manifest = JSON.parse(fs.readFileSync(path.join(outdir, 'ImageStack.assets.json'), 'utf8'));
  const [[hash, image]] = Object.entries<{ source: { directory: string; dockerFile: string; platform: string } }>(manifest.dockerImages);
  const staged = path.join(outdir, image.source.directory);
  const stagedFiles = fs.readdirSync(staged, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(staged, path.join(entry.parentPath, entry.name)))
    .sort();
  return { hash, stagedFiles, source: image.source };
}

describe('the default runtime image', () => {
  test('fails without the runtime bundle, saying to run npm run build', () => {
    const stack = new Stack();
    expect(() => runtimeImageFromPackageRoot(stack, fakePackageRoot(undefined), ecs.CpuArchitecture.X86_64)).toThrow(
      /runtime bundle .*dist\/tidepool\.js does not exist: run `npm run build` first, or pass the `image` prop/,
    );
  });

  test('is built from the bundle and the Dockerfile only, for the tasks\' architecture', () => {
    const image = synthesizeImage(fakePackageRoot('console.log("v1");'));
    expect(image.stagedFiles).toEqual([RUNTIME_DOCKERFILE, RUNTIME_BUNDLE]);
    expect(image.source).toMatchObject({ dockerFile: RUNTIME_DOCKERFILE, platform: 'linux/amd64' });
    expect(synthesizeImage(fakePackageRoot('console.log("v1");'), ecs.CpuArchitecture.ARM64).source.platform).toBe('linux/arm64');
  });

  test('changes its hash when the bundle changes, and only then', () => {
    const first = fakePackageRoot('console.log("v1");');
    const before = synthesizeImage(first).hash;
    fs.writeFileSync(path.join(first, 'runtime/server.ts'), 'export const changed = true;');
    fs.writeFileSync(path.join(first, 'node_modules/left-pad/index.js'), 'module.exports = 2;');
    expect(synthesizeImage(first).hash).toBe(before);
    fs.writeFileSync(path.join(first, RUNTIME_BUNDLE), 'console.log("v2");');
    expect(synthesizeImage(first).hash).not.toBe(before);
  });

  test('runs the bundle on Node 20 slim as the unprivileged node user', () => {
    const dockerfile = fs.readFileSync(path.join(REPO_ROOT, RUNTIME_DOCKERFILE), 'utf8');
    const instructions = dockerfile.split('\n').filter((line) => /^[A-Z]+ /.test(line));
    expect(instructions).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^FROM node:20-[a-z]+-slim$/),
        `COPY ${RUNTIME_BUNDLE} /app/tidepool.js`,
        'USER node',
        'ENTRYPOINT ["node", "/app/tidepool.js"]',
        'CMD ["serve"]',
      ]),
    );
    // Everything after USER runs unprivileged; nothing may switch back.
    expect(instructions.filter((line) => line.startsWith('USER '))).toEqual(['USER node']);
  });
});
