import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMcpServer, type McpHarness } from '../helpers/server.js';

/**
 * notifications/cancelled stops a copy in flight (contract section 14): the record ends "error"
 * saying so, and nothing of the copy is left in volumes_dir. A stand-in `cp` on the server's PATH
 * picks the copy path: one that fails at once (the read-through sparse copy runs, in chunks), one
 * that hangs (the server must kill it).
 */
const GIB = 1024 ** 3;
let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-cancel-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function standInCp(dir: string, script: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'cp'), `#!/bin/sh\n${script}\n`);
  chmodSync(join(dir, 'cp'), 0o755);
  return `${dir}:${process.env.PATH}`;
}

async function cancelledClone(server: McpHarness, sourceId: string, afterFirstProgressMs: number) {
  const controller = new AbortController();
  const progress: Array<{ progress: number; total?: number }> = [];
  const call = server.client.callTool({ name: 'create_volume', arguments: { source_volume_id: sourceId } }, undefined, {
    signal: controller.signal,
    onprogress: (update) => {
      progress.push(update);
      if (progress.length === 1) setTimeout(() => controller.abort(), afterFirstProgressMs);
    },
  });
  await expect(call).rejects.toThrow(/abort/i);
  // The server finishes the cleanup after the client stopped waiting: the record ends in error.
  let clone: { id: string; status: string; status_reason?: string } | undefined;
  for (let i = 0; i < 100 && clone?.status !== 'error'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    clone = (await server.call('list_volumes', {})).data.volumes.find((v: { source_volume_id: string }) => v.source_volume_id === sourceId);
  }
  return { clone: clone!, progress };
}

describe('cancelling a copy', () => {
  it('stops a 1 GiB clone mid-way: the record ends error, nothing is left in volumes_dir', async () => {
    const volumes = join(root, 'read-through');
    const server = await startMcpServer(
      { backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: volumes }] },
      { env: { PATH: standInCp(join(root, 'failing-cp'), 'exit 1') } },
    );
    try {
      const source = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
      // Data in every MiB (sparse in between): the copy reads 1 GiB and writes 1,024 blocks.
      const fd = openSync(join(volumes, `volume-${source.id}`), 'r+');
      const block = Buffer.alloc(4096, 0x5a);
      for (let mib = 0; mib < 1024; mib++) writeSync(fd, block, 0, block.length, mib * 1024 * 1024);
      closeSync(fd);
      const before = readdirSync(volumes).sort();

      const { clone, progress } = await cancelledClone(server, source.id, 150);
      expect(progress[0]).toMatchObject({ progress: 0 });
      expect(clone.status).toBe('error');
      const copied = Number(/cancelled by the client \(notifications\/cancelled\) after (\d+) of (\d+) bytes/.exec(clone.status_reason ?? '')?.[1]);
      expect(clone.status_reason).toContain(`of ${GIB} bytes`);
      expect(copied, 'stopped mid-way').toBeGreaterThan(0);
      expect(copied).toBeLessThan(GIB);
      expect(readdirSync(volumes).sort()).toEqual(before); // nothing of the clone
      expect((await server.call('delete_volume', { volume_id: clone.id })).isError).toBe(false);
      // The server keeps serving, and a copy not cancelled completes.
      const whole = await server.call('create_volume', { source_volume_id: source.id });
      expect(whole.data, whole.text).toMatchObject({ status: 'available', size: 1 });
    } finally {
      await server.close();
    }
  });

  it('kills a cp under way and removes what it wrote', async () => {
    const volumes = join(root, 'killed');
    const server = await startMcpServer(
      { backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: volumes }] },
      // A cp that starts writing its destination, then hangs.
      { env: { PATH: standInCp(join(root, 'hanging-cp'), 'for last; do :; done; printf partial > "$last"; exec sleep 60') } },
    );
    try {
      const source = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
      const before = readdirSync(volumes).sort();
      const { clone } = await cancelledClone(server, source.id, 300);
      expect(clone.status).toBe('error');
      expect(clone.status_reason).toMatch(/cancelled by the client/);
      expect(readdirSync(volumes).sort()).toEqual(before);
    } finally {
      await server.close();
    }
  });
});
