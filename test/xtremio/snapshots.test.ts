import { refusingHost } from '../helpers/refusing-host.js';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import xtremio from '../../drivers/xtremio/index.js';
import type { CreateVolumeRequest, SnapshotRef, VolumeDriver } from '../../drivers/kit/types.js';
import { validateDriverOptions } from '../../src/config/driver-options.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { XmsEmulator } from '../emulators/xtremio/server.js';

/**
 * Snapshots, clones and volumes from snapshots on XtremIO, as Cinder's driver makes them: XMS
 * snapshots (volumes with an ancestor) named after the Cinder ids. An emulator holds no data, so
 * these tests check the array objects: names, ancestors, sizes, snapshot types and sets.
 */
const PASSWORD = 'xms-Snap-pw-7731';
const GIB_IN_KIB = 1024 * 1024;
const noProgress = () => {};

const arrays = [
  { api: 'v2', paths: '/api/json/v2/types', xms: new XmsEmulator({ password: PASSWORD }) },
  { api: 'v1', paths: '/api/json/types', xms: new XmsEmulator({ password: PASSWORD, clusterVersion: '3.0.2-14' }) },
] as const;

beforeAll(async () => {
  for (const { xms } of arrays) await xms.start();
});
afterAll(async () => {
  for (const { xms } of arrays) await xms.cleanup();
});

async function startDriver(xms: XmsEmulator, extra: Record<string, unknown> = {}): Promise<{ driver: VolumeDriver; close: () => Promise<void> }> {
  const secrets = new SecretRegistry();
  const config = xms.cinderBackend('xtremio', extra);
  const { options } = validateDriverOptions('xtremio', xtremio, config, secrets);
  const driver = xtremio.create(
    options,
    { backendName: 'xtremio', log: createLogger('t'), secrets, dataDir: '/tmp', rootHelper: '', serving: true, host: refusingHost('this test attaches nothing') },
    String(config.volume_driver),
  );
  await driver.setup();
  return { driver, close: () => driver.close() };
}

/** Runs `test` with a driver against `xms`, closing it whatever happens. */
async function withDriver(xms: XmsEmulator, test: (driver: VolumeDriver) => Promise<void>): Promise<void> {
  const { driver, close } = await startDriver(xms);
  try {
    await test(driver);
  } finally {
    await close();
  }
}

const newVolume = (size: number): CreateVolumeRequest => ({ id: randomUUID(), size, pool_name: 'xtremio', name: '', description: '', bootable: false });
const snapshotOf = (volume: CreateVolumeRequest): SnapshotRef => ({ id: randomUUID(), volume_id: volume.id, volume_size: volume.size });

for (const { api, paths, xms } of arrays) {
  describe(`XtremIO snapshots over the ${api} API`, () => {
    const posts = () => xms.requests.filter((line) => line.startsWith(`POST ${paths}/snapshots`)).length;

    it('has both groups, and snapshots take no pool space', async () => {
      await withDriver(xms, async (driver) => {
        expect(driver.snapshots).toBeDefined();
        expect(driver.clones).toBeDefined();
        expect(driver.snapshotSizeGb!(newVolume(10))).toBe(0);
      });
    });

    it('makes a snapshot an XMS snapshot named after the snapshot id, of the volume, its size', async () => {
      await withDriver(xms, async (driver) => {
        const volume = newVolume(3);
        await driver.createVolume(volume);
        const free = (await driver.getStats()).pools[0].free_capacity_gb;
        const snapshot = snapshotOf(volume);
        const putsBefore = xms.requests.filter((line) => line.startsWith('PUT')).length;
        const created = await driver.snapshots!.createSnapshot(snapshot, volume);
        expect(created).toBeUndefined(); // Cinder's driver sets no provider_location

        const object = xms.volumes.get(snapshot.id);
        expect(object?.ancestor?.name).toBe(volume.id);
        expect(object?.sizeKib).toBe(3 * GIB_IN_KIB);
        expect(xms.requests).toContain(`POST ${paths}/snapshots`);
        if (api === 'v2') {
          // Cinder's XtremIOClient4: read-only, in a set named after the snapshot, renamed by index.
          expect(object?.snapshotType).toBe('readonly');
          expect(xms.snapshotSetVolumes(snapshot.id)).toEqual([object]);
          expect(xms.requests).toContain(`PUT ${paths}/snapshots/${object!.index}`);
        } else {
          // XtremIOClient3: snap-vol-name and ancestor-vol-id; named at once, no read-only snapshots.
          expect(object?.snapshotType).toBeUndefined();
          expect(xms.snapshotSets.size).toBe(0);
          expect(xms.requests.filter((line) => line.startsWith('PUT')).length).toBe(putsBefore);
        }
        // Thin: the snapshot shares the volume's blocks.
        expect((await driver.getStats()).pools[0].free_capacity_gb).toBe(free);

        await driver.snapshots!.deleteSnapshot(snapshot, volume);
        expect(xms.volumes.has(snapshot.id)).toBe(false);
        expect(xms.snapshotSets.has(snapshot.id)).toBe(false);
        await driver.snapshots!.deleteSnapshot(snapshot, volume); // already gone counts as deleted
        expect(xms.volumes.get(volume.id)?.sizeKib).toBe(3 * GIB_IN_KIB);
        await driver.deleteVolume(volume);
      });
    });

    it('makes a volume from a snapshot a writable snapshot of it, extended when asked larger', async () => {
      await withDriver(xms, async (driver) => {
        const volume = newVolume(2);
        await driver.createVolume(volume);
        const snapshot = snapshotOf(volume);
        await driver.snapshots!.createSnapshot(snapshot, volume);

        const same = newVolume(2);
        expect(await driver.snapshots!.createVolumeFromSnapshot(same, snapshot, noProgress)).toBeUndefined();
        const larger = newVolume(5);
        await driver.snapshots!.createVolumeFromSnapshot(larger, snapshot, noProgress);

        for (const [made, sizeGb] of [
          [same, 2],
          [larger, 5],
        ] as const) {
          const object = xms.volumes.get(made.id);
          expect(object?.ancestor?.name).toBe(snapshot.id);
          expect(object?.sizeKib).toBe(sizeGb * GIB_IN_KIB);
          if (api === 'v2') expect(object?.snapshotType).toBe('regular');
        }
        expect(xms.requests).toContain(`PUT ${paths}/volumes?name=${larger.id}`); // Cinder's extend_volume

        // XMS snapshots do not depend on their ancestors: the source snapshot and volume can go first.
        await driver.snapshots!.deleteSnapshot(snapshot, volume);
        await driver.deleteVolume(volume);
        expect(xms.volumes.get(larger.id)?.ancestor?.name).toBe(snapshot.id);
        for (const made of [same, larger]) await driver.deleteVolume(made);
        expect(xms.volumes.size).toBe(0);
      });
    });

    it('clones a volume into a writable snapshot of it, extended when asked larger', async () => {
      await withDriver(xms, async (driver) => {
        const source = newVolume(4);
        await driver.createVolume(source);
        const clone = newVolume(4);
        expect(await driver.clones!.createClonedVolume(clone, source, noProgress)).toBeUndefined();
        const larger = newVolume(6);
        await driver.clones!.createClonedVolume(larger, source, noProgress);

        for (const [made, sizeGb] of [
          [clone, 4],
          [larger, 6],
        ] as const) {
          const object = xms.volumes.get(made.id);
          expect(object?.ancestor?.name).toBe(source.id);
          expect(object?.sizeKib).toBe(sizeGb * GIB_IN_KIB);
          if (api === 'v2') expect(object?.snapshotType).toBe('regular');
        }
        expect(xms.volumes.get(source.id)?.sizeKib).toBe(4 * GIB_IN_KIB);
        for (const made of [source, clone, larger]) await driver.deleteVolume(made);
        expect(xms.volumes.size).toBe(0);
      });
    });

    it('says which source is missing, and leaves nothing behind', async () => {
      await withDriver(xms, async (driver) => {
        const ghost = newVolume(1);
        await expect(driver.snapshots!.createSnapshot(snapshotOf(ghost), ghost)).rejects.toMatchObject({
          code: 'NOT_FOUND',
          message: expect.stringContaining(`the array has no volume named ${ghost.id} (obj_not_found)`),
        });
        await expect(driver.clones!.createClonedVolume(newVolume(1), ghost, noProgress)).rejects.toMatchObject({ code: 'NOT_FOUND' });
        expect(xms.volumes.size).toBe(0);
      });
    });

    it('refuses a name the array already has, and leaves no unnamed snapshot behind', async () => {
      await withDriver(xms, async (driver) => {
        const source = newVolume(1);
        const taken = newVolume(1);
        await driver.createVolume(source);
        await driver.createVolume(taken);
        await expect(driver.clones!.createClonedVolume(taken, source, noProgress)).rejects.toMatchObject({
          code: 'ALREADY_EXISTS',
          message: expect.stringMatching(/vol_obj_name_not_unique/),
        });
        // v2 made the snapshot, failed to rename it and deleted it again (Cinder's revert).
        expect([...xms.volumes.keys()].sort()).toEqual([source.id, taken.id].sort());
        expect(xms.snapshotSets.size).toBe(0);
        for (const volume of [source, taken]) await driver.deleteVolume(volume);
      });
    });

    it('retries while the array is busy', async () => {
      const { driver, close } = await startDriver(xms, { xtremio_array_busy_retry_count: 3 });
      try {
        const volume = newVolume(1);
        await driver.createVolume(volume);
        const snapshot = snapshotOf(volume);
        const before = posts();
        xms.answerBusy(2, 'POST');
        await driver.snapshots!.createSnapshot(snapshot, volume);
        expect(posts() - before).toBe(3);
        expect(xms.volumes.get(snapshot.id)?.ancestor?.name).toBe(volume.id);

        xms.answerBusy(10, 'POST');
        await expect(driver.clones!.createClonedVolume(newVolume(1), volume, noProgress)).rejects.toMatchObject({
          code: 'BACKEND_BUSY',
          message: expect.stringMatching(/the array stayed busy after 3 attempts \(system_is_busy\)/),
        });
        xms.answerBusy(0);
        await driver.snapshots!.deleteSnapshot(snapshot, volume);
        await driver.deleteVolume(volume);
      } finally {
        xms.answerBusy(0);
        await close();
      }
    });

    it('never shows the password, even when the array echoes the request headers', async () => {
      xms.echoRequestHeaders(true);
      const { driver, close } = await startDriver(xms);
      try {
        const volume = newVolume(1);
        await driver.createVolume(volume);
        xms.answerServerError(1, 'POST');
        const failed = await driver.snapshots!.createSnapshot(snapshotOf(volume), volume).catch((error: Error) => error);
        expect(failed).toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringMatching(/failed: HTTP 500/) });
        const ghost = newVolume(1);
        const missing = await driver.snapshots!.createSnapshot(snapshotOf(ghost), ghost).catch((error: Error) => error);
        const everything = JSON.stringify([String(failed), String(missing), (failed as Error).stack, (missing as Error).stack]);
        for (const secret of [PASSWORD, Buffer.from(`xtremio_user:${PASSWORD}`).toString('base64')]) expect(everything).not.toContain(secret);
        await driver.deleteVolume(volume);
      } finally {
        xms.echoRequestHeaders(false);
        xms.answerServerError(0);
        await close();
      }
    });
  });
}

it("says when the array's snapshot limit is reached (Cinder's XtremIOSnapshotsLimitExceeded)", async () => {
  const limited = await new XmsEmulator({ password: PASSWORD, maxSnapshotsPerVolume: 1 }).start();
  const { driver, close } = await startDriver(limited);
  try {
    const volume = newVolume(1);
    await driver.createVolume(volume);
    await driver.snapshots!.createSnapshot(snapshotOf(volume), volume);
    await expect(driver.clones!.createClonedVolume(newVolume(1), volume, noProgress)).rejects.toMatchObject({
      code: 'OUT_OF_CAPACITY',
      message: expect.stringContaining(`the array's snapshot limit is reached (too_many_snapshots_per_vol); delete snapshots of ${volume.id} first`),
    });
    expect(limited.volumes.size).toBe(2);
  } finally {
    await close();
    await limited.cleanup();
  }
});

describe('XtremIO v2 snapshot renames', () => {
  const xms = arrays[0].xms;

  it('deletes the new snapshot again when its rename fails (Cinder reverts)', async () => {
    const { driver, close } = await startDriver(xms);
    try {
      const volume = newVolume(1);
      await driver.createVolume(volume);
      xms.answerServerError(1, 'PUT');
      await expect(driver.snapshots!.createSnapshot(snapshotOf(volume), volume)).rejects.toMatchObject({
        code: 'BACKEND_UNAVAILABLE',
        message: expect.stringMatching(/rename snapshots\/\d+ to [0-9a-f-]{36} failed: HTTP 500: internal_error/),
      });
      expect([...xms.volumes.keys()]).toEqual([volume.id]);
      expect(xms.snapshotSets.size).toBe(0);
      await driver.deleteVolume(volume);
    } finally {
      xms.answerServerError(0);
      await close();
    }
  });

  it("removes a snapshot left under the array's name when deleting its id", async () => {
    const { driver, close } = await startDriver(xms);
    try {
      const volume = newVolume(1);
      await driver.createVolume(volume);
      const snapshot = snapshotOf(volume);
      // The rename and the revert both fail: as if the server died between POST and PUT.
      xms.answerServerError(1, 'PUT');
      xms.answerServerError(1, 'DELETE');
      await expect(driver.snapshots!.createSnapshot(snapshot, volume)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
      expect(xms.snapshotSetVolumes(snapshot.id).map((object) => object.name)).toEqual([`${volume.id}.${snapshot.id}`]);

      await driver.snapshots!.deleteSnapshot(snapshot, volume);
      expect([...xms.volumes.keys()]).toEqual([volume.id]);
      expect(xms.snapshotSets.size).toBe(0);
      await driver.deleteVolume(volume);
    } finally {
      xms.answerServerError(0);
      await close();
    }
  });
});
