import Database from 'better-sqlite3';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ISCSI_ATTACH_HERE, checkingOutputSchemas, defineBackendScenarios, settledBackends, type SchemaCheckedHarness } from '../helpers/scenarios.js';
import { BIN, REPO_ROOT, startMcpServer } from '../helpers/server.js';
import { watchCommandLines } from '../iscsi/cmdline-watch.js';
import { iscsiUrl, readCapacity, readOverIscsi, useTgtd, writeOverIscsi, type TgtdFixture } from '../iscsi/fixtures.js';
import { startCephCluster, type CephCluster } from './ceph-cluster.js';
import { holdsPattern, imageInfo, poolListing, rbdBackend, rbdPrerequisites, writeRbd } from './fixtures.js';
import { connectionSecret } from '../helpers/connection-secret.js';

const missing = rbdPrerequisites();
const inCi = process.env.CI === 'true';
const MIB = 1024 ** 2;
const GIB = 1024 ** 3;
const INITIATOR = 'iqn.1994-05.com.example:rbd-host';

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
    // The pool's images and snapshots, as client.admin lists them.
    arrayState: () => JSON.parse(cluster.rbd('ls', '-l', '--format', 'json', cluster.pool)),
    foreign: {
      make: (name, sizeGb) => void cluster.rbd('create', '--size', `${sizeGb}G`, `${cluster.pool}/${name}`),
      // Open: `rbd watch` holds a watch on the image until it is stopped, as a client that maps it does.
      inUse: (name, sizeGb) => {
        const spec = `${cluster.pool}/${name}`;
        cluster.rbd('create', '--size', `${sizeGb}G`, spec);
        const watch = spawn('rbd', ['-c', cluster.conf, '--id', 'admin', 'watch', spec], { stdio: ['pipe', 'ignore', 'ignore'] }); // it watches until its stdin ends
        const deadline = Date.now() + 20_000;
        while ((JSON.parse(cluster.rbd('status', '--format', 'json', spec)) as { watchers?: unknown[] }).watchers?.length !== 1) {
          if (Date.now() > deadline) throw new Error(`rbd watch ${spec} registered no watcher in 20 s`);
          spawnSync('sleep', ['0.2']);
        }
        return () => void watch.kill();
      },
    },
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
            rbdBackend(cluster, 'nopool', { rbd_pool: 'no-such-pool' }),
            rbdBackend(cluster, 'nokey', { rbd_keyring_conf: join(cluster.dir, 'no-such.keyring') }),
          ],
        }),
      );
    });
    afterAll(async () => {
      await server?.close();
    });

    it('reports a backend that cannot serve, saying why: a missing pool, a keyring without data', async () => {
      const { backends } = (await settledBackends(server)).data;
      const byId = (id: string) => backends.find((b: { id: string }) => b.id === id);
      expect(byId('rbd1')).toMatchObject({ initialized: true });
      expect(byId('nopool')).toMatchObject({ initialized: false, error: expect.stringMatching(/pool "no-such-pool" does not exist .*set rbd_pool/) });
      expect(byId('nokey')).toMatchObject({ initialized: false, error: expect.stringMatching(/no keyring data found in rbd_keyring_conf .*no-such\.keyring/) });
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

    it('flattens past rbd_max_clone_depth and when rbd_flatten_volume_from_snapshot says so; copies when the depth is 0', async () => {
      const source = (await server.call('create_volume', { backend: 'shallow', size: 1 })).data;
      writeRbd(cluster, `volume-${source.id}`, 0, MIB, 0x21);
      // Depth 1: a clone of the source is a child; a clone of that clone would be 2 deep, so it is flattened and its clone snapshot removed.
      const first = (await server.call('create_volume', { source_volume_id: source.id })).data;
      expect(imageInfo(cluster, `volume-${first.id}`)?.parent?.snapshot).toBe(`volume-${first.id}.clone_snap`);
      const second = (await server.call('create_volume', { source_volume_id: first.id })).data;
      expect(imageInfo(cluster, `volume-${second.id}`)?.parent).toBeUndefined();
      expect(poolListing(cluster).filter((e) => e.snapshot === `volume-${second.id}.clone_snap`)).toEqual([]);
      expect(holdsPattern(cluster, `volume-${second.id}`, 0, MIB, 0x21)).toBe(true);
      // rbd_flatten_volume_from_snapshot: the new volume stands alone, so the snapshot goes at once.
      const snapshot = (await server.call('create_snapshot', { volume_id: source.id })).data;
      const fromSnapshot = (await server.call('create_volume', { snapshot_id: snapshot.id, size: 2 })).data;
      expect(imageInfo(cluster, `volume-${fromSnapshot.id}`)).toMatchObject({ size: 2 * GIB });
      expect(imageInfo(cluster, `volume-${fromSnapshot.id}`)?.parent).toBeUndefined();
      expect(holdsPattern(cluster, `volume-${fromSnapshot.id}`, 0, MIB, 0x21)).toBe(true);
      expect((await server.call('delete_snapshot', { snapshot_id: snapshot.id })).isError).toBe(false);
      // Depth 0: rbd cp, no parent, no snapshot on the source.
      const copySource = (await server.call('create_volume', { backend: 'copies', size: 1 })).data;
      writeRbd(cluster, `volume-${copySource.id}`, MIB, MIB, 0x33);
      const copy = (await server.call('create_volume', { source_volume_id: copySource.id })).data;
      expect(imageInfo(cluster, `volume-${copy.id}`)?.parent).toBeUndefined();
      expect(poolListing(cluster).filter((e) => e.image === `volume-${copySource.id}` && e.snapshot)).toEqual([]);
      expect(holdsPattern(cluster, `volume-${copy.id}`, MIB, MIB, 0x33)).toBe(true);
      for (const id of [second.id, first.id, source.id, fromSnapshot.id, copy.id, copySource.id]) {
        const answer = await server.call('delete_volume', { volume_id: id });
        expect(answer.isError, answer.text).toBe(false);
      }
      const ids = [source.id, first.id, second.id, fromSnapshot.id, copy.id, copySource.id];
      expect(poolListing(cluster).filter((e) => ids.some((id) => e.image.includes(id) || e.snapshot?.includes(id)))).toEqual([]);
    });

    it("reports the pool's capacity from the cluster's df as Cinder 21 does", async () => {
      const volume = (await server.call('create_volume', { backend: 'rbd1', size: 3 })).data;
      const pool = (await server.call('get_stats', { backend: 'rbd1', refresh: true })).data.stats.pools[0];
      const df = JSON.parse(cluster.ceph('df', 'detail', '--format', 'json')) as { pools: Array<{ name: string; stats: { stored: number; max_avail: number } }> };
      const stats = df.pools.find((p) => p.name === cluster.pool)!.stats;
      expect(pool.free_capacity_gb).toBeCloseTo(stats.max_avail / GIB, 1);
      expect(pool.total_capacity_gb).toBeCloseTo((stats.max_avail + stats.stored) / GIB, 1);
      expect(pool).toMatchObject({ thin_provisioning_support: true, thick_provisioning_support: false, multiattach: true });
      expect(pool.total_volumes).toBeUndefined();
      const images = poolListing(cluster).filter((e) => !e.snapshot && /^volume-[0-9a-f-]{36}$/.test(e.image));
      expect(pool.provisioned_capacity_gb).toBeCloseTo(images.reduce((sum, e) => sum + e.size, 0) / GIB, 2);
      expect(pool.location_info).toBe(`ceph:${cluster.conf}:${cluster.fsid}:cinder:${cluster.pool}`);
      expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
    });
  });

  describe("RBD connections: Cinder's rbd connection info, iSCSI through tgt, and the cephx key", () => {
    let server: SchemaCheckedHarness;
    let dir: string;
    let configPath: string;
    const config = () => ({
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(dir, 'meta.sqlite')}` } },
      backends: [
        rbdBackend(cluster, 'rbdc'),
        rbdBackend(cluster, 'rbdt', { target_helper: 'tgtadm', target_ip_address: tgtd.address, target_port: tgtd.port, target_config_dir: join(dir, 'targets') }),
      ],
    });
    const chapOf = (connectionId: string) => connectionSecret(configPath, connectionId);
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-rbd-conn-'));
      configPath = join(dir, 'config.yaml');
      server = await checkingOutputSchemas(await startMcpServer(config(), { workDir: dir, keepWorkDir: true, configFileName: 'config.yaml' }));
      writeFileSync(configPath, readFileSync(join(dir, 'config.yaml')));
    });
    afterAll(async () => {
      for (const connection of (await server?.call('list_connections', { limit: 1000 }))?.data?.connections ?? []) {
        await server.call('disconnect_volume', { connection_id: connection.id });
      }
      await server?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it("answers Cinder's rbd connection info: monitors from ceph mon dump, the user, the fsid as secret uuid, the keyring masked", async () => {
      const volume = (await server.call('create_volume', { backend: 'rbdc', size: 1 })).data;
      const valid = await server.call('validate_connector', { backend: 'rbdc', connector: { host: 'no-initiator-host' } });
      expect(valid.data).toEqual({ backend: 'rbdc', valid: true });
      const connected = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'kvm-host' } });
      expect(connected.isError, connected.text).toBe(false);
      expect(connected.data.connection_info.driver_volume_type).toBe('rbd');
      expect(connected.data.connection_info.data).toMatchObject({
        name: `${cluster.pool}/volume-${volume.id}`,
        hosts: ['127.0.0.1'],
        ports: [String(cluster.monV1Port)],
        cluster_name: 'ceph',
        auth_enabled: true,
        auth_username: 'cinder',
        volume_id: volume.id,
        discard: true,
        keyring: '***',
      });
      // secret_type and secret_uuid name libvirt's secret, they do not hold it: shown as Cinder gives them; the keyring is masked.
      expect(connected.data.connection_info.data).toMatchObject({ secret_type: 'ceph', secret_uuid: cluster.fsid, keyring: '***' });
      expect(JSON.stringify(connected)).not.toContain(cluster.cinderKey);
      // What the store keeps (and a host's os-brick gets): Cinder's values, the fsid as secret uuid, the keyring file's contents.
      const db = new Database(join(dir, 'meta.sqlite'), { readonly: true });
      const row = db.prepare('SELECT connection_info FROM connections WHERE id = ?').get(connected.data.id) as { connection_info: string };
      db.close();
      expect(JSON.parse(row.connection_info).data).toMatchObject({ secret_type: 'ceph', secret_uuid: cluster.fsid, keyring: readFileSync(cluster.cinderKeyring, 'utf8') });
      expect(statSync(join(dir, 'meta.sqlite')).mode & 0o077).toBe(0);
      // The host's administrator reads the keyring with connection-secret (one line, a JSON string), never over MCP.
      const secret = connectionSecret(configPath, connected.data.id);
      expect(secret.code, secret.stderr).toBe(0);
      expect(secret.stdout).toBe(`auth_username: cinder\nkeyring: ${JSON.stringify(readFileSync(cluster.cinderKeyring, 'utf8'))}\n`);
      expect((await server.call('get_volume', { volume_id: volume.id })).data.status).toBe('in-use');
      expect((await server.call('disconnect_volume', { connection_id: connected.data.id })).isError).toBe(false);
      // No krbd or rbd-nbd here: refused before anything is touched, naming what the host lacks.
      const attached = await server.call('attach_volume', { volume_id: volume.id });
      expect(attached.text).toMatch(
        /^UNSUPPORTED: backend "\w+": this host cannot map rbd images: it has neither the kernel's rbd module \(\/sys\/bus\/rbd is missing\) nor the nbd module/,
      );
      expect((await server.call('list_connections', { volume_id: volume.id })).data.connections).toEqual([]);
      expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
    });

    it("serves the image's bytes over iSCSI through tgt's rbd backing store, with CHAP, and follows an extend", async () => {
      const volume = (await server.call('create_volume', { backend: 'rbdt', size: 1 })).data;
      const image = `volume-${volume.id}`;
      writeRbd(cluster, image, 8 * MIB, MIB, 0x6b);
      const connected = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'iscsi-host', initiator: INITIATOR } });
      expect(connected.isError, connected.text).toBe(false);
      const data = connected.data.connection_info.data;
      expect(connected.data.connection_info.driver_volume_type).toBe('iscsi');
      expect(data).toMatchObject({ target_iqn: `iqn.2010-10.org.openstack:${image}`, target_portal: tgtd.portal, target_lun: 1, auth_method: 'CHAP', auth_password: '***' });
      expect(tgtd.targets()).toMatch(new RegExp(`Backing store type: rbd[\\s\\S]*Backing store path: ${cluster.pool}/${image}`));
      const credentials = chapOf(connected.data.id);
      const url = iscsiUrl(tgtd.portal, data.target_iqn, 1, credentials);
      expect(readCapacity(url)).toEqual({ bytes: GIB });
      expect(readCapacity(iscsiUrl(tgtd.portal, data.target_iqn, 1)).error).toMatch(/Authentication failure|Login Failed/i);
      expect(readOverIscsi(url, 8 * MIB, 4096).every((byte) => byte === 0x6b)).toBe(true);
      writeOverIscsi(url, 16 * MIB, 64 * 1024, 0x2c);
      expect(holdsPattern(cluster, image, 16 * MIB, 64 * 1024, 0x2c)).toBe(true);
      // The target's files: tgt's conf (rbd_keyring_conf added for tgt) and the target config, 0600 with no cephx key.
      for (const file of readdirSync(join(dir, 'targets'))) {
        expect(statSync(join(dir, 'targets', file)).mode & 0o077).toBe(0);
        expect(readFileSync(join(dir, 'targets', file), 'utf8')).not.toContain(cluster.cinderKey);
      }
      const extended = await server.call('extend_volume', { volume_id: volume.id, new_size: 2 });
      expect(extended.data, extended.text).toMatchObject({ size: 2, status: 'in-use' });
      expect(readCapacity(url)).toEqual({ bytes: 2 * GIB });
      expect((await server.call('disconnect_volume', { connection_id: connected.data.id })).isError).toBe(false);
      expect(tgtd.targets()).not.toContain(image);
      expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
    });

    it('keeps the cephx key off every command line, answer, log and dump', async () => {
      const watch = await watchCommandLines();
      let lines: string[];
      try {
        const volume = (await server.call('create_volume', { backend: 'rbdc', size: 1 })).data;
        const snapshot = (await server.call('create_snapshot', { volume_id: volume.id })).data;
        const clone = (await server.call('create_volume', { source_volume_id: volume.id })).data;
        await server.call('extend_volume', { volume_id: clone.id, new_size: 2 });
        const rbdConnection = (await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'kvm-host' } })).data;
        const exported = (await server.call('create_volume', { backend: 'rbdt', size: 1 })).data;
        const iscsiConnection = (await server.call('connect_volume', { volume_id: exported.id, connector: { host: 'iscsi-host', initiator: INITIATOR } })).data;
        await server.call('get_stats', { backend: 'rbdc', refresh: true });
        const answers = JSON.stringify([await server.call('list_connections', { limit: 1000 }), await server.call('list_backends'), await server.call('list_volumes', { limit: 1000 })]);
        const dump = spawnSync(process.execPath, [BIN, 'dump', '--config', configPath], { encoding: 'utf8', cwd: REPO_ROOT });
        expect(dump.status, dump.stderr).toBe(0);
        expect(dump.stdout).toContain(rbdConnection.id);
        for (const key of [cluster.cinderKey, cluster.adminKey]) {
          expect(answers).not.toContain(key);
          expect(dump.stdout + dump.stderr).not.toContain(key);
          expect(server.stderr()).not.toContain(key);
        }
        await server.call('disconnect_volume', { connection_id: rbdConnection.id });
        await server.call('disconnect_volume', { connection_id: iscsiConnection.id });
        await server.call('delete_volume', { volume_id: clone.id });
        await server.call('delete_snapshot', { snapshot_id: snapshot.id });
        await server.call('delete_volume', { volume_id: volume.id });
        await server.call('delete_volume', { volume_id: exported.id });
      } finally {
        ({ lines } = await watch.stop());
      }
      const driverCommands = lines.filter((line) => /^(rbd|ceph|\/usr\/bin\/python3 \/usr\/bin\/ceph) /.test(line) && line.includes(cluster.conf) && line.includes('--id cinder'));
      // The watcher saw the driver's commands (create, snap, clone, resize, df, mon dump), each naming the keyring by path.
      expect(driverCommands.some((line) => line.includes(' create '))).toBe(true);
      expect(driverCommands.some((line) => line.includes(' clone '))).toBe(true);
      expect(driverCommands.some((line) => line.includes(' mon dump'))).toBe(true);
      for (const line of driverCommands) expect(line).toContain(`--keyring ${cluster.cinderKeyring}`);
      for (const line of lines) {
        expect(line).not.toContain(cluster.cinderKey);
        expect(line).not.toContain(cluster.adminKey);
        expect(line).not.toMatch(/--key[ =]|cephx_key=/);
      }
    });
  });
}
