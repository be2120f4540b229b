import { refusingHost } from '../helpers/refusing-host.js';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { findDriver } from '../../drivers/catalog.js';
import type { CreateVolumeRequest, SnapshotRef, VolumeDriver, VolumeRef } from '../../drivers/kit/types.js';
import { StorageError } from '../../src/base/errors.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { validateDriverOptions } from '../../src/config/driver-options.js';

/**
 * The file driver's snapshots, clones and volumes from snapshots, driven directly and checked
 * with data (cinderlib's functional test_create_volume_from_snapshot and test_clone): known bytes
 * are written into the image, the source is overwritten after the copy, and the copy still holds
 * the original bytes. Copies must stay sparse where the source is.
 */
const GIB = 1024 ** 3;
const BLOCK = 4096;
/** Where test data goes in a 1 GiB image: the start, the middle and the last 4 KiB. */
const OFFSETS = [0, 512 * 1024 ** 2, GIB - BLOCK];

const made: string[] = [];
const open_drivers: VolumeDriver[] = [];
afterEach(async () => {
  for (const driver of open_drivers.splice(0)) await driver.close();
});
afterAll(() => made.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

async function makeDriver(): Promise<{ driver: VolumeDriver; dir: string }> {
  const root = mkdtempSync(join(tmpdir(), 'clmcp-file-snap-'));
  made.push(root);
  const dir = join(root, 'volumes');
  const secrets = new SecretRegistry();
  const definition = await findDriver('file')!.load();
  const { options } = validateDriverOptions('files', definition, { volume_backend_name: 'files', volume_driver: 'file', volumes_dir: dir }, secrets);
  const driver = definition.create(
    options,
    { backendName: 'files', log: createLogger('test'), secrets, dataDir: root, rootHelper: '', serving: true, host: refusingHost('this test attaches nothing') },
    'file',
  );
  await driver.setup();
  open_drivers.push(driver);
  return { driver, dir };
}

function volumeRequest(size = 1): CreateVolumeRequest {
  return { id: randomUUID(), size, pool_name: 'files', name: 'test', description: '', bootable: false };
}

function snapshotOf(volume: VolumeRef): SnapshotRef {
  return { id: randomUUID(), volume_id: volume.id, volume_size: volume.size };
}

function pattern(seed: number): Buffer {
  const buffer = Buffer.alloc(BLOCK);
  for (let i = 0; i < BLOCK; i++) buffer[i] = (seed * 31 + i * 7 + 1) % 251 || 1; // never zero
  return buffer;
}

async function writeAt(path: string, offsets: number[], seed: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    for (const [i, offset] of offsets.entries()) await handle.write(pattern(seed + i), 0, BLOCK, offset);
  } finally {
    await handle.close();
  }
}

async function readAt(path: string, offset: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(BLOCK);
    await handle.read(buffer, 0, BLOCK, offset);
    return buffer;
  } finally {
    await handle.close();
  }
}

async function expectBytes(path: string, seed: number): Promise<void> {
  for (const [i, offset] of OFFSETS.entries()) expect((await readAt(path, offset)).equals(pattern(seed + i)), `${path} at ${offset}`).toBe(true);
}

function expectSparse(path: string): void {
  const info = statSync(path);
  expect(info.size).toBe(GIB);
  expect(info.blocks * 512).toBeLessThan(64 * 1024 ** 2);
}

async function pool(driver: VolumeDriver, recount = false) {
  const stats = await driver.getStats({ recount });
  const first = stats.pools[0];
  return { provisioned: first.provisioned_capacity_gb, volumes: first.total_volumes };
}

async function rejection(promise: Promise<unknown>): Promise<StorageError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(StorageError);
  return error as StorageError;
}

describe('file driver: snapshots, clones and volumes from snapshots', () => {
  it('offers snapshots and clones, with thin snapshots', async () => {
    const { driver } = await makeDriver();
    expect(driver.snapshots).toBeDefined();
    expect(driver.clones).toBeDefined();
    expect(driver.snapshotSizeGb?.({ id: randomUUID(), size: 1, pool_name: 'files' }) ?? 0).toBe(0);
  });

  it('a volume made from a snapshot holds the bytes of the moment of the snapshot, and stays sparse', async () => {
    const { driver, dir } = await makeDriver();
    const source = volumeRequest();
    await driver.createVolume(source);
    const sourcePath = join(dir, `volume-${source.id}`);
    await writeAt(sourcePath, OFFSETS, 1);

    const snapshot = snapshotOf(source);
    await driver.snapshots!.createSnapshot(snapshot, source);
    const snapshotPath = join(dir, `snapshot-${snapshot.id}`);
    expectSparse(snapshotPath);
    await writeAt(sourcePath, OFFSETS, 100); // overwrite the source after the snapshot
    await expectBytes(snapshotPath, 1);

    const fromSnapshot = volumeRequest(snapshot.volume_size);
    const progress: Array<[number, number]> = [];
    const created = await driver.snapshots!.createVolumeFromSnapshot(fromSnapshot, snapshot, (done, total) => progress.push([done, total]));
    const copyPath = join(dir, `volume-${fromSnapshot.id}`);
    expect(created).toEqual({ provider_location: copyPath });
    await expectBytes(copyPath, 1);
    await expectBytes(sourcePath, 100);
    expectSparse(copyPath);
    expect((await readAt(copyPath, 4096 * 1000)).equals(Buffer.alloc(BLOCK))).toBe(true);

    // Progress: bytes, never going back, ending at the total.
    expect(progress.length).toBeGreaterThan(0);
    for (const [, total] of progress) expect(total).toBe(GIB);
    for (let i = 1; i < progress.length; i++) expect(progress[i][0]).toBeGreaterThanOrEqual(progress[i - 1][0]);
    expect(progress.at(-1)).toEqual([GIB, GIB]);

    // The new volume is independent of the snapshot too.
    await writeAt(copyPath, OFFSETS, 200);
    await expectBytes(snapshotPath, 1);
  });

  it('a clone holds the source bytes of the moment of the clone, and stays sparse', async () => {
    const { driver, dir } = await makeDriver();
    const source = volumeRequest();
    await driver.createVolume(source);
    const sourcePath = join(dir, `volume-${source.id}`);
    await writeAt(sourcePath, OFFSETS, 7);

    const clone = volumeRequest(source.size);
    const progress: Array<[number, number]> = [];
    const created = await driver.clones!.createClonedVolume(clone, source, (done, total) => progress.push([done, total]));
    const clonePath = join(dir, `volume-${clone.id}`);
    expect(created).toEqual({ provider_location: clonePath });
    await writeAt(sourcePath, OFFSETS, 50);
    await expectBytes(clonePath, 7);
    await expectBytes(sourcePath, 50);
    expectSparse(clonePath);
    for (let i = 1; i < progress.length; i++) expect(progress[i][0]).toBeGreaterThanOrEqual(progress[i - 1][0]);
    expect(progress.at(-1)).toEqual([GIB, GIB]);
  });

  it('copies an image whose length is not a whole number of chunks, data up to the last byte', async () => {
    const { driver, dir } = await makeDriver();
    const source = volumeRequest();
    await driver.createVolume(source);
    const sourcePath = join(dir, `volume-${source.id}`);
    // A short tail: the image is 1 GiB + 1 byte, the last byte non-zero (a volume grown outside us).
    const handle = await open(sourcePath, 'r+');
    await handle.write(Buffer.from([0xab]), 0, 1, GIB);
    await handle.close();
    const clone = volumeRequest();
    await driver.clones!.createClonedVolume(clone, source, () => undefined);
    const clonePath = join(dir, `volume-${clone.id}`);
    expect(statSync(clonePath).size).toBe(GIB + 1);
    expect((await readAt(clonePath, GIB))[0]).toBe(0xab);
  });

  it('keeps the provisioned and volume counts right, as a recount finds them (the lock file is not counted)', async () => {
    const { driver, dir } = await makeDriver();
    expect(readdirSync(dir)).toContain('.cinderlib-mcp.lock');
    expect(await pool(driver, true)).toEqual({ provisioned: 0, volumes: 0 });
    const source = volumeRequest(2);
    await driver.createVolume(source);
    const snapshot = snapshotOf(source);
    await driver.snapshots!.createSnapshot(snapshot, source);
    expect(await pool(driver)).toEqual({ provisioned: 4, volumes: 1 });
    expect(await pool(driver, true)).toEqual({ provisioned: 4, volumes: 1 });

    const fromSnapshot = volumeRequest(2);
    await driver.snapshots!.createVolumeFromSnapshot(fromSnapshot, snapshot, () => undefined);
    const clone = volumeRequest(2);
    await driver.clones!.createClonedVolume(clone, source, () => undefined);
    expect(await pool(driver)).toEqual({ provisioned: 8, volumes: 3 });
    expect(await pool(driver, true)).toEqual({ provisioned: 8, volumes: 3 });

    await driver.snapshots!.deleteSnapshot(snapshot, source);
    expect(await pool(driver)).toEqual({ provisioned: 6, volumes: 3 });
    expect(await pool(driver, true)).toEqual({ provisioned: 6, volumes: 3 });
  });

  it('deleting a snapshot leaves nothing named after it; deleting it again succeeds', async () => {
    const { driver, dir } = await makeDriver();
    const source = volumeRequest();
    await driver.createVolume(source);
    const snapshot = snapshotOf(source);
    await driver.snapshots!.createSnapshot(snapshot, source);
    expect(readdirSync(dir).filter((name) => name.includes(snapshot.id))).toEqual([`snapshot-${snapshot.id}`]);
    await driver.snapshots!.deleteSnapshot(snapshot, source);
    expect(readdirSync(dir).filter((name) => name.includes(snapshot.id))).toEqual([]);
    await driver.snapshots!.deleteSnapshot(snapshot, source);
    expect(await pool(driver)).toEqual({ provisioned: 1, volumes: 1 });
    await driver.deleteVolume(source);
    expect(readdirSync(dir).filter((name) => name.includes(source.id))).toEqual([]);
  });

  it('a copy onto an existing file fails, leaves that file and the source alone, and adds no partial file', async () => {
    const { driver, dir } = await makeDriver();
    const source = volumeRequest();
    await driver.createVolume(source);
    const sourcePath = join(dir, `volume-${source.id}`);
    await writeAt(sourcePath, OFFSETS, 3);
    const before = readdirSync(dir).sort();

    const clone = volumeRequest();
    const clonePath = join(dir, `volume-${clone.id}`);
    writeFileSync(clonePath, 'not ours');
    const refused = await rejection(driver.clones!.createClonedVolume(clone, source, () => undefined));
    expect(refused.code).toBe('ALREADY_EXISTS');
    expect(refused.message).toContain('files');
    expect(refused.message).toContain(clonePath);
    expect(await readFile(clonePath, 'utf8')).toBe('not ours');
    await expectBytes(sourcePath, 3);
    expect(readdirSync(dir).sort()).toEqual([...before, `volume-${clone.id}`].sort());

    const snapshot = snapshotOf(source);
    writeFileSync(join(dir, `snapshot-${snapshot.id}`), 'not ours either');
    expect((await rejection(driver.snapshots!.createSnapshot(snapshot, source))).code).toBe('ALREADY_EXISTS');
    expect(await readFile(join(dir, `snapshot-${snapshot.id}`), 'utf8')).toBe('not ours either');
  });

  it('a copy that fails midway removes its partial destination and leaves the source intact', async () => {
    const { driver, dir } = await makeDriver();
    const source = volumeRequest();
    await driver.createVolume(source);
    const sourcePath = join(dir, `volume-${source.id}`);
    await writeAt(sourcePath, OFFSETS, 9);
    const before = readdirSync(dir).sort();
    const clone = volumeRequest();
    // The progress callback throws once the copy is under way: the copy stops there.
    const failure = await driver
      .clones!.createClonedVolume(clone, source, (done) => {
        if (done > 0) throw new Error('interrupted');
      })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(failure).toBeInstanceOf(Error);
    expect(existsSync(join(dir, `volume-${clone.id}`))).toBe(false);
    expect(readdirSync(dir).sort()).toEqual(before);
    await expectBytes(sourcePath, 9);
    expect(await pool(driver)).toEqual({ provisioned: 1, volumes: 1 });
  });

  it('a missing source is NOT_FOUND naming its image file, and leaves nothing behind', async () => {
    const { driver, dir } = await makeDriver();
    const before = readdirSync(dir).sort();
    const source = volumeRequest();
    const snapshot = snapshotOf(source);
    const missingVolume = await rejection(driver.snapshots!.createSnapshot(snapshot, source));
    expect(missingVolume.code).toBe('NOT_FOUND');
    expect(missingVolume.message).toContain(join(dir, `volume-${source.id}`));
    const missingSnapshot = await rejection(driver.snapshots!.createVolumeFromSnapshot(volumeRequest(), snapshot, () => undefined));
    expect(missingSnapshot.code).toBe('NOT_FOUND');
    expect(missingSnapshot.message).toContain(join(dir, `snapshot-${snapshot.id}`));
    expect(readdirSync(dir).sort()).toEqual(before);
  });
});

describe('the copy strategies under the file driver', () => {
  async function sourceImage(): Promise<{ dir: string; source: string }> {
    const dir = mkdtempSync(join(tmpdir(), 'clmcp-copy-'));
    made.push(dir);
    const source = join(dir, 'source');
    writeFileSync(source, '');
    const handle = await open(source, 'r+');
    await handle.truncate(GIB);
    await handle.close();
    await writeAt(source, OFFSETS, 4);
    return { dir, source };
  }

  it('uses GNU cp, which jumps over holes, where the host has it (and a reflink where the filesystem shares blocks)', async () => {
    const { copyImage } = await import('../../drivers/kit/copy/sparse-copy.js');
    const { dir, source } = await sourceImage();
    const reports: number[] = [];
    const outcome = await copyImage(source, join(dir, 'copy'), (done, total) => {
      expect(total).toBe(GIB);
      reports.push(done);
    });
    expect(['reflink', 'cp']).toContain(outcome.method); // Debian's coreutils cp is always there
    await expectBytes(join(dir, 'copy'), 4);
    expectSparse(join(dir, 'copy'));
    expect(reports.at(-1)).toBe(GIB);
    expect(reports).toEqual([...reports].sort((a, b) => a - b));
    await expect(copyImage(source, join(dir, 'copy'))).rejects.toMatchObject({ step: 'create', code: 'EEXIST' });
  });

  it('falls back to its own read-through copy, with the same bytes, holes and progress', async () => {
    const { sparseCopy } = await import('../../drivers/kit/copy/sparse-copy.js');
    const { dir, source } = await sourceImage();
    const reports: number[] = [];
    expect(await sparseCopy(source, join(dir, 'copy'), (done) => reports.push(done))).toBe(GIB);
    await expectBytes(join(dir, 'copy'), 4);
    expectSparse(join(dir, 'copy'));
    expect(reports.at(-1)).toBe(GIB);
    expect(reports).toEqual([...reports].sort((a, b) => a - b));
  });
});
