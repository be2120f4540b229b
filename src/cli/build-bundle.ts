/**
 * `npm run build` step: bundles the command (dist/src/cli/main.js and what it imports, the MCP SDK
 * and zod included) into dist/bundle/cli/, which bin/cinderlib-mcp.js runs. A cold start then reads
 * a few minified files instead of some 400 modules, and first tool answer comes sooner (issue 23:
 * at most 0.9x the reference filesystem server's, `npm run bench`). Dynamic imports stay separate
 * chunks, so the SDK, the store and each driver still load only when needed.
 *
 * - Native and optional packages (better-sqlite3, pg, ssh2 and its cpu-features) stay external.
 * - The SDK's Ajv validator is left out: the server passes its own jsonSchemaValidator (it never
 *   asks the client for input), and Ajv with its formats is a fifth of what the SDK loads.
 * - dist/bundle/cli/ sits as deep under the package as dist/src/<layer>/, so the files the code
 *   finds next to itself (package.json for the version, dist/tool-listing.json) resolve alike.
 *
 * esbuild comes with vitest (a devDependency); without it the build says so and bin falls back to
 * the unbundled dist/src/cli/main.js.
 */

import { rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Esbuild from 'esbuild';
import type { Plugin } from 'esbuild';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BUNDLE_DIR = join(ROOT, 'dist', 'bundle', 'cli');

const EXTERNAL = ['better-sqlite3', 'pg', 'pg-native', 'ssh2', 'cpu-features'];

/** The SDK's validation/ajv-provider.js, replaced by a class that says why it is absent. */
const withoutAjv: Plugin = {
  name: 'without-ajv',
  setup(build) {
    build.onResolve({ filter: /ajv-provider\.js$/ }, ({ importer }) => (importer.includes('@modelcontextprotocol') ? { path: 'ajv-provider', namespace: 'without-ajv' } : undefined));
    build.onLoad({ filter: /.*/, namespace: 'without-ajv' }, () => ({
      contents: 'export class AjvJsonSchemaValidator { constructor() { throw new Error("cinderlib-mcp is bundled without Ajv: pass a jsonSchemaValidator to the MCP server"); } }',
      loader: 'js' as const,
    }));
  },
};

export async function buildBundle(): Promise<boolean> {
  let esbuild: typeof Esbuild;
  try {
    esbuild = await import('esbuild');
  } catch {
    process.stderr.write('build-bundle: esbuild is not installed; bin/cinderlib-mcp.js runs the unbundled dist/src/cli/main.js\n');
    return false;
  }
  rmSync(BUNDLE_DIR, { recursive: true, force: true });
  await esbuild.build({
    entryPoints: [join(ROOT, 'dist', 'src', 'cli', 'main.js')],
    outdir: BUNDLE_DIR,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    minify: true,
    external: EXTERNAL,
    plugins: [withoutAjv],
    // Bundled CommonJS packages call require(); ESM output has none of its own.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    logLevel: 'warning',
    legalComments: 'none',
  });
  return true;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  await buildBundle();
}
