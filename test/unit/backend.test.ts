import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Backend } from '../../src/backend.js';
import { StorageError } from '../../src/errors.js';
import { KeyedMutex } from '../../src/locks.js';
import { createLogger } from '../../src/log.js';
import { MemoryVolumeStore } from '../../src/persistence/memory.js';
import { SecretRegistry } from '../../src/secrets.js';
import { DRIVER_CATALOG, findDriver } from '../../drivers/catalog.js';

/**
 * Core semantics that need control over timing: a file backend whose driver calls are observed.
 * The real file driver runs underneath; only its timing is stretched to expose races.
 */
async function makeBackend(dir: string) {
  const store = new MemoryVolumeStore();
  const backend = new Backend(
    { name: 'b', options: { volume_backend_name: 'b', volume_driver: 'file', volumes_dir: dir } },
    { store, secrets: new SecretRegistry(), log: createLogger('test'), dataDir: dir, rootHelper: '', outputAllBackendInfo: false, volumeLocks: new KeyedMutex() },
  );
  await backend.initialize();
  expect(backend.initialized, backend.error).toBe(true);
  // Reach the driver the backend built, to count and slow its calls.
  const driver = (backend as unknown as { driver: Record<string, (...args: unknown[]) => Promise<unknown>> }).driver;
  const calls: string[] = [];
  for (const method of ['getStats', 'createVolume', 'extendVolume', 'deleteVolume']) {
    const original = driver[method]!.bind(driver);
    driver[method] = async (...args: unknown[]) => {
      calls.push(`${method}:start`);
      await new Promise((resolve) => setTimeout(resolve, 30));
      try {
        return await original(...args);
      } finally {
        calls.push(`${method}:end`);
      }
    };
  }
  return { backend, store, calls };
}

const made: string[] = [];
afterAll(() => made.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
const tempDir = async () => {
  const dir = mkdtempSync(join(tmpdir(), 'clmcp-unit-'));
  made.push(dir);
  return dir;
};

describe('Backend', () => {
  it('collapses concurrent stats refreshes into one driver call and caches the answer', async () => {
    const { backend, calls } = await makeBackend(await tempDir());
    const answers = await Promise.all([backend.stats(true), backend.stats(true), backend.stats(true), backend.stats(false)]);
    expect(calls.filter((c) => c === 'getStats:start').length).toBe(1);
    expect(new Set(answers).size).toBe(1);
    await backend.stats(false);
    expect(calls.filter((c) => c === 'getStats:start').length).toBe(1);
    await backend.stats(true);
    expect(calls.filter((c) => c === 'getStats:start').length).toBe(2);
  });

  it('serializes operations on one volume: a delete waits for the extend under way', async () => {
    const { backend, calls } = await makeBackend(await tempDir());
    const volume = await backend.createVolume({ size: 1 });
    calls.length = 0;
    const [extended, deleted] = await Promise.allSettled([backend.extendVolume(volume.id, 2), backend.deleteVolume(volume.id)]);
    expect(extended.status).toBe('fulfilled');
    expect(deleted.status).toBe('fulfilled');
    const driverCalls = calls.filter((c) => !c.startsWith('getStats'));
    expect(driverCalls).toEqual(['extendVolume:start', 'extendVolume:end', 'deleteVolume:start', 'deleteVolume:end']);
  });

  it('does not overbook a pool with concurrent creates', async () => {
    const { backend } = await makeBackend(await tempDir());
    const pool = (await backend.stats(true)).pools[0]!;
    const room = Math.floor(Math.min((pool.total_capacity_gb as number) * 20 - (pool.provisioned_capacity_gb ?? 0), (pool.free_capacity_gb as number) * 20));
    const half = Math.floor(room / 2) + 1; // two of these cannot both fit
    const results = await Promise.allSettled([backend.createVolume({ size: half }), backend.createVolume({ size: half })]);
    const refused = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    expect(refused.length).toBe(1);
    expect((refused[0]!.reason as StorageError).code).toBe('OUT_OF_CAPACITY');
  });

  it('records intent before the array call: the volume is "creating" while the driver works', async () => {
    const { backend, store } = await makeBackend(await tempDir());
    const pending = backend.createVolume({ size: 1, name: 'watch me' });
    await new Promise((resolve) => setTimeout(resolve, 45)); // stats done, create under way
    const during = store.list({ limit: 10 }).records;
    expect(during.map((r) => r.status)).toEqual(['creating']);
    const created = await pending;
    expect(store.get(created.id)?.status).toBe('available');
  });

  it('finds every driver of the catalog by alias and by Cinder path, and nothing else', () => {
    for (const entry of DRIVER_CATALOG) {
      expect(findDriver(entry.alias)).toBe(entry);
      expect(findDriver(entry.alias.toUpperCase())).toBe(entry);
      for (const path of entry.cinderPaths) expect(findDriver(path)).toBe(entry);
    }
    expect(findDriver('cinder.volume.drivers.lvm.LVMVolumeDriver')?.alias).toBe('lvm');
    expect(findDriver('cinder.volume.drivers.lvm.LVMISCSIDriver')).toBeUndefined();
  });
});

describe('Backend serialization', () => {
  it('masks secrets when a backend is dumped as JSON', async () => {
    const secrets = new SecretRegistry();
    secrets.registerFromOptions({ san_password: 'dump-canary-123' });
    const backend = new Backend(
      { name: 'd', options: { volume_backend_name: 'd', volume_driver: 'nonexistent', san_password: 'dump-canary-123', note: 'x dump-canary-123' } },
      { store: new MemoryVolumeStore(), secrets, log: createLogger('test'), dataDir: '/tmp', rootHelper: '', outputAllBackendInfo: false, volumeLocks: new KeyedMutex() },
    );
    await backend.initialize();
    const dump = JSON.stringify(backend);
    expect(dump).not.toContain('dump-canary-123');
    expect(JSON.parse(dump)).toMatchObject({ id: 'd', initialized: false, config: { san_password: '***', note: 'x ***' } });
    expect(JSON.parse(dump).error).toMatch(/volume_driver "nonexistent" is not supported/);
  });
});
