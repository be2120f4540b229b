import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { VolumeDriver } from '../../drivers/kit/types.js';
import { PureEmulator } from '../emulators/pure/server.js';
import { startMcpServer } from '../helpers/server.js';
import { makeDriver, newVolume, uuid } from './fixtures.js';

/**
 * Volumes, snapshots and copies as Cinder's Pure driver makes them, against the emulator:
 * `<volume>.snapshot-<id>` from `POST volume-snapshots?source_names=` with a suffix, copies by
 * `POST volumes` with a source, deletes that destroy (and eradicate when asked), and names that
 * the array keeps for destroyed objects.
 */
const array = new PureEmulator();
const drivers: VolumeDriver[] = [];
const GIB = 1024 ** 3;

beforeAll(async () => {
  await array.start();
});
afterEach(async () => {
  array.clearFaults();
  await Promise.all(drivers.splice(0).map((driver) => driver.close()));
});
afterAll(async () => {
  await array.cleanup();
});

async function driverWith(extra: Record<string, unknown> = {}) {
  const made = await makeDriver(array, extra);
  drivers.push(made.driver);
  return made.driver;
}

const snapshotOf = (volumeId: string) => ({ id: uuid(), volume_id: volumeId, volume_size: 1 });

describe('Pure snapshots and copies', () => {
  it('snapshots a volume as <volume>.snapshot-<id>, and destroys it on delete, keeping its name until eradicated', async () => {
    const driver = await driverWith();
    const volume = newVolume(2);
    await driver.createVolume(volume);
    const snapshot = { ...snapshotOf(volume.id), volume_size: 2 };
    const name = `volume-${volume.id}-cinder.snapshot-${snapshot.id}`;
    expect(await driver.snapshots!.createSnapshot(snapshot, volume)).toBeUndefined(); // Cinder sets no provider_location
    expect(array.snapshots.get(name)).toMatchObject({ suffix: `snapshot-${snapshot.id}`, provisioned: 2 * GIB, destroyed: false, source: { name: `volume-${volume.id}-cinder` } });
    expect(array.requests).toContain(`POST /api/2.26/volume-snapshots?source_names=volume-${volume.id}-cinder`);
    expect(driver.snapshotSizeGb?.(volume)).toBe(0);

    await driver.snapshots!.deleteSnapshot(snapshot, volume);
    expect(array.snapshots.get(name)?.destroyed).toBe(true);
    await driver.snapshots!.deleteSnapshot(snapshot, volume); // already destroyed: done
    // The array keeps the destroyed snapshot's name: the same snapshot cannot be taken again.
    await expect(driver.snapshots!.createSnapshot(snapshot, volume)).rejects.toMatchObject({ code: 'ALREADY_EXISTS', message: expect.stringMatching(/Snapshot already exists/) });
    await driver.snapshots!.deleteSnapshot(snapshotOf(volume.id), volume); // never made: done
    await driver.deleteVolume(volume);
  });

  it('with pure_eradicate_on_delete, eradicates volumes and snapshots (names and space freed)', async () => {
    const driver = await driverWith({ pure_eradicate_on_delete: true });
    const volume = newVolume();
    await driver.createVolume(volume);
    const snapshot = snapshotOf(volume.id);
    await driver.snapshots!.createSnapshot(snapshot, volume);
    const snapshotName = `volume-${volume.id}-cinder.snapshot-${snapshot.id}`;
    await driver.snapshots!.deleteSnapshot(snapshot, volume);
    expect(array.snapshots.has(snapshotName)).toBe(false);
    expect(array.requests).toContain(`DELETE /api/2.26/volume-snapshots?names=${encodeURIComponent(snapshotName).replace(/%2E/g, '.')}`);
    array.write(`volume-${volume.id}-cinder`, GIB);
    const used = array.usedBytes();
    await driver.deleteVolume(volume);
    expect(array.volumes.has(`volume-${volume.id}-cinder`)).toBe(false);
    expect(array.usedBytes()).toBe(used - GIB);
    await driver.deleteVolume(volume); // already gone: done
  });

  it('makes volumes from snapshots and clones as array copies with a source, independent of it', async () => {
    const driver = await driverWith();
    const source = newVolume(2);
    await driver.createVolume(source);
    const snapshot = { ...snapshotOf(source.id), volume_size: 2 };
    await driver.snapshots!.createSnapshot(snapshot, source);
    const fromSnapshot = newVolume(2);
    const clone = newVolume(2);
    await driver.snapshots!.createVolumeFromSnapshot(fromSnapshot, snapshot, () => {});
    await driver.clones!.createClonedVolume(clone, source, () => {});
    expect(array.volumes.get(`volume-${fromSnapshot.id}-cinder`)).toMatchObject({ provisioned: 2 * GIB, source: { name: `volume-${source.id}-cinder.snapshot-${snapshot.id}` } });
    expect(array.volumes.get(`volume-${clone.id}-cinder`)).toMatchObject({ provisioned: 2 * GIB, source: { name: `volume-${source.id}-cinder` } });
    // Copies do not depend on their source: the snapshot and the source go, the copies stay.
    await driver.snapshots!.deleteSnapshot(snapshot, source);
    await driver.deleteVolume(source);
    for (const copy of [fromSnapshot, clone]) {
      expect(array.volumes.get(`volume-${copy.id}-cinder`)?.destroyed).toBe(false);
      await driver.deleteVolume(copy);
    }
  });

  it('refuses a volume name a destroyed volume still holds, and leaves that volume alone', async () => {
    const driver = await driverWith();
    const volume = newVolume();
    await driver.createVolume(volume);
    await driver.deleteVolume(volume);
    await expect(driver.createVolume(volume)).rejects.toMatchObject({ code: 'ALREADY_EXISTS', message: expect.stringMatching(/Volume already exists/) });
    expect(array.volumes.get(`volume-${volume.id}-cinder`)).toMatchObject({ destroyed: true });
  });

  it('over MCP: a copy asked larger is made at the source size and grown by a PATCH of provisioned', async () => {
    const server = await startMcpServer({ backends: [array.cinderBackend('pure')] });
    try {
      const source = (await server.call('create_volume', { backend: 'pure', size: 1 })).data;
      const snapshot = (await server.call('create_snapshot', { volume_id: source.id })).data;
      const bigger = await server.call('create_volume', { snapshot_id: snapshot.id, size: 3 });
      expect(bigger.isError, bigger.text).toBe(false);
      const name = `volume-${bigger.data.id}-cinder`;
      expect(array.volumes.get(name)?.provisioned).toBe(3 * GIB);
      const posted = array.requests.indexOf(`POST /api/2.26/volumes?names=${name}&with_default_protection=false`);
      expect(posted).toBeGreaterThan(-1);
      expect(array.requests.slice(posted)).toContain(`PATCH /api/2.26/volumes?names=${name}`);
      for (const id of [bigger.data.id]) await server.call('delete_volume', { volume_id: id });
      await server.call('delete_volume', { volume_id: source.id, cascade: true });
      expect(array.snapshots.get(`volume-${source.id}-cinder.snapshot-${snapshot.id}`)?.destroyed).toBe(true);
    } finally {
      await server.close();
    }
  });
});
