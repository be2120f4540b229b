/**
 * `npm run bundle`: builds the MCP Bundle (cinderlib-mcp.mcpb) from what runs, and nothing else.
 *
 * Stages a clean copy in a temporary directory: bin/, dist/ without dist/test and this packer,
 * manifest.json, README.md, package.json without scripts and devDependencies (the server reads
 * its version there; it also says "type": "module"), LICENSE if any, and the production packages of node_modules as they are
 * already installed and built here (better-sqlite3 is not recompiled). Build leftovers of native
 * packages (C sources, object files) and TypeScript sources are dropped. Then runs `mcpb pack`
 * on the stage. The staged manifest claims only what the bundle holds: the platform it was
 * built on and the Node.js major release whose ABI its native modules were compiled for.
 *
 * Usage: node dist/src/cli/bundle-pack.js [OUTPUT.mcpb]   (default: cinderlib-mcp.mcpb in the repo)
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

/** dist/src/cli/bundle-pack.js -> the repository (or installed package) root. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export interface PackResult {
  output: string;
  bytes: number;
}

interface LockEntry {
  dev?: boolean;
  link?: boolean;
}

/** Paths (relative to the root) of every installed package a production install keeps. */
export function productionPackages(root: string): string[] {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages?: Record<string, LockEntry> };
  return (
    Object.entries(lock.packages ?? {})
      .filter(([path, entry]) => path.startsWith('node_modules/') && !entry.dev && !entry.link)
      // Optional dependencies for other platforms are in the lockfile but not installed.
      .filter(([path]) => existsSync(join(root, path, 'package.json')))
      .map(([path]) => path)
      .sort()
  );
}

function walk(dir: string, visit: (path: string, isDir: boolean) => 'skip' | void): void {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const isDir = statSync(path).isDirectory();
    if (visit(path, isDir) === 'skip') continue;
    if (isDir) walk(path, visit);
  }
}

/** Drops what only building needs: native sources and objects, TypeScript sources, maps. */
function pruneBuildLeftovers(modules: string): void {
  walk(modules, (path, isDir) => {
    if (isDir && existsSync(join(path, 'binding.gyp'))) {
      // A native addon: keep only its compiled build/Release/*.node.
      for (const name of ['src', 'deps']) rmSync(join(path, name), { recursive: true, force: true });
      const release = join(path, 'build', 'Release');
      if (existsSync(join(path, 'build'))) {
        for (const name of readdirSync(join(path, 'build'))) {
          if (name !== 'Release') rmSync(join(path, 'build', name), { recursive: true, force: true });
        }
      }
      if (existsSync(release)) {
        for (const name of readdirSync(release)) {
          if (!name.endsWith('.node') || name.startsWith('test_')) rmSync(join(release, name), { recursive: true, force: true });
        }
      }
      return;
    }
    if (!isDir && (/\.(c|cc|cpp|h|hpp|gyp|gypi|ts|mts|cts|map)$/.test(path) || /\.d\.[mc]?ts$/.test(path))) rmSync(path);
  });
}

/** The parts of manifest.json and package.json the bundle rewrites; the rest is copied as it is. */
const manifestSchema = z.looseObject({ compatibility: z.looseObject({ runtimes: z.record(z.string(), z.unknown()).optional() }).optional() });
const packageSchema = z.looseObject({ engines: z.looseObject({ node: z.string().optional() }).optional() });
type BundleManifest = z.infer<typeof manifestSchema>;

/** The staged manifest claims this machine's platform and the Node.js major its addons were built for. */
export function bundleManifest(manifest: BundleManifest, engines: string | undefined): BundleManifest {
  const major = Number(process.versions.node.split('.')[0]);
  const floor = /^>=\s*(\d+)\.(\d+)\.(\d+)$/.exec(engines?.trim() ?? '');
  const from = floor && Number(floor[1]) === major ? `${floor[1]}.${floor[2]}.${floor[3]}` : `${major}.0.0`;
  return {
    ...manifest,
    compatibility: {
      ...manifest.compatibility,
      platforms: [process.platform],
      runtimes: { ...manifest.compatibility?.runtimes, node: `>=${from} <${major + 1}.0.0` },
    },
  };
}

/** Stages what runs into a temporary directory and packs it into `output` with mcpb. */
export function packBundle(output: string, root: string = PACKAGE_ROOT): PackResult {
  if (!existsSync(join(root, 'dist', 'src', 'cli', 'main.js'))) throw new Error(`${root}/dist is not built: run npm run build first`);
  const mcpb = join(root, 'node_modules', '@anthropic-ai', 'mcpb', 'dist', 'cli', 'cli.js');
  if (!existsSync(mcpb)) throw new Error('the mcpb tool is missing: run npm ci (it is a devDependency)');
  const stage = join(mkdtempSync(join(tmpdir(), 'cinderlib-mcp-bundle-')), 'cinderlib-mcp');
  try {
    const skipInDist = [join(root, 'dist', 'test'), join(root, 'dist', 'src', 'cli', 'bundle-pack.js')];
    cpSync(join(root, 'bin'), join(stage, 'bin'), { recursive: true });
    cpSync(join(root, 'dist'), join(stage, 'dist'), {
      recursive: true,
      filter: (src) => !skipInDist.includes(src) && !/\.(map|d\.ts)$/.test(src),
    });
    for (const name of readdirSync(root)) {
      if (name === 'README.md' || /^(LICENSE|LICENCE|NOTICE)/i.test(name)) cpSync(join(root, name), join(stage, name));
    }
    const pkg = packageSchema.parse(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')));
    // What the running server reads (type, version); no scripts or devDependencies to mislead.
    const { name, version, description, type, license, bin, engines, dependencies } = pkg;
    writeFileSync(join(stage, 'package.json'), `${JSON.stringify({ name, version, description, type, license, bin, engines, dependencies }, null, 2)}\n`);
    const manifest = manifestSchema.parse(JSON.parse(readFileSync(join(root, 'manifest.json'), 'utf8')));
    writeFileSync(join(stage, 'manifest.json'), `${JSON.stringify(bundleManifest(manifest, engines?.node), null, 2)}\n`);
    for (const path of productionPackages(root)) {
      const from = join(root, path);
      // Nested node_modules are separate lockfile entries, copied (or left out) on their own.
      cpSync(from, join(stage, path), { recursive: true, filter: (src) => src === from || !relative(from, src).split(sep).includes('node_modules') });
    }
    pruneBuildLeftovers(join(stage, 'node_modules'));
    const packed = spawnSync(process.execPath, [mcpb, 'pack', stage, output], { encoding: 'utf8' });
    if (packed.status !== 0) throw new Error(`mcpb pack failed:\n${packed.stdout}${packed.stderr}`);
    return { output, bytes: statSync(output).size };
  } finally {
    rmSync(dirname(stage), { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const output = resolve(process.argv[2] ?? join(PACKAGE_ROOT, 'cinderlib-mcp.mcpb'));
  try {
    const { bytes } = packBundle(output);
    process.stdout.write(`${relative(process.cwd(), output) || basename(output)}: ${(bytes / 1024 / 1024).toFixed(1)} MB\n`);
  } catch (error) {
    process.stderr.write(`bundle: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}
