import type { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { K2Emulator } from '../emulators/kaminario/server.js';
import { XmsEmulator } from '../emulators/xtremio/server.js';
import { startMcpServer, type McpHarness } from '../helpers/server.js';

/**
 * A server killed while an array is still working on its create: after a restart, delete_volume
 * on the record (surfaced as "error") finds nothing on the array yet, answers deleted, and must
 * still not leave behind the volume the array finishes a moment later.
 */
const root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-late-'));
const xms = new XmsEmulator({ password: 'xms-late-pw' });
const k2 = new K2Emulator({ password: 'k2-late-pw' });
beforeAll(async () => {
  await Promise.all([xms.start(), k2.start()]);
});
afterAll(async () => {
  await Promise.all([xms.cleanup(), k2.cleanup()]);
  rmSync(root, { recursive: true, force: true });
});

const backends = () => [
  {
    volume_backend_name: 'xtremio',
    volume_driver: 'xtremio',
    san_ip: xms.address,
    xtremio_cluster_name: 'xtremio_cluster',
    san_login: 'xtremio_user',
    san_password: 'xms-late-pw',
    driver_ssl_cert_path: xms.certs.caPath,
  },
  { volume_backend_name: 'k2', volume_driver: 'kaminario', san_ip: k2.address, san_login: 'admin', san_password: 'k2-late-pw', driver_ssl_cert_path: k2.certs.caPath },
];

async function until(what: string, check: () => boolean, seconds = 30): Promise<void> {
  for (let waited = 0; !check(); waited += 100) {
    if (waited > seconds * 1000) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function startServer(name: string): Promise<McpHarness> {
  mkdirSync(join(root, name), { recursive: true });
  return startMcpServer(
    { global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(root, `${name}.sqlite`)}` } }, backends: backends() },
    { workDir: join(root, name) },
  );
}

/** Starts a create that the array takes `ms` to carry out, then kills the server (kill -9) while the array works on it. */
async function killDuringCreate(server: McpHarness, backend: string, arrayRequests: () => string[]): Promise<void> {
  const before = arrayRequests().length;
  void server.call('create_volume', { backend, size: 2 }).catch(() => undefined);
  await until('the create to reach the array', () =>
    arrayRequests()
      .slice(before)
      .some((line) => line.startsWith('POST')),
  );
  process.kill((server.client.transport as StdioClientTransport).pid!, 'SIGKILL');
  await server.client.close().catch(() => undefined);
}

describe('no orphan after an array answers late', () => {
  it('XtremIO: the late volume is deleted by a re-check after delete_volume answered', async () => {
    const stamp = 'xtremio';
    const first = await startServer(stamp);
    await first.call('get_stats', { backend: 'xtremio' });
    xms.slowDown({ method: 'POST', pathIncludes: '/volumes', ms: 2_500 });
    await killDuringCreate(first, 'xtremio', () => xms.requests);

    const second = await startServer(stamp);
    try {
      const [record] = (await second.call('list_volumes', { backend: 'xtremio' })).data.volumes;
      expect(record).toMatchObject({ status: 'error', status_reason: expect.stringMatching(/^interrupted while creating/) });
      expect(xms.volumes.has(record.id)).toBe(false); // the array has not finished yet
      const deleted = await second.call('delete_volume', { volume_id: record.id });
      expect(deleted.data).toEqual({ volume_id: record.id, deleted: true });
      expect((await second.call('get_volume', { volume_id: record.id })).text).toMatch(/^NOT_FOUND/);
      await until('the array to finish the late create', () => xms.volumes.has(record.id));
      await until('the re-check to delete the late volume', () => !xms.volumes.has(record.id));
    } finally {
      await second.close();
    }
  });

  it('XtremIO: a snapshot the array finishes after the server died is deleted by a re-check too', async () => {
    const stamp = 'xtremio-snapshot';
    const first = await startServer(stamp);
    const volume = (await first.call('create_volume', { backend: 'xtremio', size: 1 })).data;
    xms.slowDown({ method: 'POST', pathIncludes: '/snapshots', ms: 2_500 });
    const before = xms.requests.length;
    void first.call('create_snapshot', { volume_id: volume.id }).catch(() => undefined);
    await until('the snapshot to reach the array', () => xms.requests.slice(before).some((line) => line.startsWith('POST') && line.includes('/snapshots')));
    process.kill((first.client.transport as StdioClientTransport).pid!, 'SIGKILL');
    await first.client.close().catch(() => undefined);

    const second = await startServer(stamp);
    try {
      const [snapshot] = (await second.call('list_snapshots', { volume_id: volume.id })).data.snapshots;
      expect(snapshot).toMatchObject({ status: 'error', status_reason: expect.stringMatching(/^interrupted while creating/) });
      const onArray = () => [...xms.volumes.keys()].filter((name) => name.includes(snapshot.id));
      expect((await second.call('delete_snapshot', { snapshot_id: snapshot.id })).data).toEqual({ snapshot_id: snapshot.id, deleted: true });
      await until('the array to finish the late snapshot', () => onArray().length > 0);
      await until('the re-check to delete the late snapshot', () => onArray().length === 0);
      expect((await second.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
    } finally {
      await second.close();
    }
  });

  it('K2: the late volume group is deleted by a re-check, even by the next server after a restart', async () => {
    const stamp = 'k2';
    const first = await startServer(stamp);
    await first.call('get_stats', { backend: 'k2' });
    k2.slowDown({ method: 'POST', pathIncludes: '/volume_groups', ms: 2_500 });
    await killDuringCreate(first, 'k2', () => k2.requests);
    const groups = () => [...k2.objects.get('volume_groups')!.values()].map((group) => group.name);

    const second = await startServer(stamp);
    let id: string;
    try {
      const [record] = (await second.call('list_volumes', { backend: 'k2' })).data.volumes;
      id = record.id;
      expect(groups()).not.toContain(`cvg-${id}`);
      const deleted = await second.call('delete_volume', { volume_id: id });
      expect(deleted.isError, deleted.text).toBe(false);
    } finally {
      await second.close(); // the re-check is still due: only the store remembers it now
    }
    await until('the array to finish the late create', () => groups().includes(`cvg-${id}`));
    const third = await startServer(stamp);
    try {
      await until('the next server to delete the late volume group', () => !groups().includes(`cvg-${id}`));
      expect((await third.call('list_volumes', { backend: 'k2' })).data.volumes).toEqual([]);
    } finally {
      await third.close();
    }
  });
});
