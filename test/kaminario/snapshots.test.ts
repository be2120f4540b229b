import { refusingHost } from '../helpers/refusing-host.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import kaminario from '../../drivers/kaminario/index.js';
import type { VolumeDriver } from '../../drivers/kit/types.js';
import { validateDriverOptions } from '../../src/config/driver-options.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { K2Emulator } from '../emulators/kaminario/server.js';

/**
 * The K2 driver's snapshot group straight against the emulator, checked against the calls
 * Cinder's Kaminario driver makes through krest: a "cs-<snapshot id>" snapshot of the volume's
 * "cvg-<volume id>" group with the Best_Effort_Retention policy, deleted by short_name.
 */
const PASSWORD = 'k2-Snap-secret-4471';
const k2 = new K2Emulator({ password: PASSWORD });
const drivers: VolumeDriver[] = [];

beforeAll(async () => {
  await k2.start();
});
afterEach(async () => {
  k2.clearFaults();
  k2.echoRequestHeaders(false);
  await Promise.all(drivers.splice(0).map((driver) => driver.close()));
});
afterAll(async () => {
  await k2.cleanup();
});

async function makeDriver(extra: Record<string, unknown> = {}): Promise<VolumeDriver> {
  const secrets = new SecretRegistry();
  const raw = k2.cinderBackend('k2', extra);
  const { options } = validateDriverOptions('k2', kaminario, raw, secrets);
  const driver = kaminario.create(
    options,
    { backendName: 'k2', log: createLogger('k2-test'), secrets, dataDir: '/tmp', rootHelper: '', serving: true, host: refusingHost('this test attaches nothing') },
    'kaminario',
  );
  drivers.push(driver);
  await driver.setup();
  return driver;
}

let counter = 0;
/** Fresh uuid-shaped ids, so tests never collide on array names. */
function uuid(): string {
  counter += 1;
  return `5e1f0000-0000-4000-8000-${String(counter).padStart(12, '0')}`;
}

function newVolume(size = 2) {
  return { id: uuid(), size, pool_name: 'k2', name: 'display text', description: '', bootable: false };
}

function snapshotOf(volume: { id: string; size: number }) {
  return { id: uuid(), volume_id: volume.id, volume_size: volume.size };
}

const snapshotNames = () => [...k2.objects.get('snapshots')!.values()].map((snapshot) => snapshot.short_name);
const arrayState = () => JSON.stringify([...k2.objects.entries()].map(([resource, table]) => [resource, [...table.keys()]]));

describe('Kaminario K2 snapshots', () => {
  it('offers snapshots and clones (copies through the host), and snapshots take no space of their own', async () => {
    const driver = await makeDriver();
    expect(driver.snapshots).toBeDefined();
    expect(driver.clones?.refusesConnectedSource).toBe(true); // copies: see connections.test.ts
    expect(driver.snapshotSizeGb?.(newVolume(50))).toBe(0);
  });

  it('snapshots the volume group as cs-<id> with Best_Effort_Retention, deletes it by short_name, and a second delete succeeds', async () => {
    const driver = await makeDriver();
    const volume = newVolume();
    await driver.createVolume(volume);
    const snapshot = snapshotOf(volume);
    await driver.snapshots!.createSnapshot(snapshot, volume);

    const group = k2.named('volume_groups', `cvg-${volume.id}`)!;
    const policy = k2.named('retention_policies', 'Best_Effort_Retention')!;
    expect(k2.named('snapshots', `cvg-${volume.id}:cs-${snapshot.id}`)).toMatchObject({
      short_name: `cs-${snapshot.id}`,
      source: { ref: `/volume_groups/${group.id}` },
      volume_group: { ref: `/volume_groups/${group.id}` },
      retention_policy: { ref: `/retention_policies/${policy.id}` },
      is_auto_deleteable: false, // as Cinder: the retention policy must not expire a snapshot Cinder tracks
    });
    expect(k2.requests).toContain('GET /api/v2/retention_policies?name=Best_Effort_Retention');

    await driver.snapshots!.deleteSnapshot(snapshot, volume);
    expect(snapshotNames()).not.toContain(`cs-${snapshot.id}`);
    expect(k2.requests).toContain(`GET /api/v2/snapshots?short_name=cs-${snapshot.id}`);
    await driver.snapshots!.deleteSnapshot(snapshot, volume); // already gone counts as deleted
    await driver.deleteVolume(volume);
    expect(k2.named('volume_groups', `cvg-${volume.id}`)).toBeUndefined();
  });

  it('refuses to delete a volume whose group still has snapshots, naming them, and touches nothing', async () => {
    const driver = await makeDriver();
    const volume = newVolume();
    await driver.createVolume(volume);
    const [first, second] = [snapshotOf(volume), snapshotOf(volume)];
    for (const snapshot of [first, second]) await driver.snapshots!.createSnapshot(snapshot, volume);
    const before = arrayState();

    const refusal = driver.deleteVolume(volume);
    await expect(refusal).rejects.toMatchObject({ code: 'IN_USE' });
    const message = await refusal.catch((error: Error) => error.message);
    expect(message).toContain(first.id);
    expect(message).toContain(second.id);
    expect(message).toMatch(/delete the snapshots first/);
    expect(arrayState()).toBe(before); // the volume inside the group is still there too

    for (const snapshot of [first, second]) await driver.snapshots!.deleteSnapshot(snapshot, volume);
    await driver.deleteVolume(volume);
    expect(k2.named('volumes', `cv-${volume.id}`)).toBeUndefined();
  });

  it('answers UNSUPPORTED for a volume from a snapshot when this host cannot attach, saying why and what to do instead, and leaves nothing on the array', async () => {
    const driver = await makeDriver();
    const volume = newVolume();
    await driver.createVolume(volume);
    const snapshot = snapshotOf(volume);
    await driver.snapshots!.createSnapshot(snapshot, volume);
    const before = arrayState();
    const requestsBefore = k2.requests.length;

    const target = newVolume(volume.size);
    const refusal = driver.snapshots!.createVolumeFromSnapshot(target, snapshot, () => {});
    await expect(refusal).rejects.toMatchObject({ code: 'UNSUPPORTED' });
    const message = await refusal.catch((error: Error) => error.message);
    expect(message).toMatch(/^backend "k2": /);
    expect(message).toMatch(/copies the data through this host, as Cinder's Kaminario driver does/);
    expect(message).toMatch(/this test attaches nothing/);
    expect(message).toMatch(/restore point/);
    expect(arrayState()).toBe(before);
    expect(k2.requests.slice(requestsBefore).filter((line) => !line.startsWith('GET'))).toEqual([]);
    expect(k2.named('volumes', `cv-${target.id}`)).toBeUndefined();

    await driver.snapshots!.deleteSnapshot(snapshot, volume);
    await driver.deleteVolume(volume);
  });

  it('retries a snapshot while the K2 answers MC_ERR_BUSY', async () => {
    const driver = await makeDriver({ kaminario_retry_count: 3 });
    const volume = newVolume();
    await driver.createVolume(volume);
    const snapshot = snapshotOf(volume);
    const posts = () => k2.requests.filter((line) => line === 'POST /api/v2/snapshots').length;
    const start = posts();
    k2.inject({ status: 400, method: 'POST', resource: 'snapshots', count: 2, message: 'MC_ERR_BUSY: the system is busy, try again' });
    await driver.snapshots!.createSnapshot(snapshot, volume);
    expect(posts() - start).toBe(3);
    expect(snapshotNames()).toContain(`cs-${snapshot.id}`);

    k2.inject({ status: 400, method: 'DELETE', resource: 'snapshots', count: 1, message: 'MC_ERR_BUSY_SPECIFIC: snapshot is busy' });
    await driver.snapshots!.deleteSnapshot(snapshot, volume);
    expect(snapshotNames()).not.toContain(`cs-${snapshot.id}`);
    await driver.deleteVolume(volume);
  });

  it('says what is missing: the volume group, or the Best_Effort_Retention policy', async () => {
    const driver = await makeDriver();
    const ghost = newVolume();
    await expect(driver.snapshots!.createSnapshot(snapshotOf(ghost), ghost)).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringMatching(new RegExp(`volume group cvg-${ghost.id} is not on the array`)),
    });

    const volume = newVolume();
    await driver.createVolume(volume);
    const policy = k2.named('retention_policies', 'Best_Effort_Retention')!;
    k2.objects.get('retention_policies')!.delete(policy.id);
    try {
      await expect(driver.snapshots!.createSnapshot(snapshotOf(volume), volume)).rejects.toMatchObject({
        code: 'BACKEND_UNAVAILABLE',
        message: expect.stringMatching(/retention policy "Best_Effort_Retention"/),
      });
      const group = k2.named('volume_groups', `cvg-${volume.id}`)!;
      expect(k2.referencing('snapshots', 'volume_group', `/volume_groups/${group.id}`)).toEqual([]);
    } finally {
      k2.objects.get('retention_policies')!.set(policy.id, policy);
    }
    await driver.deleteVolume(volume);
  });

  it('never shows the password in a snapshot error, even when the array echoes the request headers', async () => {
    const driver = await makeDriver();
    const volume = newVolume();
    await driver.createVolume(volume);
    k2.echoRequestHeaders(true);
    k2.inject({ status: 400, method: 'POST', resource: 'snapshots', count: 1, message: `snapshot refused for admin:${PASSWORD}` });
    const createFailure = await driver.snapshots!.createSnapshot(snapshotOf(volume), volume).catch((error: Error) => error);
    expect(createFailure).toMatchObject({ message: expect.stringMatching(/create snapshot cs-.* failed: HTTP 400/) });
    k2.inject({ status: 400, method: 'GET', resource: 'snapshots', count: 1, message: `lookup refused, password ${PASSWORD}` });
    const deleteFailure = await driver.snapshots!.deleteSnapshot(snapshotOf(volume), volume).catch((error: Error) => error);
    expect(deleteFailure).toMatchObject({ message: expect.stringMatching(/look up cs-.* failed: HTTP 400/) });
    const everything = `${(createFailure as Error).message}\n${(deleteFailure as Error).message}`;
    for (const secret of [PASSWORD, Buffer.from(`admin:${PASSWORD}`).toString('base64')]) expect(everything).not.toContain(secret);
    await driver.deleteVolume(volume);
  });
});
