import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { BIN, REPO_ROOT, startMcpServer, type McpHarness } from '../helpers/server.js';

/** Messages a new user meets first (contract section 5): each says what was wrong and what is accepted, once. */
let root: string;
let server: McpHarness;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-messages-'));
  server = await startMcpServer({ backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'files') }] });
});
afterAll(async () => {
  await server?.close();
  rmSync(root, { recursive: true, force: true });
});

function cli(...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: REPO_ROOT, env: { ...process.env, XDG_DATA_HOME: join(root, 'xdg') } });
}

describe('error messages', () => {
  it('a mistyped backend is NOT_FOUND listing the backends there are', async () => {
    expect((await server.call('create_volume', { backend: 'nope', size: 1 })).text).toBe('NOT_FOUND: backend "nope" is not configured; known backends: files');
  });

  it('list_supported_drivers says which output versions there are', async () => {
    expect((await server.call('list_supported_drivers', { output_version: 3 })).text).toMatch(/^INVALID_ARGUMENT: .*output_version must be 1 .* or 2/);
  });

  it('an unknown resource is -32002 with one prefix', async () => {
    const error = await server.client.readResource({ uri: 'cinderlib://volumes/00000000-0000-4000-8000-000000000000' }).then(
      () => undefined,
      (failure: Error & { code?: number }) => failure,
    );
    expect(error?.code).toBe(-32002);
    expect(error?.message).toBe('MCP error -32002: no volume 00000000-0000-4000-8000-000000000000; resources/list lists the resources there are');
  });

  it('check comes after the options too, and a bad config names its file once', () => {
    const config = join(root, 'short-token.yaml');
    writeFileSync(
      config,
      stringify({ global: { http_tokens: [{ name: 'a', token: 'tiny1' }] }, backends: [{ volume_backend_name: 'f', volume_driver: 'file', volumes_dir: join(root, 'f') }] }),
    );
    const checked = cli('--config', config, 'check');
    expect(checked.status).toBe(1);
    expect(checked.stdout).toContain('token must be at least 16 characters');
    expect(checked.stdout.split(config).length - 1).toBe(1);
    expect(checked.stderr).not.toMatch(/unknown argument/);
  });
});
