import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMcpServer, type McpHarness } from '../helpers/server.js';

/**
 * Contract section 11: sudo is always `sudo -n`. A server run by a user the root helper will not
 * serve answers UNSUPPORTED naming root_helper; it never leaves a password prompt on a terminal
 * nor a retryable BACKEND_UNAVAILABLE. Needs root, to start the server as `nobody`.
 */
const asRoot = process.getuid?.() === 0;

describe.skipIf(!asRoot && process.env.CI !== 'true')(`a server without the privilege its root helper would give${asRoot ? '' : ' (needs root, to start the server as nobody)'}`, () => {
  let workDir: string;
  let server: McpHarness;
  beforeAll(async () => {
    expect(asRoot, 'this suite starts the server as nobody, which needs root').toBe(true);
    workDir = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-nobody-'));
    chownSync(workDir, 65534, 65534);
    server = await startMcpServer(
      { backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(workDir, 'volumes') }] },
      { workDir, keepWorkDir: true, runAs: { user: 'nobody', group: 'nogroup' } },
    );
  });
  afterAll(async () => {
    await server?.close();
    rmSync(workDir, { recursive: true, force: true });
  });

  it('attach_volume through sudo -n is UNSUPPORTED naming root_helper, and nothing is left connected', async () => {
    const volume = await server.call('create_volume', { backend: 'files', size: 1 });
    expect(volume.isError, volume.text).toBe(false);
    const attached = await server.call('attach_volume', { volume_id: volume.data.id });
    expect(attached.text).toMatch(/^UNSUPPORTED: .*root helper \(root_helper: "sudo -n"\) may not run losetup without a password/);
    expect(server.stderr()).not.toMatch(/\[sudo\] password/);
    expect((await server.call('list_connections', { volume_id: volume.data.id })).data.connections).toEqual([]);
    expect((await server.call('get_volume', { volume_id: volume.data.id })).data.status).toBe('available');
  });
});
