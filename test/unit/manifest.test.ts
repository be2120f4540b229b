import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/server.js';

describe('manifest.json', () => {
  const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'manifest.json'), 'utf8'));

  it("passes the official MCP Bundle tool's validator", () => {
    const cli = join(REPO_ROOT, 'node_modules', '@anthropic-ai', 'mcpb', 'dist', 'cli', 'cli.js');
    const result = spawnSync(process.execPath, [cli, 'validate', join(REPO_ROOT, 'manifest.json')], { encoding: 'utf8' });
    expect(result.stdout + result.stderr).toMatch(/Manifest schema validation passes/);
    expect(result.status).toBe(0);
  });

  it('offers read_only as user_config defaulting to true, and hands it to the server', () => {
    expect(manifest.user_config.read_only).toMatchObject({ type: 'boolean', default: true });
    expect(manifest.server.mcp_config.env.CINDERLIB_MCP_READ_ONLY).toBe('${user_config.read_only}');
    expect(manifest.server.mcp_config.args).toEqual(['${__dirname}/' + manifest.server.entry_point]);
  });

  it('claims only linux, where the bundled native modules are built (npm run bundle narrows it to the build machine)', () => {
    expect(manifest.compatibility.platforms).toEqual(['linux']);
  });
});
