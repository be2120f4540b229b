import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/server.js';

/**
 * The README's install step, `npm install -g .` in the clone (after `npm ci`), must leave a
 * `cinderlib-mcp` command that clients can start from any directory. Here the global prefix is
 * a temporary directory (`--prefix`, as the README offers for a system Node.js), and `--offline`
 * proves the step needs no registry: a local folder is linked, not downloaded.
 */
describe('npm install -g . from a clone', () => {
  let prefix: string;
  let elsewhere: string;
  let env: Record<string, string>;
  let command: string;
  const version = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).version as string;

  beforeAll(() => {
    const work = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-install-'));
    prefix = join(work, 'prefix');
    elsewhere = join(work, 'elsewhere');
    mkdirSync(elsewhere);
    // A user's shell: no npm_* variables from the `npm test` that runs us, no CINDERLIB_MCP_*.
    env = {
      PATH: `${join(prefix, 'bin')}:${dirname(process.execPath)}:/usr/bin:/bin`,
      HOME: join(work, 'home'),
      XDG_DATA_HOME: join(work, 'data'),
      CINDERLIB_MCP_LOG_LEVEL: 'warn',
    };
    // --ignore-scripts: `npm ci` already built dist/; don't rebuild it under the other test files.
    const installed = spawnSync('npm', ['install', '-g', '.', '--prefix', prefix, '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], {
      cwd: REPO_ROOT,
      env: { ...env, npm_config_cache: join(work, 'npm-cache') },
      encoding: 'utf8',
    });
    expect(installed.status, installed.stdout + installed.stderr).toBe(0);
    command = join(prefix, 'bin', 'cinderlib-mcp');
  });

  afterAll(() => {
    if (prefix) rmSync(dirname(prefix), { recursive: true, force: true });
  });

  it('puts a cinderlib-mcp command on the PATH that runs from another directory', () => {
    expect(existsSync(command)).toBe(true);
    const result = spawnSync('cinderlib-mcp', ['--version'], { cwd: elsewhere, env, encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe(version);
    expect(result.status).toBe(0);
  });

  it("checks the embedded default from another directory (the README's check line)", () => {
    const result = spawnSync('cinderlib-mcp', ['check'], { cwd: elsewhere, env, encoding: 'utf8' });
    expect(result.stdout).toMatch(/default/);
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });

  it('serves MCP over stdio to a client started from another directory, as the client configs say', async () => {
    const transport = new StdioClientTransport({ command: 'cinderlib-mcp', args: [], env, cwd: elsewhere, stderr: 'pipe' });
    let stderr = '';
    transport.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const client = new Client({ name: 'cinderlib-mcp-install-test', version: '1.0.0' });
    try {
      await client.connect(transport);
      expect(client.getServerVersion()).toMatchObject({ name: 'cinderlib-mcp', version });
      const names = (await client.listTools()).tools.map((tool) => tool.name);
      expect(names).toEqual(expect.arrayContaining(['list_backends', 'get_stats', 'list_volumes', 'create_volume', 'delete_volume']));
      const backends = (await client.callTool({ name: 'list_backends', arguments: {} })) as { isError?: boolean; structuredContent?: any };
      expect(backends.isError, stderr).toBeFalsy();
      expect(backends.structuredContent.backends.map((backend: { id: string }) => backend.id)).toEqual(['default']);
    } finally {
      await client.close();
    }
  });
});
