import { refusingHost } from '../helpers/refusing-host.js';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import lvmDriver from '../../drivers/lvm/index.js';
import type { CreateVolumeRequest, VolumeDriver } from '../../drivers/kit/types.js';
import { validateDriverOptions } from '../../src/config/driver-options.js';
import { StorageError } from '../../src/base/errors.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { SshRunner } from '../../drivers/kit/exec/ssh.js';
import { iscsiPrerequisites, useTgtd } from '../iscsi/fixtures.js';
import { ISCSI_ATTACH_HERE, defineBackendScenarios, settledBackends } from '../helpers/scenarios.js';
import { BIN, startMcpServer } from '../helpers/server.js';
import {
  lvmPrerequisites,
  makeSshd,
  makeSudoUser,
  makeVolumeGroup,
  removeStaleLogins,
  testLoginName,
  writeThickSnapshot,
  writeThinPool,
  type SshdFixture,
  type SudoUserFixture,
  type VolumeGroupFixture,
} from './fixtures.js';

const missing = lvmPrerequisites();
const iscsiMissing = iscsiPrerequisites();
const inCi = process.env.CI === 'true';

/** cinderlib's LVM example, verbatim; the tests add only what this machine needs. */
const SEED_BACKEND = {
  volume_backend_name: 'lvm',
  volume_driver: 'cinder.volume.drivers.lvm.LVMVolumeDriver',
  volume_group: 'cinder-volumes',
  target_protocol: 'iscsi',
  target_helper: 'lioadm',
};

if (missing && !inCi) {
  describe.skip(`LVM driver against real LVM and sshd (${missing})`, () => {
    it('runs where its prerequisites are', () => undefined);
  });
} else if (missing) {
  describe('LVM driver against real LVM and sshd', () => {
    it('has its prerequisites under CI', () => {
      throw new Error(`the LVM suite ${missing}; .ci/run must install them`);
    });
  });
} else {
  let vg: VolumeGroupFixture;
  let sshd: SshdFixture;
  let knownHosts: string;
  // The one login sshd lets in with a password (from 127.0.0.1); it exists only during its test.
  const passwordLogin = testLoginName();

  beforeAll(async () => {
    removeStaleLogins(); // an interrupted earlier run may have left its sudo login behind
    vg = makeVolumeGroup('cinder-volumes');
    vg.lvm('lvcreate', '-n', 'foreign-lv', '-L', '1g', 'cinder-volumes'); // somebody else's LV
    sshd = await makeSshd({ passwordUser: passwordLogin });
    knownHosts = join(vg.dir, 'ssh_known_hosts');
  });
  afterAll(async () => {
    await sshd?.cleanup();
    vg?.cleanup();
  });

  const local = () => ({ backends: [{ ...SEED_BACKEND, lvm_conf_file: vg.lvmConfFile }] });
  const remote = (extra: Record<string, unknown> = {}) => ({
    backends: [
      {
        ...SEED_BACKEND,
        lvm_conf_file: vg.lvmConfFile,
        san_ip: '127.0.0.1',
        san_ssh_port: sshd.port,
        san_login: 'root',
        san_private_key: sshd.clientKey,
        ssh_hosts_key_file: knownHosts,
        ...extra,
      },
    ],
  });

  // Snapshots and copies need device-mapper (lvcreate -s, active LVs for dd): where the kernel has
  // none, the driver says so at set-up, and they are UNSUPPORTED with capabilities saying false.
  const here = /device-mapper/.test(readFileSync('/proc/devices', 'utf8')) ? 'works' : 'unsupported';
  const lifecycle = { snapshots: here, fromSnapshot: here, clones: here } as const;
  // cinderlib's example exports with lioadm, which needs the kernel's LIO (configfs): refused, saying so.
  const connections = { connect: 'unsupported', attach: ISCSI_ATTACH_HERE } as const;
  // What the group holds: every LV with its size and attributes, read with lvs.
  const arrayState = () => vg.lvm('lvs', '--noheadings', '--units', 'b', '-o', 'lv_name,lv_size,lv_attr,origin', vg.vg);
  const foreign = { make: (name: string, sizeGb: number) => void vg.lvm('lvcreate', '-n', name, '-L', `${sizeGb}g`, vg.vg) };
  defineBackendScenarios({ label: 'LVM on this host', backend: 'lvm', makeConfig: local, lifecycle, connections, arrayState, foreign });
  defineBackendScenarios({ label: 'LVM over SSH', backend: 'lvm', makeConfig: () => remote(), lifecycle, connections, arrayState, foreign });

  describe('LVM on this host, specifics', () => {
    it("reports stats in the shape of Cinder's LVM driver, counting LVs that are not ours", async () => {
      const server = await startMcpServer(local());
      try {
        const { stats } = (await server.call('get_stats', { backend: 'lvm' })).data;
        expect(stats).toMatchObject({ vendor_name: 'Open Source', driver_version: '3.0.0', storage_protocol: 'iSCSI', volume_backend_name: 'lvm' });
        const [pool] = stats.pools;
        expect(pool).toMatchObject({
          pool_name: 'lvm',
          thin_provisioning_support: false,
          thick_provisioning_support: true,
          QoS_support: false,
          reserved_percentage: 0,
          max_over_subscription_ratio: 20,
        });
        expect(pool.location_info).toMatch(/^LVMVolumeDriver:[^:]+:cinder-volumes:default:0$/);
        expect(pool.total_capacity_gb).toBeGreaterThan(39);
        expect(pool.provisioned_capacity_gb).toBeCloseTo(pool.total_capacity_gb - pool.free_capacity_gb, 2);
        expect(pool.total_volumes).toBe(vg.lvNames().length);
        // lvm_type defaults to auto: thick here, and the stats say why.
        expect(pool.provisioning).toMatch(/^thick \(lvm_type: auto, because /);
      } finally {
        await server.close();
      }
    });

    it('leaves the foreign LV alone and never lists it', async () => {
      const server = await startMcpServer(local());
      try {
        const created = await server.call('create_volume', { backend: 'lvm', size: 1 });
        expect(vg.lvNames()).toEqual(expect.arrayContaining(['foreign-lv', `volume-${created.data.id}`]));
        const listed = await server.call('list_volumes', { backend: 'lvm' });
        expect(JSON.stringify(listed.data)).not.toContain('foreign-lv');
        await server.call('delete_volume', { volume_id: created.data.id });
        expect(vg.lvNames()).toContain('foreign-lv');
        expect(vg.lvNames()).not.toContain(`volume-${created.data.id}`);
      } finally {
        await server.close();
      }
    });

    it('runs nothing from names and descriptions full of shell metacharacters', async () => {
      const flag = join(vg.dir, 'pwned');
      const server = await startMcpServer(remote());
      try {
        const created = await server.call('create_volume', {
          backend: 'lvm',
          size: 1,
          name: `$(touch ${flag}); \`touch ${flag}\` | touch ${flag} && touch ${flag}`,
          description: `'; touch ${flag}; echo '\n$(touch ${flag})`,
        });
        expect(created.isError, created.text).toBe(false);
        expect(existsSync(flag)).toBe(false);
        expect(vg.lvNames()).toContain(`volume-${created.data.id}`);
        await server.call('delete_volume', { volume_id: created.data.id });
      } finally {
        await server.close();
      }
    });

    it('refuses an oversize create before lvcreate runs, leaving no LV', async () => {
      const server = await startMcpServer(local());
      try {
        const before = vg.lvNames();
        const refused = await server.call('create_volume', { backend: 'lvm', size: 500 });
        expect(refused.text).toMatch(/^OUT_OF_CAPACITY: a 500 GiB volume does not fit in backend "lvm" pool "lvm": [\d.]+ GiB of room left \(thick pool/);
        expect(vg.lvNames()).toEqual(before);
        const listed = await server.call('list_volumes', { backend: 'lvm', status: 'error' });
        expect(listed.data.volumes).toEqual([]);
      } finally {
        await server.close();
      }
    });

    it('names the missing volume group, and thin mode says what this host cannot do', async () => {
      const thinPossible = (() => {
        try {
          return /^thin-pool\s/m.test(execFileSync('dmsetup', ['targets'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
        } catch {
          return false;
        }
      })();
      const server = await startMcpServer({
        backends: [
          { ...SEED_BACKEND, volume_backend_name: 'nogroup', volume_group: 'no-such-vg', lvm_conf_file: vg.lvmConfFile },
          { ...SEED_BACKEND, volume_backend_name: 'thin', lvm_type: 'thin', lvm_conf_file: vg.lvmConfFile },
        ],
      });
      try {
        const { backends } = (await settledBackends(server)).data;
        const nogroup = backends.find((b: { id: string }) => b.id === 'nogroup');
        expect(nogroup.initialized).toBe(false);
        expect(nogroup.error).toMatch(/volume group "no-such-vg" does not exist on this host/);
        const thin = backends.find((b: { id: string }) => b.id === 'thin');
        if (thinPossible) {
          expect(thin.initialized).toBe(true);
        } else {
          expect(thin.initialized).toBe(false);
          expect(thin.error).toMatch(/lvm_type is thin but the thin pool cinder-volumes\/cinder-volumes-pool cannot be created on this host: .+; use lvm_type: default or auto/);
        }
        const refused = await server.call('create_volume', { backend: 'nogroup', size: 1 });
        expect(refused.text).toMatch(/^BACKEND_UNAVAILABLE: backend "nogroup" is not initialized: /);
      } finally {
        await server.close();
      }
    });
  });

  describe('LVM thick capacity, exact to the byte', () => {
    let exact: VolumeGroupFixture;
    beforeAll(() => {
      // LVM keeps the first MiB of the 8 GiB loop device for itself: the group holds 2047 of 2048 extents.
      exact = makeVolumeGroup('cinder-exact', 8);
    });
    afterAll(() => exact?.cleanup());

    it('refuses, before lvcreate runs, a volume that fits only in the rounded free space, and creates one a GiB smaller', async () => {
      const free = (units: string) => exact.lvm('vgs', '--noheadings', '--nosuffix', '--units', units, '-o', 'vg_free', 'cinder-exact').trim();
      expect(free('g')).toBe('8.00'); // what os-brick's --unit=g shows
      expect(Number(free('b'))).toBeLessThan(8 * 1024 ** 3); // what lvcreate goes by
      const server = await startMcpServer({
        backends: [{ ...SEED_BACKEND, volume_backend_name: 'exact', volume_group: 'cinder-exact', lvm_type: 'default', lvm_conf_file: exact.lvmConfFile }],
      });
      try {
        const [pool] = (await server.call('get_stats', { backend: 'exact' })).data.stats.pools;
        expect(pool.free_capacity_gb).toBe(7.99);
        const refused = await server.call('create_volume', { backend: 'exact', size: 8 });
        expect(refused.text).toMatch(/^OUT_OF_CAPACITY: a 8 GiB volume does not fit in backend "exact" pool "exact": 7\.99 GiB of room left/);
        // Refused by the check, not by lvcreate: no LV, and no record left in status error.
        expect(exact.lvNames()).toEqual([]);
        expect((await server.call('list_volumes', { backend: 'exact' })).data.volumes).toEqual([]);
        const created = await server.call('create_volume', { backend: 'exact', size: 7 });
        expect(created.isError, created.text).toBe(false);
        expect(exact.lvNames()).toEqual([`volume-${created.data.id}`]);
        expect((await server.call('delete_volume', { volume_id: created.data.id })).isError).toBe(false);
      } finally {
        await server.close();
      }
    });
  });

  /**
   * Cinder's volume_clear: a deleted thick volume's blocks are zeroed before lvremove hands its
   * extents to the next volume. Written on the physical volume (no device-mapper needed), so the
   * test reads the loop device itself: where the LV lay, what the next volume is given.
   */
  describe('LVM volume_clear', () => {
    let group: VolumeGroupFixture;
    const MIB = 1024 * 1024;
    beforeAll(() => {
      group = makeVolumeGroup('cinder-clear', 4);
    });
    afterAll(() => group?.cleanup());

    /** Byte ranges of the loop device that hold LV `name`, from LVM's own answer. */
    function extentsOf(name: string): { offset: number; length: number }[] {
      const peStart = Number(group.lvm('pvs', '--noheadings', '--units', 'b', '--nosuffix', '-o', 'pe_start', group.loop).trim());
      const extent = Number(group.lvm('vgs', '--noheadings', '--units', 'b', '--nosuffix', '-o', 'vg_extent_size', group.vg).trim());
      const ranges = group.lvm('lvs', '--noheadings', '--segments', '-o', 'seg_pe_ranges', `${group.vg}/${name}`).trim().split(/\s+/);
      return ranges.map((range) => {
        const [first, last] = range.split(':')[1].split('-').map(Number);
        return { offset: peStart + first * extent, length: (last - first + 1) * extent };
      });
    }
    const fill = (offset: number, length: number) => {
      const fd = openSync(group.loop, 'r+');
      try {
        writeSync(fd, Buffer.alloc(length, 0xa5), 0, length, offset);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    };
    const nonZeroBytes = (offset: number, length: number) => {
      const fd = openSync(group.loop, 'r');
      try {
        const buffer = Buffer.alloc(length);
        readSync(fd, buffer, 0, length, offset);
        return buffer.filter((byte) => byte !== 0).length;
      } finally {
        closeSync(fd);
      }
    };

    async function deleteWith(extra: Record<string, unknown>): Promise<{ offset: number; length: number }> {
      const server = await startMcpServer({
        backends: [{ ...SEED_BACKEND, volume_backend_name: 'clear', volume_group: group.vg, lvm_type: 'default', lvm_conf_file: group.lvmConfFile, ...extra }],
      });
      try {
        const volume = (await server.call('create_volume', { backend: 'clear', size: 1 })).data;
        const [extents] = extentsOf(`volume-${volume.id}`);
        // What the volume's user wrote: its first and last MiB.
        fill(extents.offset, 4 * MIB);
        fill(extents.offset + extents.length - 4 * MIB, 4 * MIB);
        const deleted = await server.call('delete_volume', { volume_id: volume.id });
        expect(deleted.isError, deleted.text).toBe(false);
        expect(group.lvNames()).toEqual([]);
        return extents;
      } finally {
        await server.close();
      }
    }

    it('zeroes a deleted volume by default, so the next volume given its extents reads none of its data', async () => {
      const extents = await deleteWith({});
      expect(nonZeroBytes(extents.offset, 4 * MIB)).toBe(0);
      expect(nonZeroBytes(extents.offset + extents.length - 4 * MIB, 4 * MIB)).toBe(0);
      const server = await startMcpServer({
        backends: [{ ...SEED_BACKEND, volume_backend_name: 'clear', volume_group: group.vg, lvm_type: 'default', lvm_conf_file: group.lvmConfFile }],
      });
      try {
        const next = (await server.call('create_volume', { backend: 'clear', size: 1 })).data;
        expect(extentsOf(`volume-${next.id}`)[0].offset).toBe(extents.offset);
        await server.call('delete_volume', { volume_id: next.id });
      } finally {
        await server.close();
      }
    });

    it('zeroes only the first volume_clear_size MiB when set, and nothing with volume_clear none', async () => {
      const partly = await deleteWith({ volume_clear_size: 2 });
      expect(nonZeroBytes(partly.offset, 2 * MIB)).toBe(0);
      expect(nonZeroBytes(partly.offset + 2 * MIB, 2 * MIB)).toBe(2 * MIB);
      expect(nonZeroBytes(partly.offset + partly.length - 4 * MIB, 4 * MIB)).toBe(4 * MIB);
      const kept = await deleteWith({ volume_clear: 'none' });
      expect(nonZeroBytes(kept.offset, 4 * MIB)).toBe(4 * MIB);
    });
  });

  /**
   * Cinder's LVM snapshot and clone methods, called on the driver directly. This host has no
   * device-mapper: lvcreate --snapshot and thin pools fail, so snapshot and thin LVs are written
   * into the group's metadata (vgcfgbackup, edit, vgcfgrestore) and LVM lists and removes them as
   * real ones. Where LVM can make them, the same tests see them made instead of refused.
   */
  describe("LVM snapshots and clones (Cinder's LVM driver)", () => {
    const newVolume = (size = 1): CreateVolumeRequest => ({ id: randomUUID(), size, pool_name: 'snaps', name: 'n', description: '', bootable: false });
    const snapshotOf = (volume: CreateVolumeRequest) => ({ id: randomUUID(), volume_id: volume.id, volume_size: volume.size });
    const originOf = (fixture: VolumeGroupFixture, lv: string) => fixture.lvm('lvs', '--noheadings', '-o', 'origin', `${fixture.vg}/${lv}`).trim();

    async function makeDriver(fixture: VolumeGroupFixture, lvmType: 'default' | 'auto'): Promise<VolumeDriver> {
      const secrets = new SecretRegistry();
      const raw = { ...SEED_BACKEND, volume_backend_name: 'snaps', volume_group: fixture.vg, lvm_type: lvmType, lvm_conf_file: fixture.lvmConfFile };
      const { options } = validateDriverOptions('snaps', lvmDriver, raw, secrets);
      const driver = lvmDriver.create(
        options,
        { backendName: 'snaps', log: createLogger('test'), secrets, dataDir: fixture.dir, rootHelper: '', serving: true, host: refusingHost('this test attaches nothing') },
        SEED_BACKEND.volume_driver,
      );
      await driver.setup();
      return driver;
    }

    async function refusal(promise: Promise<unknown>): Promise<StorageError> {
      const outcome = await promise.then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(outcome).toBeInstanceOf(StorageError);
      return outcome as StorageError;
    }

    /** Records every progress report. */
    function progressLog() {
      const reports: Array<[number, number]> = [];
      return { reports, report: (done: number, total: number) => void reports.push([done, total]) };
    }

    describe('thick', () => {
      let thick: VolumeGroupFixture;
      let driver: VolumeDriver;
      beforeAll(async () => {
        thick = makeVolumeGroup('cinder-snaps', 16);
        driver = await makeDriver(thick, 'default');
      });
      afterAll(async () => {
        await driver?.close();
        thick?.cleanup();
      });

      it('refuses to delete a volume while it has a snapshot (IN_USE naming it), deletes the snapshot, then the volume', async () => {
        const volume = newVolume();
        await driver.createVolume(volume);
        const snapshot = snapshotOf(volume);
        const freeBefore = (await driver.getStats()).pools[0].free_capacity_gb as number;
        writeThickSnapshot(thick, `volume-${volume.id}`, `_snapshot-${snapshot.id}`);
        expect(originOf(thick, `_snapshot-${snapshot.id}`)).toBe(`volume-${volume.id}`);

        const [pool] = (await driver.getStats()).pools;
        expect(pool.free_capacity_gb).toBe(freeBefore - 1); // the copy-on-write space is the volume's size
        expect(pool.provisioned_capacity_gb).toBeCloseTo((pool.total_capacity_gb as number) - (pool.free_capacity_gb as number), 2);
        expect(pool.total_volumes).toBe(thick.lvNames().length);
        expect(driver.snapshotSizeGb!(volume)).toBe(1);

        const refused = await refusal(driver.deleteVolume(volume));
        expect(refused.code).toBe('IN_USE');
        expect(refused.message).toContain(`_snapshot-${snapshot.id}`);
        expect(thick.lvNames()).toEqual(expect.arrayContaining([`volume-${volume.id}`, `_snapshot-${snapshot.id}`]));

        await driver.snapshots!.deleteSnapshot(snapshot, volume);
        expect(thick.lvNames()).not.toContain(`_snapshot-${snapshot.id}`);
        await driver.snapshots!.deleteSnapshot(snapshot, volume); // already gone counts as deleted
        await driver.deleteVolume(volume);
        expect(thick.lvNames()).toEqual([]);
        expect((await driver.getStats()).pools[0].free_capacity_gb).toBe(freeBefore + 1);
      });

      it('snapshots with lvcreate --snapshot -L, or says why LVM refused and leaves no LV', async () => {
        const volume = newVolume(2);
        await driver.createVolume(volume);
        const snapshot = snapshotOf(volume);
        const name = `_snapshot-${snapshot.id}`;
        try {
          const outcome = await driver.snapshots!.createSnapshot(snapshot, volume).then(
            (created) => ({ created }),
            (error: unknown) => ({ error }),
          );
          if ('error' in outcome) {
            // This host: no device-mapper, so LVM refuses, and the message carries its reason.
            expect(outcome.error).toBeInstanceOf(StorageError);
            expect((outcome.error as StorageError).message).toMatch(new RegExp(`^backend "snaps": lvcreate cinder-snaps/${name} failed on this host: \\S`));
            expect(thick.lvNames()).toEqual([`volume-${volume.id}`]);
          } else {
            expect(outcome.created).toEqual({ provider_location: `cinder-snaps/${name}` });
            expect(originOf(thick, name)).toBe(`volume-${volume.id}`);
            expect(thick.lvm('lvs', '--noheadings', '--units', 'g', '-o', 'lv_size', `cinder-snaps/${name}`).trim()).toBe('2.00g');
            await driver.snapshots!.deleteSnapshot(snapshot, volume);
          }
          const missing = await refusal(driver.snapshots!.createSnapshot(snapshotOf(newVolume()), newVolume()));
          expect(missing.code).toBe('NOT_FOUND');
        } finally {
          await driver.deleteVolume(volume);
        }
        expect(thick.lvNames()).toEqual([]);
      });

      it('clones through a temporary clone-snap-<id> snapshot that never outlives the call', async () => {
        const source = newVolume();
        await driver.createVolume(source);
        const clone = newVolume();
        const progress = progressLog();
        try {
          const outcome = await driver.clones!.createClonedVolume(clone, source, progress.report).then(
            () => undefined,
            (error: unknown) => error,
          );
          if (outcome) {
            expect(outcome).toBeInstanceOf(StorageError);
            expect((outcome as StorageError).message).toMatch(new RegExp(`lvcreate cinder-snaps/clone-snap-${clone.id} failed on this host: \\S`));
            expect(thick.lvNames()).toEqual([`volume-${source.id}`]);
          } else {
            expect(thick.lvNames().sort()).toEqual([`volume-${clone.id}`, `volume-${source.id}`].sort());
            expect(progress.reports.at(-1)).toEqual([1024 ** 3, 1024 ** 3]);
            await driver.deleteVolume(clone);
          }
        } finally {
          await driver.deleteVolume(source);
        }
        expect(thick.lvNames()).toEqual([]);
      });

      it('makes a volume from a snapshot by copying it with dd in chunks, telling progress', async () => {
        const source = newVolume();
        await driver.createVolume(source);
        const snapshot = snapshotOf(source);
        writeThickSnapshot(thick, `volume-${source.id}`, `_snapshot-${snapshot.id}`);
        // The copy needs device nodes, which this host cannot have: a stand-in dd records what it is asked.
        const bin = join(thick.dir, 'fake-bin');
        const ddLog = join(thick.dir, 'dd.log');
        mkdirSync(bin, { recursive: true });
        writeFileSync(join(bin, 'dd'), `#!/bin/sh\nprintf '%s\\n' "$*" >> ${ddLog}\n`);
        chmodSync(join(bin, 'dd'), 0o755);
        const path = process.env.PATH;
        const volume = newVolume();
        const progress = progressLog();
        process.env.PATH = `${bin}:${path}`;
        try {
          expect(await driver.snapshots!.createVolumeFromSnapshot(volume, snapshot, progress.report)).toEqual({ provider_location: `cinder-snaps/volume-${volume.id}` });
        } finally {
          process.env.PATH = path;
        }
        const quarter = 256 * 1024 ** 2;
        expect(progress.reports).toEqual([0, 1, 2, 3, 4].map((chunks) => [chunks * quarter, 4 * quarter]));
        const escapedSnapshot = `_snapshot--${snapshot.id.replace(/-/g, '--')}`;
        expect(readFileSync(ddLog, 'utf8').trim().split('\n')).toEqual(
          [0, 256, 512, 768].map(
            (block) =>
              `if=/dev/mapper/cinder--snaps-${escapedSnapshot} of=/dev/mapper/cinder--snaps-volume--${volume.id.replace(/-/g, '--')} ` +
              `bs=1M count=256 skip=${block} seek=${block} iflag=direct oflag=direct conv=notrunc`,
          ),
        );
        expect(thick.lvNames()).toContain(`volume-${volume.id}`);
        expect(originOf(thick, `volume-${volume.id}`)).toBe(''); // a copy, independent of the snapshot
        await driver.deleteVolume(volume);

        // With the real dd: the copy fails here (no device nodes) with dd's reason, and the new volume is removed.
        const another = newVolume();
        const outcome = await driver
          .snapshots!.createVolumeFromSnapshot(another, snapshot, () => undefined)
          .then(
            () => undefined,
            (error: unknown) => error,
          );
        if (outcome) {
          expect(outcome).toBeInstanceOf(StorageError);
          expect((outcome as StorageError).message).toMatch(
            new RegExp(`^backend "snaps": copy cinder-snaps/_snapshot-${snapshot.id} to volume-${another.id} failed on this host after 0 of 1073741824 bytes: dd: \\S`),
          );
          expect(thick.lvNames()).not.toContain(`volume-${another.id}`);
        } else {
          expect(thick.lvNames()).toContain(`volume-${another.id}`);
          await driver.deleteVolume(another);
        }
        await driver.snapshots!.deleteSnapshot(snapshot, source);
        await driver.deleteVolume(source);
        expect(thick.lvNames()).toEqual([]);
      });
    });

    describe('thin', () => {
      let thin: VolumeGroupFixture;
      let driver: VolumeDriver;
      const volume = newVolume();
      const snapshot = snapshotOf(volume);
      const thinClone = newVolume();
      beforeAll(async () => {
        thin = makeVolumeGroup('cinder-thin', 16);
        writeThinPool(thin, 'cinder-thin-pool', 4, [
          { name: `volume-${volume.id}`, sizeGb: 1 },
          { name: `_snapshot-${snapshot.id}`, sizeGb: 1, origin: `volume-${volume.id}` },
          { name: `volume-${thinClone.id}`, sizeGb: 1, origin: `volume-${volume.id}` },
        ]);
        driver = await makeDriver(thin, 'auto'); // thin, because the pool exists
      });
      afterAll(async () => {
        await driver?.close();
        thin?.cleanup();
      });

      it('counts thin snapshots as sharing the pool, refuses to delete their volume, and deletes them', async () => {
        const [pool] = (await driver.getStats()).pools;
        expect(pool).toMatchObject({ thin_provisioning_support: true, total_capacity_gb: 4, provisioned_capacity_gb: 3 });
        expect(driver.snapshotSizeGb!(volume)).toBe(0);

        const refused = await refusal(driver.deleteVolume(volume));
        expect(refused.code).toBe('IN_USE');
        expect(refused.message).toContain(`_snapshot-${snapshot.id}`);
        expect(refused.message).not.toContain(thinClone.id); // a thin clone is independent of its source

        await driver.snapshots!.deleteSnapshot(snapshot, volume);
        expect(thin.lvNames()).not.toContain(`_snapshot-${snapshot.id}`);
        expect((await driver.getStats()).pools[0].provisioned_capacity_gb).toBe(2);
        await driver.deleteVolume(volume);
        expect(thin.lvNames().sort()).toEqual(['cinder-thin-pool', `volume-${thinClone.id}`].sort());
      });

      it('snapshots thin volumes without a size, makes volumes from snapshots as snapshots, or says why LVM refused and leaves no LV', async () => {
        const before = thin.lvNames().sort();
        const source = { ...thinClone, name: 'n', description: '', bootable: false };
        const next = snapshotOf(source);
        const outcome = await driver.snapshots!.createSnapshot(next, source).then(
          () => undefined,
          (error: unknown) => error,
        );
        if (outcome) {
          expect(outcome).toBeInstanceOf(StorageError);
          expect((outcome as StorageError).message).toMatch(new RegExp(`^backend "snaps": lvcreate cinder-thin/_snapshot-${next.id} failed on this host: \\S`));
          expect(thin.lvNames().sort()).toEqual(before);
        } else {
          expect(originOf(thin, `_snapshot-${next.id}`)).toBe(`volume-${thinClone.id}`);
          const fromSnapshot = newVolume();
          const progress = progressLog();
          await driver.snapshots!.createVolumeFromSnapshot(fromSnapshot, next, progress.report);
          expect(originOf(thin, `volume-${fromSnapshot.id}`)).toBe(`_snapshot-${next.id}`);
          expect(progress.reports).toEqual([]); // nothing copied
          await driver.deleteVolume(fromSnapshot);
          await driver.snapshots!.deleteSnapshot(next, source);
          expect(thin.lvNames().sort()).toEqual(before);
        }
      });
    });
  });

  describe('LVM over SSH, specifics', () => {
    it('passes every argument to the remote shell literally', async () => {
      const flag = join(vg.dir, 'quoted-pwned');
      const runner = new SshRunner({
        host: '127.0.0.1',
        port: sshd.port,
        username: 'root',
        privateKeyPath: sshd.clientKey,
        connectTimeoutMs: 10_000,
        minConnections: 1,
        maxConnections: 1,
        knownHostsFile: join(vg.dir, 'runner_known_hosts'),
        strictHostKeyPolicy: false,
        log: createLogger('test'),
      });
      try {
        const nasty = `it's $(touch ${flag}) \`touch ${flag}\`; touch ${flag} | "x" \\ * ~ \n end`;
        const result = await runner.run(['printf', '%s', nasty], { operation: 'echo' });
        expect(result).toEqual({ exitCode: 0, stdout: nasty, stderr: '' });
        expect(existsSync(flag)).toBe(false);
      } finally {
        await runner.close();
      }
    });

    it('logs in with a password as a non-root user and runs lvm through root_helper (sudo)', async () => {
      let user: SudoUserFixture | undefined;
      try {
        user = makeSudoUser(passwordLogin, vg);
        const password = user.password;
        const asUser = (extra: Record<string, unknown>) => ({
          ...remote({ san_login: user!.name, san_private_key: undefined, san_password: '${env:LVM_SSH_PASSWORD}' }).backends[0],
          ...extra,
        });
        const server = await startMcpServer({ backends: [asUser({})] }, { env: { LVM_SSH_PASSWORD: password } });
        try {
          const created = await server.call('create_volume', { backend: 'lvm', size: 1 });
          expect(created.isError, created.text).toBe(false);
          expect(vg.lvNames()).toContain(`volume-${created.data.id}`);
          expect((await server.call('extend_volume', { volume_id: created.data.id, new_size: 2 })).isError).toBe(false);
          expect((await server.call('delete_volume', { volume_id: created.data.id })).isError).toBe(false);
          expect(vg.lvNames()).not.toContain(`volume-${created.data.id}`);
          expect(server.stderr() + JSON.stringify((await settledBackends(server)).data)).not.toContain(password);
        } finally {
          await server.close();
        }
        // disable_sudo (root_helper '') runs lvm directly, which a non-root login may not do.
        const direct = await startMcpServer({ global: { disable_sudo: true }, backends: [asUser({})] }, { env: { LVM_SSH_PASSWORD: password } });
        try {
          const { backends } = (await settledBackends(direct)).data;
          expect(backends[0].initialized).toBe(false);
          expect(backends[0].error).toMatch(/cannot read volume group "cinder-volumes" on 127\.0\.0\.1:\d+: .*lvm runs without a root helper; set the global root_helper/);
          expect(backends[0].error).not.toContain(password);
        } finally {
          await direct.close();
        }
        const wrong = await startMcpServer({ backends: [asUser({ san_password: 'not-the-password-1234' })] });
        try {
          const { backends } = (await settledBackends(wrong)).data;
          expect(backends[0].error).toMatch(new RegExp(`${user.name}@127\\.0\\.0\\.1:\\d+ refused the login; check san_login and san_password or san_private_key`));
        } finally {
          await wrong.close();
        }
      } finally {
        user?.cleanup();
      }
    });

    it.skipIf(iscsiMissing !== undefined && !inCi)(
      "exports through tgt on the volume group's host; without an active LV tgt has nothing to serve, and the failed connect leaves nothing",
      async () => {
        const tgtd = useTgtd();
        const targets = join(vg.dir, 'targets');
        const server = await startMcpServer(remote({ target_helper: 'tgtadm', target_ip_address: tgtd.address, target_port: tgtd.port, target_config_dir: targets }));
        try {
          const volume = (await server.call('create_volume', { backend: 'lvm', size: 1 })).data;
          expect((await server.call('validate_connector', { backend: 'lvm', connector: { host: 'h', initiator: 'iqn.1994-05.com.example:h' } })).data).toEqual({
            backend: 'lvm',
            valid: true,
          });
          const refused = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'h', initiator: 'iqn.1994-05.com.example:h' } });
          // Activation is off in this lvm.conf (no device-mapper here): /dev/cinder-volumes/volume-<id> never appears.
          expect(refused.text).toMatch(
            new RegExp(
              `^BACKEND_UNAVAILABLE: backend "lvm": (activate volume-${volume.id}|volume ${volume.id}'s backing store /dev/cinder-volumes/volume-${volume.id} does not exist on root@127\\.0\\.0\\.1)`,
            ),
          );
          expect((await server.call('list_connections', { volume_id: volume.id })).data.connections).toEqual([]);
          expect((await server.call('get_volume', { volume_id: volume.id })).data.status).toBe('available');
          expect(tgtd.targets()).not.toContain(volume.id);
          expect(existsSync(join(targets, `volume-${volume.id}`))).toBe(false);
          expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
        } finally {
          await server.close();
          tgtd.stop();
        }
      },
    );

    it('check prints which provisioning mode was chosen and why', () => {
      const configPath = join(vg.dir, 'check.json');
      writeFileSync(configPath, JSON.stringify(remote()));
      const result = execFileSync(process.execPath, [BIN, 'check', '--config', configPath], { encoding: 'utf8', env: { ...process.env, XDG_DATA_HOME: join(vg.dir, 'xdg') } });
      expect(result).toMatch(/^lvm\tcinder\.volume\.drivers\.lvm\.LVMVolumeDriver\tinitialized$/m);
      expect(result).toMatch(/note: runs lvm on 127\.0\.0\.1:\d+ with LVM_SYSTEM_DIR=/);
      expect(result).toMatch(/note: thick \(lvm_type: auto, because the group already holds \d+ LV\(s\) and no thin pool cinder-volumes-pool\)/);
    });

    it('trusts a new host on first use and records its key', async () => {
      rmSync(knownHosts, { force: true });
      const server = await startMcpServer(remote());
      try {
        expect((await server.call('get_stats', { backend: 'lvm' })).isError).toBe(false);
        const recorded = readFileSync(knownHosts, 'utf8');
        expect(recorded).toContain(`[127.0.0.1]:${sshd.port} ${sshd.hostPublicKey.split(' ').slice(0, 2).join(' ')}`);
      } finally {
        await server.close();
      }
    });

    it('recovers from a dropped connection', async () => {
      const server = await startMcpServer(remote({ ssh_min_pool_conn: 1, ssh_max_pool_conn: 2 }));
      try {
        const first = await server.call('create_volume', { backend: 'lvm', size: 1 });
        expect(first.isError, first.text).toBe(false);
        await sshd.stop(); // every pooled connection dies
        await sshd.start();
        const second = await server.call('create_volume', { backend: 'lvm', size: 1 });
        expect(second.isError, second.text).toBe(false);
        expect(vg.lvNames()).toEqual(expect.arrayContaining([`volume-${first.data.id}`, `volume-${second.data.id}`]));
        expect(server.stderr()).toMatch(/was lost .*reconnecting/);
        for (const volume of [first, second]) expect((await server.call('delete_volume', { volume_id: volume.data.id })).isError).toBe(false);
      } finally {
        await server.close();
      }
    });

    it('refuses a changed host key, and an unknown host under the strict policy', async () => {
      const impostor = join(vg.dir, 'impostor');
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', impostor]);
      const changed = join(vg.dir, 'changed_known_hosts');
      writeFileSync(changed, `[127.0.0.1]:${sshd.port} ${readFileSync(`${impostor}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`);
      const strictFile = join(vg.dir, 'empty_known_hosts');
      writeFileSync(strictFile, '');
      const server = await startMcpServer({
        backends: [
          { ...remote({ ssh_hosts_key_file: changed }).backends[0], volume_backend_name: 'changed' },
          { ...remote({ ssh_hosts_key_file: strictFile, strict_ssh_host_key_policy: true }).backends[0], volume_backend_name: 'strict' },
          { ...remote({ san_ssh_port: 1 }).backends[0], volume_backend_name: 'unreachable' },
        ],
      });
      try {
        const { backends } = (await settledBackends(server)).data;
        const byId = Object.fromEntries(backends.map((b: { id: string }) => [b.id, b]));
        expect(byId.changed.initialized).toBe(false);
        expect(byId.changed.error).toMatch(/the ssh-ed25519 host key of \[127\.0\.0\.1\]:\d+ has changed .*refusing to connect/);
        expect(byId.strict.initialized).toBe(false);
        expect(byId.strict.error).toMatch(/is not in .*empty_known_hosts and strict_ssh_host_key_policy is on/);
        expect(byId.unreachable.initialized).toBe(false);
        expect(byId.unreachable.error).toMatch(/cannot reach root@127\.0\.0\.1:1: ECONNREFUSED/);
        expect(readFileSync(strictFile, 'utf8')).toBe(''); // nothing recorded under the strict policy
      } finally {
        await server.close();
      }
    });
  });
}
