import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XmsEmulator } from '../emulators/xtremio/server.js';
import { startMcpServer } from '../helpers/server.js';

/**
 * The metadata store's disk fills up, or its file is deleted, while the server runs: the client
 * is told which store and which volume, nothing is left stuck in "creating", and the running
 * server can still show and delete what it made. A full disk is a real one: a small tmpfs.
 */
const inCi = process.env.CI === 'true';
const isRoot = process.getuid?.() === 0;
const root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-store-trouble-'));
const xms = new XmsEmulator({ password: 'xms-store-pw' });
beforeAll(async () => {
  await xms.start();
});
afterAll(async () => {
  await xms.cleanup();
  rmSync(root, { recursive: true, force: true });
});

const config = (dbPath: string) => ({
  global: { persistence_config: { storage: 'db', connection: `sqlite:///${dbPath}` } },
  backends: [
    { volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, `vols-${Math.random().toString(16).slice(2)}`) },
    {
      volume_backend_name: 'xtremio',
      volume_driver: 'xtremio',
      san_ip: xms.address,
      xtremio_cluster_name: 'xtremio_cluster',
      san_login: 'xtremio_user',
      san_password: 'xms-store-pw',
      driver_ssl_cert_path: xms.certs.caPath,
    },
  ],
});

describe.skipIf(!isRoot && !inCi)(`a metadata store whose disk fills up${isRoot ? '' : ' (needs root, to mount a small tmpfs)'}`, () => {
  it('has its prerequisite (root, to mount a small tmpfs) under CI', () => expect(isRoot).toBe(true));

  it('tells the client which store and volume or snapshot, keeps it visible as error, and deletes it once there is room', async () => {
    const disk = join(root, 'small-disk');
    mkdirSync(disk);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', disk]);
    const dbPath = join(disk, 'meta.sqlite');
    const server = await startMcpServer(config(dbPath));
    try {
      await server.call('get_stats', { backend: 'xtremio' });
      // The array takes its time; the disk fills while it works, between the create's two writes.
      xms.slowDown({ method: 'POST', pathIncludes: '/volumes', ms: 1_500 });
      const creating = server.call('create_volume', { backend: 'xtremio', size: 1, name: 'caught' });
      await new Promise((resolve) => setTimeout(resolve, 500));
      const filler = join(disk, 'filler');
      execFileSync('sh', ['-c', `dd if=/dev/zero of=${filler} bs=64k 2>/dev/null; true`]);
      const answer = await creating;
      expect(answer.text).toMatch(
        new RegExp(
          `^BACKEND_UNAVAILABLE: volume ([0-9a-f-]{36}): the create finished on the array, but the metadata store could not record it \\(cannot update volume \\1: the metadata store ${dbPath} cannot be written: its disk is full`,
        ),
      );
      const id = /volume ([0-9a-f-]{36})/.exec(answer.text)![1];

      // The running server knows: not "creating" (which would make delete_volume wait for ever).
      const shown = await server.call('get_volume', { volume_id: id });
      expect(shown.data).toMatchObject({ status: 'error', status_reason: expect.stringMatching(/could not record it/) });
      const refused = await server.call('create_volume', { backend: 'files', size: 1 });
      expect(refused.text).toMatch(new RegExp(`^BACKEND_UNAVAILABLE: cannot record a new volume: the metadata store ${dbPath} cannot be written: its disk is full`));

      rmSync(filler);
      const deleted = await server.call('delete_volume', { volume_id: id });
      expect(deleted.data).toEqual({ volume_id: id, deleted: true });
      expect(xms.volumes.has(id)).toBe(false);
      const after = await server.call('create_volume', { backend: 'files', size: 1 });
      expect(after.isError, after.text).toBe(false);

      // The same for a snapshot: the disk fills while the array takes it.
      const volume = (await server.call('create_volume', { backend: 'xtremio', size: 1 })).data;
      xms.slowDown({ method: 'POST', pathIncludes: '/snapshots', ms: 1_500 });
      const snapshotting = server.call('create_snapshot', { volume_id: volume.id });
      await new Promise((resolve) => setTimeout(resolve, 500));
      execFileSync('sh', ['-c', `dd if=/dev/zero of=${filler} bs=64k 2>/dev/null; true`]);
      const snapshotAnswer = await snapshotting;
      expect(snapshotAnswer.text).toMatch(/^BACKEND_UNAVAILABLE: snapshot ([0-9a-f-]{36}): the create finished on the array, but the metadata store could not record it/);
      const snapshotId = /snapshot ([0-9a-f-]{36})/.exec(snapshotAnswer.text)![1];
      expect((await server.call('get_snapshot', { snapshot_id: snapshotId })).data).toMatchObject({ status: 'error', status_reason: expect.stringMatching(/could not record it/) });
      rmSync(filler);
      expect((await server.call('delete_snapshot', { snapshot_id: snapshotId })).data).toEqual({ snapshot_id: snapshotId, deleted: true });
      expect(xms.volumes.has(snapshotId)).toBe(false);
      expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
    } finally {
      await server.close();
      execFileSync('umount', ['-l', disk]);
    }
  });
});

describe('a metadata store file deleted under the server', () => {
  it('refuses the next write, naming the store, instead of writing into an unlinked file', async () => {
    const dbPath = join(root, 'deleted', 'meta.sqlite');
    const server = await startMcpServer(config(dbPath));
    try {
      const first = await server.call('create_volume', { backend: 'files', size: 1 });
      expect(first.isError, first.text).toBe(false);
      for (const suffix of ['', '-wal', '-shm']) rmSync(`${dbPath}${suffix}`, { force: true });
      const next = await server.call('create_volume', { backend: 'files', size: 1 });
      expect(next.text).toMatch(new RegExp(`^BACKEND_UNAVAILABLE: cannot record a new volume: the metadata store ${dbPath} was deleted while the server was running`));
      writeFileSync(join(root, 'deleted', 'unrelated'), 'x'); // the folder is fine; only the store is gone
    } finally {
      await server.close();
    }
  });
});
