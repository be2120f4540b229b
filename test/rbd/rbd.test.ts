import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ISCSI_ATTACH_HERE, checkingOutputSchemas, defineBackendScenarios, type SchemaCheckedHarness } from '../helpers/scenarios.js';
import { startMcpServer } from '../helpers/server.js';
import { useTgtd, type TgtdFixture } from '../iscsi/fixtures.js';
import { startCephCluster, type CephCluster } from './ceph-cluster.js';
import { holdsPattern, imageInfo, poolListing, rbdBackend, rbdPrerequisites, writeRbd } from './fixtures.js';

const missing = rbdPrerequisites();
const inCi = process.env.CI === 'true';
const MIB = 1024 ** 2;

if (missing && !inCi) {
  describe.skip(`RBD driver against a real Ceph (${missing})`, () => {
    it('runs where its prerequisites are', () => undefined);
  });
} else if (missing) {
  describe('RBD driver against a real Ceph', () => {
    it('has its prerequisites under CI', () => {
      throw new Error(`the RBD suite ${missing}; .ci/run must install them`);
    });
  });
} else {
  let cluster: CephCluster;
  let tgtd: TgtdFixture;
  let root: string;
  beforeAll(async () => {
    cluster = await startCephCluster();
    tgtd = useTgtd();
    root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-rbd-'));
  }, 120_000);
  afterAll(async () => {
    tgtd?.stop();
    await cluster?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  defineBackendScenarios({
    label: 'RBD (real Ceph, iSCSI through tgt)',
    backend: 'ceph',
    makeConfig: () => ({
      backends: [
        rbdBackend(cluster, 'ceph', {
          target_helper: 'tgtadm',
          target_ip_address: tgtd.address,
          target_port: tgtd.port,
          target_config_dir: join(root, 'scenario-targets'),
        }),
      ],
    }),
    connections: { connect: 'works', attach: ISCSI_ATTACH_HERE },
  });

  describe('RBD specifics', () => {
    let server: SchemaCheckedHarness;
    beforeAll(async () => {
      server = await checkingOutputSchemas(
        await startMcpServer({
          backends: [
            rbdBackend(cluster, 'rbd1'),
            rbdBackend(cluster, 'shallow', { rbd_max_clone_depth: 1, rbd_flatten_volume_from_snapshot: true }),
            rbdBackend(cluster, 'copies', { rbd_max_clone_depth: 0 }),
          ],
        }),
      );
    });
    afterAll(async () => {
      await server?.close();
    });

    it('names and relates images as Cinder does, and snapshots and clones hold the bytes of their moment', async () => {
      const source = (await server.call('create_volume', { backend: 'rbd1', size: 1, name: 'source' })).data;
      const image = `volume-${source.id}`;
      expect(imageInfo(cluster, image)?.size).toBe(1024 * MIB);
      writeRbd(cluster, image, 0, 4 * MIB, 0x5a);
      const snapshot = await server.call('create_snapshot', { volume_id: source.id, name: 'before' });
      expect(snapshot.isError, snapshot.text).toBe(false);
      const snapEntry = poolListing(cluster).find((e) => e.image === image && e.snapshot === `snapshot-${snapshot.data.id}`);
      expect(snapEntry?.protected).toBe('true');
      const fromSnapshot = await server.call('create_volume', { snapshot_id: snapshot.data.id });
      expect(fromSnapshot.isError, fromSnapshot.text).toBe(false);
      expect(imageInfo(cluster, `volume-${fromSnapshot.data.id}`)?.parent).toMatchObject({ pool: cluster.pool, image, snapshot: `snapshot-${snapshot.data.id}` });
      const clone = await server.call('create_volume', { source_volume_id: source.id });
      expect(clone.isError, clone.text).toBe(false);
      expect(imageInfo(cluster, `volume-${clone.data.id}`)?.parent).toMatchObject({ image, snapshot: `volume-${clone.data.id}.clone_snap` });

      writeRbd(cluster, image, 0, 4 * MIB, 0x11);
      expect(holdsPattern(cluster, image, 0, 4 * MIB, 0x11)).toBe(true);
      expect(holdsPattern(cluster, `${image}@snapshot-${snapshot.data.id}`, 0, 4 * MIB, 0x5a)).toBe(true);
      expect(holdsPattern(cluster, `volume-${fromSnapshot.data.id}`, 0, 4 * MIB, 0x5a)).toBe(true);
      expect(holdsPattern(cluster, `volume-${clone.data.id}`, 0, 4 * MIB, 0x5a)).toBe(true);

      // Dependants: the snapshot has a volume cloned from it (IN_USE naming it); the source has a clone (Cinder keeps it as .deleted).
      const refused = await server.call('delete_snapshot', { snapshot_id: snapshot.data.id });
      expect(refused.text).toMatch(new RegExp(`^IN_USE: .*snapshot ${snapshot.data.id} .*volume ${fromSnapshot.data.id}`));
      expect((await server.call('delete_volume', { volume_id: fromSnapshot.data.id })).isError).toBe(false);
      expect((await server.call('delete_snapshot', { snapshot_id: snapshot.data.id })).isError).toBe(false);
      const deleted = await server.call('delete_volume', { volume_id: source.id });
      expect(deleted.isError, deleted.text).toBe(false);
      expect(poolListing(cluster).map((e) => e.image)).toContain(`${image}.deleted`);
      expect(holdsPattern(cluster, `volume-${clone.data.id}`, 0, 4 * MIB, 0x5a)).toBe(true);
      expect((await server.call('delete_volume', { volume_id: clone.data.id })).isError).toBe(false);
      expect(poolListing(cluster).filter((e) => [image, `${image}.deleted`, `volume-${clone.data.id}`].includes(e.image))).toEqual([]);
    });
  });
}
