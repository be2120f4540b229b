import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/server.js';

/**
 * `npm run bundle` (node dist/src/cli/bundle-pack.js) packs the MCP Bundle; this packs one into a
 * temporary directory, unpacks it with the mcpb tool as a host would, and starts the server from
 * the unpacked copy exactly as the manifest's mcp_config says, far from the repository's
 * node_modules.
 */
const MCPB = join(REPO_ROOT, 'node_modules', '@anthropic-ai', 'mcpb', 'dist', 'cli', 'cli.js');
const PACK = join(REPO_ROOT, 'dist', 'src', 'cli', 'bundle-pack.js');
const MUTATING = ['create_volume', 'extend_volume', 'delete_volume'];

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((path) => statSync(join(dir, path)).isFile())
    .map((path) => path.split('\\').join('/'));
}

describe('the MCP Bundle (npm run bundle)', () => {
  let work: string;
  let bundle: string;
  let unpacked: string;
  let files: string[];

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-bundle-test-'));
    bundle = join(work, 'cinderlib-mcp.mcpb');
    const packed = spawnSync(process.execPath, [PACK, bundle], { cwd: work, encoding: 'utf8' });
    expect(packed.status, packed.stdout + packed.stderr).toBe(0);
    unpacked = join(work, 'unpacked');
    const result = spawnSync(process.execPath, [MCPB, 'unpack', bundle, unpacked], { encoding: 'utf8' });
    expect(result.status, result.stdout + result.stderr).toBe(0);
    files = filesUnder(unpacked);
  });

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('is small: what runs, without sources, tests or devDependencies', () => {
    const bytes = statSync(bundle).size;
    console.log(`cinderlib-mcp.mcpb: ${(bytes / 1024 / 1024).toFixed(1)} MB, ${files.length} files`);
    expect(bytes).toBeLessThan(10 * 1024 * 1024);
    expect(files).toContain('manifest.json');
    expect(files).toContain('bin/cinderlib-mcp.js');
    expect(files).toContain('dist/src/cli/main.js');
    expect(files).toContain('README.md');
    expect(files.filter((path) => /\.[mc]?ts$/.test(path))).toEqual([]);
    expect(files.filter((path) => /^(test|src|tools|drivers)\/|^dist\/test\//.test(path))).toEqual([]);
    const devDependencies = Object.keys(JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).devDependencies);
    expect(devDependencies).toEqual(expect.arrayContaining(['typescript', 'vitest']));
    for (const name of [...devDependencies, 'vite', 'esbuild']) {
      expect(
        files.filter((path) => path.startsWith(`node_modules/${name}/`)),
        name,
      ).toEqual([]);
    }
    const pkg = JSON.parse(readFileSync(join(unpacked, 'package.json'), 'utf8'));
    expect(pkg.devDependencies).toBeUndefined();
    expect(pkg.type).toBe('module');
  });

  it('claims only the platform and Node.js release its native modules were built for', () => {
    const manifest = JSON.parse(readFileSync(join(unpacked, 'manifest.json'), 'utf8'));
    expect(manifest.compatibility.platforms).toEqual([process.platform]);
    const major = Number(process.versions.node.split('.')[0]);
    expect(manifest.compatibility.runtimes.node).toMatch(new RegExp(`^>=${major}\\.\\d+\\.\\d+ <${major + 1}\\.0\\.0$`));
    expect(files.some((path) => path.endsWith('/better_sqlite3.node'))).toBe(true);
    // The repository's manifest (what `npx mcpb pack` alone would use) claims no more than linux.
    expect(JSON.parse(readFileSync(join(REPO_ROOT, 'manifest.json'), 'utf8')).compatibility.platforms).toEqual(['linux']);
  });

  it("starts as the manifest's mcp_config says, read-only by default, and serves from its own files", async () => {
    const manifest = JSON.parse(readFileSync(join(unpacked, 'manifest.json'), 'utf8'));
    const userConfig: Record<string, unknown> = {};
    for (const [key, option] of Object.entries<{ default?: unknown }>(manifest.user_config ?? {})) userConfig[key] = option.default ?? '';
    const substitute = (value: string) => value.replaceAll('${__dirname}', unpacked).replace(/\$\{user_config\.(\w+)\}/g, (_, key: string) => String(userConfig[key] ?? ''));
    const { command, args, env: configEnv } = manifest.server.mcp_config as { command: string; args: string[]; env: Record<string, string> };
    expect(command).toBe('node');
    const env: Record<string, string> = {
      PATH: `${dirname(process.execPath)}:/usr/bin:/bin`,
      HOME: join(work, 'home'),
      XDG_DATA_HOME: join(work, 'data'),
      CINDERLIB_MCP_LOG_LEVEL: 'warn',
    };
    for (const [key, value] of Object.entries(configEnv)) env[key] = substitute(value);
    expect(env.CINDERLIB_MCP_READ_ONLY).toBe('true');
    expect(env.CINDERLIB_MCP_CONFIG).toBe('');
    const cwd = join(work, 'cwd');
    mkdirSync(cwd);
    const transport = new StdioClientTransport({ command: process.execPath, args: args.map(substitute), env, cwd, stderr: 'pipe' });
    let stderr = '';
    transport.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const client = new Client({ name: 'cinderlib-mcp-bundle-test', version: '1.0.0' });
    try {
      await client.connect(transport);
      expect(client.getServerVersion()?.name).toBe('cinderlib-mcp');
      const { tools } = await client.listTools();
      const names = tools.map((tool) => tool.name);
      expect(names).toContain('list_backends');
      expect(names).toContain('list_volumes');
      for (const name of MUTATING) expect(names).not.toContain(name);
      expect(tools.filter((tool) => tool.annotations?.readOnlyHint !== true).map((tool) => tool.name)).toEqual([]);
      // The metadata store (better-sqlite3, the native module) answers from the bundle's copy.
      const volumes = (await client.callTool({ name: 'list_volumes', arguments: {} })) as { isError?: boolean; structuredContent?: any };
      expect(volumes.isError, JSON.stringify(volumes)).toBeFalsy();
      expect(volumes.structuredContent.volumes).toEqual([]);
      const refused = (await client.callTool({ name: 'create_volume', arguments: { backend: 'default', size: 1 } })) as {
        isError?: boolean;
        content: Array<{ text?: string }>;
      };
      expect(refused.isError).toBe(true);
      expect(refused.content[0]?.text).toMatch(/^READ_ONLY:/);
    } finally {
      await client.close();
    }
    expect(stderr).not.toMatch(/Cannot find module|ERR_MODULE_NOT_FOUND|NODE_MODULE_VERSION/);
    // Nothing was loaded from the repository: the bundle lives outside it.
    expect(relative(REPO_ROOT, unpacked).startsWith('..')).toBe(true);
    expect(existsSync(join(unpacked, 'node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'))).toBe(true);
  });
});
