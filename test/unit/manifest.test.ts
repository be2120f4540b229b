import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/server.js';

describe('manifest.json', () => {
  it("passes the official MCP Bundle tool's validator", () => {
    const cli = join(REPO_ROOT, 'node_modules', '@anthropic-ai', 'mcpb', 'dist', 'cli', 'cli.js');
    const result = spawnSync(process.execPath, [cli, 'validate', join(REPO_ROOT, 'manifest.json')], { encoding: 'utf8' });
    expect(result.stdout + result.stderr).toMatch(/Manifest schema validation passes/);
    expect(result.status).toBe(0);
  });
});
