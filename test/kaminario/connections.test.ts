import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { copyDevice } from '../../drivers/kit/copy/host-copy.js';
import kaminario from '../../drivers/kaminario/index.js';
import type { CommandRunner } from '../../drivers/kit/exec/runner.js';
import type { Connector, HostAccess, VolumeDriver, VolumeRef } from '../../drivers/kit/types.js';
import { refusingHost } from '../helpers/refusing-host.js';
import { validateDriverOptions } from '../../src/config/driver-options.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { K2Emulator } from '../emulators/kaminario/server.js';
import { readAt, sparseFile, writeAt } from '../helpers/image-files.js';

/**
 * The K2 driver's connections and its copies through the host, straight against the emulator and
 * checked against what Cinder's kaminario_iscsi.py / kaminario_common.py do through krest: a K2
 * host per initiator (get_initiator_host_name) with its IQN, a mapping per volume, the LUN of the
 * mapping, portals from system/net_ips at 3260 and the target IQN from system/state; copies attach
 * the source (a "cview-" view of a snapshot) and the new volume, dd, detach, and clean up.
 */
const PASSWORD = 'k2-Conn-secret-9120';
const k2 = new K2Emulator({ password: PASSWORD });
const drivers: VolumeDriver[] = [];
const GIB = 1024 * 1024 * 1024;
const MIB = 1024 * 1024;
let workDir: string;

beforeAll(async () => {
  await k2.start();
  workDir = mkdtempSync(join(tmpdir(), 'k2-copies-'));
});
afterEach(async () => {
  k2.clearFaults();
  await Promise.all(drivers.splice(0).map((driver) => driver.close()));
});
afterAll(async () => {
  await k2.cleanup();
  rmSync(workDir, { recursive: true, force: true });
});

async function makeDriver(
  extra: Record<string, unknown> = {},
  host: (driver: () => VolumeDriver) => HostAccess = () => refusingHost('this test attaches nothing'),
): Promise<VolumeDriver> {
  const secrets = new SecretRegistry();
  const raw = k2.cinderBackend('k2', extra);
  const { options } = validateDriverOptions('k2', kaminario, raw, secrets);
  // The host reaches the driver lazily: it exists by the time the host is asked for it.
  const context = { backendName: 'k2', log: createLogger('k2-test'), secrets, dataDir: '/tmp', rootHelper: '', serving: true, host: host(() => driver) };
  const driver: VolumeDriver = kaminario.create(options, context, 'cinder.volume.drivers.kaminario.kaminario_iscsi.KaminarioISCSIDriver');
  drivers.push(driver);
  await driver.setup();
  return driver;
}

let counter = 0;
function uuid(): string {
  counter += 1;
  return `c0ee0000-0000-4000-8000-${String(counter).padStart(12, '0')}`;
}

function newVolume(size = 1) {
  return { id: uuid(), size, pool_name: 'k2', name: 'display text', description: '', bootable: false };
}

let initiatorCounter = 0;
function connectorFor(host: string, extra: Partial<Connector> = {}): Connector {
  initiatorCounter += 1;
  return {
    host,
    initiator: `iqn.1993-08.org.debian:01:${String(initiatorCounter).padStart(12, 'a')}`,
    ip: '127.0.0.5',
    platform: 'x86_64',
    os_type: 'linux2',
    multipath: false,
    ...extra,
  };
}

const table = (resource: string) => [...k2.objects.get(resource)!.values()];
const refOf = (value: unknown) => (value as { ref: string }).ref;
const mappingsOfHost = (hostId: number) => table('mappings').filter((mapping) => refOf(mapping.host) === `/hosts/${hostId}`);
const iqnsOfHost = (hostId: number) => table('host_iqns').filter((iqn) => refOf(iqn.host) === `/hosts/${hostId}`);

describe('Kaminario K2 connections', () => {
  it("connects as Cinder's K2 iSCSI driver: the array's target IQN, the first iSCSI portal at 3260, the mapping's LUN, target_discovered", async () => {
    const driver = await makeDriver();
    expect(driver.exports?.requiredConnectorKeys).toEqual(['initiator']);
    const volume = newVolume();
    await driver.createVolume(volume);
    const connector = connectorFor('compute-a');

    expect(await driver.exports!.createExport(volume, connector)).toBeUndefined(); // nothing on the array, as Cinder
    const info = await driver.exports!.initializeConnection(volume, connector);

    const host = k2.named('hosts', 'compute-a')!;
    expect(host).toMatchObject({ name: 'compute-a', type: 'Linux' });
    expect(iqnsOfHost(host.id).map((iqn) => iqn.iqn)).toEqual([connector.initiator]);
    const [mapping] = mappingsOfHost(host.id);
    expect(refOf(mapping.volume)).toBe(`/volumes/${k2.named('volumes', `cv-${volume.id}`)!.id}`);
    expect(info).toEqual({
      driver_volume_type: 'iscsi',
      data: { target_iqn: k2.targetIqn, target_portal: '127.0.0.20:3260', target_lun: mapping.lun, target_discovered: true },
    });
    expect(k2.requests).toContain('GET /api/v2/hosts?name=compute-a');
    expect(k2.requests).toContain('GET /api/v2/system/net_ips');

    await driver.exports!.terminateConnection(volume, connector, false);
    await driver.exports!.removeExport(volume);
    expect(k2.named('hosts', 'compute-a')).toBeUndefined();
    await driver.deleteVolume(volume);
  });

  it('names the K2 host after connector.host, or the reversed IQN when unique_fqdn_network is false; 32 characters at most, others than [0-9a-zA-Z-_] become _', async () => {
    const byHost = await makeDriver();
    const reversed = await makeDriver({ unique_fqdn_network: false });
    const volume = newVolume();
    await byHost.createVolume(volume);

    const long = connectorFor('compute-01.rack7.dc1.example.com.internal');
    await byHost.exports!.initializeConnection(volume, long);
    // Cut first, then replaced: "compute-01.rack7.dc1.example.com" is 32 characters.
    expect(k2.named('hosts', 'compute-01_rack7_dc1_example_com')).toBeDefined();

    const odd = connectorFor('node:7/é+x');
    await byHost.exports!.initializeConnection(volume, odd);
    expect(k2.named('hosts', 'node_7___x')).toBeDefined();

    const unique = connectorFor('ignored-host-name', { initiator: 'iqn.1993-08.org.debian:01:12aa12aa12aa-extra-long-part' });
    await reversed.exports!.initializeConnection(volume, unique);
    const expected = [...unique.initiator!]
      .reverse()
      .join('')
      .slice(0, 32)
      .replace(/[^0-9a-zA-Z_-]/g, '_');
    expect(expected).toBe('trap-gnol-artxe-aa21aa21aa21_10_');
    expect(k2.named('hosts', expected)).toMatchObject({ type: 'Linux' });
    expect(k2.named('hosts', 'ignored-host-name')).toBeUndefined();

    await byHost.exports!.terminateConnection(volume, long, false);
    await byHost.exports!.terminateConnection(volume, odd, false);
    await reversed.exports!.terminateConnection(volume, unique, false);
    expect(table('hosts')).toEqual([]);
    await byHost.deleteVolume(volume);
  });

  it('maps two volumes to one host under different LUNs, and a second connect of a volume reuses its mapping', async () => {
    const driver = await makeDriver();
    const [first, second] = [newVolume(), newVolume()];
    await driver.createVolume(first);
    await driver.createVolume(second);
    const connector = connectorFor('compute-shared');

    const one = await driver.exports!.initializeConnection(first, connector);
    const two = await driver.exports!.initializeConnection(second, connector);
    const again = await driver.exports!.initializeConnection(first, connector);

    expect(table('hosts').filter((host) => host.name === 'compute-shared')).toHaveLength(1);
    const host = k2.named('hosts', 'compute-shared')!;
    expect(iqnsOfHost(host.id)).toHaveLength(1);
    expect(mappingsOfHost(host.id)).toHaveLength(2);
    expect(one.data.target_lun).not.toBe(two.data.target_lun);
    expect(again.data.target_lun).toBe(one.data.target_lun);
    expect(again.data.target_iqn).toBe(k2.targetIqn);

    await driver.exports!.terminateConnection(first, connector, false);
    await driver.exports!.terminateConnection(second, connector, false);
    for (const volume of [first, second]) await driver.deleteVolume(volume);
  });

  it('disconnects: the mapping goes, the host (and its IQN) only with its last mapping, and a second disconnect succeeds', async () => {
    const driver = await makeDriver();
    const [first, second] = [newVolume(), newVolume()];
    await driver.createVolume(first);
    await driver.createVolume(second);
    const connector = connectorFor('compute-b');
    await driver.exports!.initializeConnection(first, connector);
    await driver.exports!.initializeConnection(second, connector);
    const host = k2.named('hosts', 'compute-b')!;

    await driver.exports!.terminateConnection(first, connector, false);
    expect(mappingsOfHost(host.id).map((mapping) => refOf(mapping.volume))).toEqual([`/volumes/${k2.named('volumes', `cv-${second.id}`)!.id}`]);
    expect(k2.named('hosts', 'compute-b')).toBeDefined();
    expect(iqnsOfHost(host.id)).toHaveLength(1);

    await driver.exports!.terminateConnection(second, connector, false);
    expect(mappingsOfHost(host.id)).toEqual([]);
    expect(k2.named('hosts', 'compute-b')).toBeUndefined();
    expect(iqnsOfHost(host.id)).toEqual([]);

    await driver.exports!.terminateConnection(second, connector, false); // already gone: success
    await driver.exports!.terminateConnection(first, connector, true);
    for (const volume of [first, second]) await driver.deleteVolume(volume);
    await driver.exports!.terminateConnection(first, connector, false); // the volume gone too: still success
  });

  it('with disable_discovery and a multipath connector, lists every iSCSI portal (not the WAN one) with the IQN and LUN for each', async () => {
    const driver = await makeDriver({ disable_discovery: true });
    const volume = newVolume();
    await driver.createVolume(volume);
    const connector = connectorFor('compute-mp', { multipath: true });
    const info = await driver.exports!.initializeConnection(volume, connector);
    const lun = info.data.target_lun;
    expect(info.data).toMatchObject({
      target_portal: '127.0.0.20:3260',
      target_portals: ['127.0.0.20:3260', '127.0.0.21:3260'],
      target_iqns: [k2.targetIqn, k2.targetIqn],
      target_luns: [lun, lun],
      target_discovered: true,
    });
    const single = await driver.exports!.initializeConnection(volume, { ...connector, multipath: false });
    expect(single.data).not.toHaveProperty('target_portals');
    await driver.exports!.terminateConnection(volume, connector, false);
    await driver.deleteVolume(volume);
  });

  it('refuses to connect a volume the array does not have, and leaves no host behind', async () => {
    const driver = await makeDriver();
    const ghost = newVolume();
    await expect(driver.exports!.initializeConnection(ghost, connectorFor('compute-ghost'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(k2.named('hosts', 'compute-ghost')).toBeUndefined();

    const volume = newVolume();
    await driver.createVolume(volume);
    k2.inject({ status: 400, method: 'POST', resource: 'mappings', count: 1, message: 'mapping refused' });
    await expect(driver.exports!.initializeConnection(volume, connectorFor('compute-refused'))).rejects.toMatchObject({ message: expect.stringMatching(/mapping refused/) });
    expect(k2.named('hosts', 'compute-refused')).toBeUndefined(); // the host made for it was removed again
    expect(table('host_iqns').filter((iqn) => !k2.resolve(refOf(iqn.host)))).toEqual([]);
    await driver.deleteVolume(volume);
  });
});

/**
 * A HostAccess like the server's own, except that the "device" of an attached K2 volume is a file
 * in a temp dir: attach connects through the driver's own exports (this host's connector), finds
 * what the K2 mapped at the LUN it answered, and hands out that object's file. A view's file is
 * its snapshot's (the test writes it: that is the snapshot's data).
 */
interface Attached {
  volume: VolumeRef;
  path: string;
  detached: boolean;
}

const COPY_CONNECTOR: Connector = { host: 'copy-host', initiator: 'iqn.1994-05.com.example:copy-host', ip: '127.0.0.1', multipath: false };

function fileHost(attached: Attached[], options: { brokenTarget?: boolean } = {}) {
  return (driver: () => VolumeDriver): HostAccess => ({
    cannotAttach: async () => undefined,
    attach: async (volume) => {
      const exports = driver().exports!;
      await exports.createExport(volume, COPY_CONNECTOR);
      const info = await exports.initializeConnection(volume, COPY_CONNECTOR);
      const host = k2.named('hosts', 'copy-host')!;
      const mapping = mappingsOfHost(host.id).find((candidate) => candidate.lun === info.data.target_lun)!;
      const mapped = k2.resolve(refOf(mapping.volume))!;
      let name: string;
      if (mapped.resource === 'volumes') name = String(mapped.object.name);
      else {
        const view = k2.resolve(refOf(mapped.object.snapshot))!.object;
        name = String(k2.resolve(refOf(view.source))!.object.short_name);
      }
      const isNew = mapped.resource === 'volumes' && attached.length > 0;
      const path = options.brokenTarget && isNew ? join(workDir, 'no-such-dir', name) : join(workDir, name);
      if (!(options.brokenTarget && isNew) && !existsSync(path)) sparseFile(path, volume.size * GIB);
      const record: Attached = { volume, path, detached: false };
      attached.push(record);
      return {
        path,
        detach: async () => {
          await exports.terminateConnection(volume, COPY_CONNECTOR, false);
          await exports.removeExport(volume);
          record.detached = true;
        },
      };
    },
  });
}

/** Known bytes at the start and past the first 256 MiB chunk of a 1 GiB volume. */
const PATTERN_OFFSETS = [0, 700 * MIB];

function writePattern(path: string): Buffer[] {
  return PATTERN_OFFSETS.map((offset) => {
    const data = randomBytes(MIB);
    writeAt(path, offset, data);
    return data;
  });
}

/** Nothing a copy made is left: no new volume or group, no view, no mapping, no host of this server. */
function expectNoLeftovers(target: { id: string }): void {
  expect(k2.named('volumes', `cv-${target.id}`)).toBeUndefined();
  expect(k2.named('volume_groups', `cvg-${target.id}`)).toBeUndefined();
  expect(table('snapshots').filter((snapshot) => String(snapshot.short_name).startsWith('cview-'))).toEqual([]);
  expect(k2.named('hosts', 'copy-host')).toBeUndefined();
  expect(table('mappings')).toEqual([]);
}

describe('Kaminario K2 copies through the host', () => {
  it('offers clones that refuse a connected source, as Cinder cannot clone an attached K2 volume', async () => {
    const driver = await makeDriver();
    expect(driver.clones?.refusesConnectedSource).toBe(true);
  });

  it('answers UNSUPPORTED, saying why and what to do, before touching the array when this host cannot attach', async () => {
    const driver = await makeDriver({}, () => refusingHost('no iSCSI initiator on this test host'));
    const volume = newVolume();
    await driver.createVolume(volume);
    const snapshot = { id: uuid(), volume_id: volume.id, volume_size: volume.size };
    await driver.snapshots!.createSnapshot(snapshot, volume);
    const requestsBefore = k2.requests.length;

    const target = newVolume();
    const fromSnapshot = await driver.snapshots!.createVolumeFromSnapshot(target, snapshot, () => {}).catch((error: unknown) => error);
    expect(fromSnapshot).toMatchObject({ code: 'UNSUPPORTED' });
    expect((fromSnapshot as Error).message).toMatch(/^backend "k2": cannot create volume .* copies the data through this host, as Cinder's Kaminario driver does/);
    expect((fromSnapshot as Error).message).toMatch(/no iSCSI initiator on this test host/);
    expect((fromSnapshot as Error).message).toMatch(/restore point/);

    const clone = await driver.clones!.createClonedVolume(newVolume(), volume, () => {}).catch((error: unknown) => error);
    expect(clone).toMatchObject({ code: 'UNSUPPORTED', message: expect.stringMatching(/no iSCSI initiator on this test host.*take a snapshot/) });

    expect(k2.requests.slice(requestsBefore)).toEqual([]); // not even a look-up
    expect(k2.named('volumes', `cv-${target.id}`)).toBeUndefined();
    await driver.snapshots!.deleteSnapshot(snapshot, volume);
    await driver.deleteVolume(volume);
  });

  it('creates a volume from a snapshot through a view: the snapshot data lands in the new volume, everything is detached, the view is gone', async () => {
    const attached: Attached[] = [];
    const driver = await makeDriver({}, fileHost(attached));
    const volume = newVolume();
    await driver.createVolume(volume);
    const snapshot = { id: uuid(), volume_id: volume.id, volume_size: volume.size };
    await driver.snapshots!.createSnapshot(snapshot, volume);
    const snapshotFile = join(workDir, `cs-${snapshot.id}`);
    sparseFile(snapshotFile, GIB);
    const pattern = writePattern(snapshotFile);
    const progress: Array<[number, number]> = [];

    const target = newVolume();
    const created = await driver.snapshots!.createVolumeFromSnapshot(target, snapshot, (done, total) => progress.push([done, total]));

    expect(created).toBeUndefined(); // Cinder's K2 driver sets no provider_location
    const targetFile = join(workDir, `cv-${target.id}`);
    PATTERN_OFFSETS.forEach((offset, index) => expect(readAt(targetFile, offset, MIB).equals(pattern[index])).toBe(true));
    expect(attached.map((entry) => [entry.volume.provider_location ?? entry.volume.id, entry.detached])).toEqual([
      [`cview-${target.id}`, true],
      [target.id, true],
    ]);
    expect(progress[0]).toEqual([0, GIB]);
    expect(progress.at(-1)).toEqual([GIB, GIB]);
    // The view as Cinder makes it: an exposable snapshot of the snapshot, mapped while copying.
    const viewPost = k2.requests.filter((line) => line === 'POST /api/v2/snapshots');
    expect(viewPost.length).toBeGreaterThanOrEqual(2);
    expect(k2.requests).toContain(`GET /api/v2/snapshots?short_name=cview-${target.id}`);
    expect(k2.named('volumes', `cv-${target.id}`)).toBeDefined();
    expect(table('snapshots').filter((s) => String(s.short_name).startsWith('cview-'))).toEqual([]);
    expect(k2.named('hosts', 'copy-host')).toBeUndefined();

    await driver.deleteVolume(target);
    await driver.snapshots!.deleteSnapshot(snapshot, volume);
    await driver.deleteVolume(volume);
  });

  it('clones a volume: the source data lands in the clone and both are detached', async () => {
    const attached: Attached[] = [];
    const driver = await makeDriver({}, fileHost(attached));
    const source = newVolume();
    await driver.createVolume(source);
    const sourceFile = join(workDir, `cv-${source.id}`);
    sparseFile(sourceFile, GIB);
    const pattern = writePattern(sourceFile);
    const progress: Array<[number, number]> = [];

    const clone = newVolume();
    await driver.clones!.createClonedVolume(clone, source, (done, total) => progress.push([done, total]));

    const cloneFile = join(workDir, `cv-${clone.id}`);
    PATTERN_OFFSETS.forEach((offset, index) => expect(readAt(cloneFile, offset, MIB).equals(pattern[index])).toBe(true));
    expect(attached.map((entry) => [entry.path, entry.detached])).toEqual([
      [sourceFile, true],
      [cloneFile, true],
    ]);
    expect(progress[0]).toEqual([0, GIB]);
    expect(progress.at(-1)).toEqual([GIB, GIB]);
    expect(table('mappings')).toEqual([]);
    expect(k2.named('hosts', 'copy-host')).toBeUndefined();
    for (const volume of [clone, source]) await driver.deleteVolume(volume);
  });

  it("copies as Cinder's copy_volume: dd bs=1M with iflag=direct oflag=direct where the files take O_DIRECT (checked with a count=0 dd), buffered and flushed where not", async () => {
    const recorded: string[][] = [];
    const runnerRefusing = (refused: string[]): CommandRunner => ({
      target: 'this host',
      isRoot: async () => true,
      close: async () => {},
      run: async (argv) => {
        recorded.push([...argv]);
        const probe = argv.includes('count=0');
        return probe && refused.some((flag) => argv.includes(flag))
          ? { exitCode: 1, stdout: '', stderr: 'dd: failed to open: Invalid argument' }
          : { exitCode: 0, stdout: '', stderr: '' };
      },
    });
    const progress: number[] = [];
    const copy = { source: '/dev/sdb', target: '/dev/sdc', sizeMib: 600, rootHelper: ['sudo'], progress: (done: number) => progress.push(done), operation: 'test copy' };

    await copyDevice(runnerRefusing([]), copy);
    expect(recorded.slice(0, 2)).toEqual([
      ['sudo', 'dd', 'count=0', 'if=/dev/sdb', 'of=/dev/sdc', 'iflag=direct', 'conv=notrunc'],
      ['sudo', 'dd', 'count=0', 'if=/dev/sdb', 'of=/dev/sdc', 'oflag=direct', 'conv=notrunc'],
    ]);
    expect(recorded.slice(2)).toEqual([
      ['sudo', 'dd', 'if=/dev/sdb', 'of=/dev/sdc', 'bs=1M', 'count=256', 'iflag=direct', 'oflag=direct', 'conv=notrunc,sparse'],
      ['sudo', 'dd', 'if=/dev/sdb', 'of=/dev/sdc', 'bs=1M', 'count=256', 'skip=256', 'seek=256', 'iflag=direct', 'oflag=direct', 'conv=notrunc,sparse'],
      ['sudo', 'dd', 'if=/dev/sdb', 'of=/dev/sdc', 'bs=1M', 'count=88', 'skip=512', 'seek=512', 'iflag=direct', 'oflag=direct', 'conv=notrunc,sparse'],
    ]);
    expect(progress).toEqual([0, 256 * MIB, 512 * MIB, 600 * MIB]);

    recorded.length = 0;
    await copyDevice(runnerRefusing(['iflag=direct', 'oflag=direct']), { ...copy, sizeMib: 100 });
    expect(recorded.at(-1)).toEqual(['sudo', 'dd', 'if=/dev/sdb', 'of=/dev/sdc', 'bs=1M', 'count=100', 'conv=notrunc,sparse,fdatasync']);
  });

  it('refuses to clone a volume that is connected somewhere (IN_USE), creating nothing', async () => {
    const attached: Attached[] = [];
    const driver = await makeDriver({}, fileHost(attached));
    const source = newVolume();
    await driver.createVolume(source);
    const elsewhere = connectorFor('compute-user');
    await driver.exports!.initializeConnection(source, elsewhere);

    const clone = newVolume();
    const refusal = await driver.clones!.createClonedVolume(clone, source, () => {}).catch((error: unknown) => error);
    expect(refusal).toMatchObject({ code: 'IN_USE', message: expect.stringMatching(/does not support clone of an attached volume.*create a snapshot/) });
    expect(attached).toEqual([]);
    expect(k2.named('volumes', `cv-${clone.id}`)).toBeUndefined();

    await driver.exports!.terminateConnection(source, elsewhere, false);
    await driver.deleteVolume(source);
  });

  it('when the copy fails, detaches everything, deletes the new volume and the view, and says why', async () => {
    const attached: Attached[] = [];
    const driver = await makeDriver({}, fileHost(attached, { brokenTarget: true }));
    const volume = newVolume();
    await driver.createVolume(volume);
    const snapshot = { id: uuid(), volume_id: volume.id, volume_size: volume.size };
    await driver.snapshots!.createSnapshot(snapshot, volume);
    sparseFile(join(workDir, `cs-${snapshot.id}`), GIB);

    const target = newVolume();
    const failure = await driver.snapshots!.createVolumeFromSnapshot(target, snapshot, () => {}).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringMatching(/dd failed .*new volume was deleted/) });
    expect(attached).toHaveLength(2);
    expect(attached.every((entry) => entry.detached)).toBe(true);
    expectNoLeftovers(target);

    const cloneAttached: Attached[] = [];
    const cloner = await makeDriver({}, fileHost(cloneAttached, { brokenTarget: true }));
    const clone = newVolume();
    await expect(cloner.clones!.createClonedVolume(clone, volume, () => {})).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    expect(cloneAttached).toHaveLength(2);
    expect(cloneAttached.every((entry) => entry.detached)).toBe(true);
    expectNoLeftovers(clone);

    await driver.snapshots!.deleteSnapshot(snapshot, volume);
    await driver.deleteVolume(volume);
  });

  it('when the new volume cannot be created, detaches the source and deletes the view', async () => {
    const attached: Attached[] = [];
    const driver = await makeDriver({}, fileHost(attached));
    const volume = newVolume();
    await driver.createVolume(volume);
    const snapshot = { id: uuid(), volume_id: volume.id, volume_size: volume.size };
    await driver.snapshots!.createSnapshot(snapshot, volume);
    sparseFile(join(workDir, `cs-${snapshot.id}`), GIB);

    k2.inject({ status: 400, method: 'POST', resource: 'volume_groups', count: 1, message: 'no room for a group' });
    const target = newVolume();
    await expect(driver.snapshots!.createVolumeFromSnapshot(target, snapshot, () => {})).rejects.toMatchObject({ message: expect.stringMatching(/no room for a group/) });
    expect(attached.map((entry) => [entry.volume.provider_location, entry.detached])).toEqual([[`cview-${target.id}`, true]]);
    expectNoLeftovers(target);

    await driver.snapshots!.deleteSnapshot(snapshot, volume);
    await driver.deleteVolume(volume);
  });
});
