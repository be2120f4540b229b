import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { BIN, REPO_ROOT, startMcpServer } from '../helpers/server.js';
import { checkingOutputSchemas, type SchemaCheckedHarness } from '../helpers/scenarios.js';
import { iscsiPrerequisites, iscsiUrl, readCapacity, readOverIscsi, useTgtd, writeOverIscsi, type TgtdFixture } from './fixtures.js';
import { connectionSecret } from '../helpers/connection-secret.js';

/**
 * Contract section 8 end to end against real software: the server exports file-driver volumes
 * through a real tgtd, and libiscsi's user-space initiator (iscsi-readcapacity16, qemu-io) logs
 * in over 127.0.0.1 with the CHAP credentials the host's administrator reads with
 * `cinderlib-mcp connection-secret`. Attachments on the server's host are real loop devices.
 */
const missing = iscsiPrerequisites();
const inCi = process.env.CI === 'true';
const GIB = 1024 ** 3;
const MIB = 1024 ** 2;
const INITIATOR_A = 'iqn.1994-05.com.example:host-a';
const INITIATOR_B = 'iqn.1994-05.com.example:host-b';
/** Cinder's CHAP alphabet: no 0, 1, I, O or l. */
const CHAP_SYMBOLS = /^[2-9A-HJ-NP-Za-km-z]+$/;

if (missing && !inCi) {
  describe.skip(`iSCSI exports against a real tgtd (${missing})`, () => {
    it('runs where its prerequisites are', () => undefined);
  });
} else if (missing) {
  describe('iSCSI exports against a real tgtd', () => {
    it('has its prerequisites under CI', () => {
      throw new Error(`the iSCSI suite ${missing}; .ci/run must install them`);
    });
  });
} else {
  describe('iSCSI exports against a real tgtd', () => {
    let root: string;
    let tgtd: TgtdFixture;
    let server: SchemaCheckedHarness;
    let configPath: string;
    const volumesDir = () => join(root, 'volumes');
    const targetsDir = () => join(root, 'targets');
    const config = () => ({
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(root, 'meta.sqlite')}` } },
      backends: [
        {
          volume_backend_name: 'files',
          volume_driver: 'file',
          volumes_dir: volumesDir(),
          target_helper: 'tgtadm',
          target_ip_address: tgtd.address,
          target_port: tgtd.port,
          target_config_dir: targetsDir(),
        },
        { volume_backend_name: 'plain', volume_driver: 'file', volumes_dir: join(root, 'plain') },
        {
          volume_backend_name: 'elsewhere',
          volume_driver: 'file',
          volumes_dir: join(root, 'elsewhere'),
          target_helper: 'tgtadm',
          target_ip_address: tgtd.address,
          target_port: tgtd.port + 1,
          target_config_dir: join(root, 'elsewhere-targets'),
        },
      ],
    });
    const start = async () => checkingOutputSchemas(await startMcpServer(config(), { workDir: root, keepWorkDir: true, configFileName: 'config.yaml' }));
    /** What `connection-secret` prints for a connection, read from `config` (the suite's own by default). */
    const secretOf = (connectionId: string, config = configPath) => connectionSecret(config, connectionId);
    const imageOf = (volumeId: string) => join(volumesDir(), `volume-${volumeId}`);
    const targetIqn = (volumeId: string) => `iqn.2010-10.org.openstack:volume-${volumeId}`;

    beforeAll(async () => {
      root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-iscsi-'));
      tgtd = useTgtd();
      configPath = join(root, 'config.yaml');
      writeFileSync(configPath, stringify(config()));
      server = await start();
    });
    afterAll(async () => {
      // Whatever a failed test left connected is disconnected, so tgtd keeps no target of ours.
      for (const connection of (await server?.call('list_connections', { limit: 1000 }))?.data?.connections ?? []) {
        await server.call(connection.device ? 'detach_volume' : 'disconnect_volume', { connection_id: connection.id });
      }
      await server?.close();
      tgtd?.stop();
      rmSync(root, { recursive: true, force: true });
    });

    it('checks connectors as Cinder does: iSCSI needs the initiator', async () => {
      const missingInitiator = await server.call('validate_connector', { backend: 'files', connector: { host: 'host-a' } });
      expect(missingInitiator.isError).toBe(true);
      expect(missingInitiator.text).toMatch(/^INVALID_ARGUMENT: .*lacks initiator/);
      const bad = await server.call('validate_connector', { backend: 'files', connector: { host: 'host-a', initiator: 'not an iqn' } });
      expect(bad.text).toMatch(/^INVALID_ARGUMENT: .*iSCSI name/);
      const good = await server.call('validate_connector', { backend: 'files', connector: { host: 'host-a', initiator: INITIATOR_A } });
      expect(good.data).toEqual({ backend: 'files', valid: true });
      const plain = await server.call('connect_volume', {
        volume_id: (await server.call('create_volume', { backend: 'plain', size: 1 })).data.id,
        connector: { host: 'host-a', initiator: INITIATOR_A },
      });
      expect(plain.text).toMatch(/^UNSUPPORTED: .*set target_helper: tgtadm/);
    });

    it('exports a volume over iSCSI with CHAP: login works with the credentials from connection-secret and fails without them', async () => {
      const volume = (await server.call('create_volume', { backend: 'files', size: 1, name: 'exported' })).data;
      const connected = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-a', initiator: INITIATOR_A } });
      expect(connected.isError, connected.text).toBe(false);
      const connection = connected.data;
      expect(connection).toMatchObject({
        volume_id: volume.id,
        backend: 'files',
        status: 'attached',
        attach_mode: 'rw',
        connection_info: {
          driver_volume_type: 'iscsi',
          data: { target_discovered: false, target_iqn: targetIqn(volume.id), target_portal: tgtd.portal, target_lun: 1, auth_method: 'CHAP', auth_password: '***' },
        },
      });
      expect(connection.connection_info.data.auth_username).toMatch(CHAP_SYMBOLS);
      expect(connection.connection_info.data.auth_username).toHaveLength(20);
      expect((await server.call('get_volume', { volume_id: volume.id })).data.status).toBe('in-use');

      const secret = secretOf(connection.id);
      expect(secret.code).toBe(0);
      expect(secret.username).toBe(connection.connection_info.data.auth_username);
      expect(secret.password).toMatch(CHAP_SYMBOLS);
      expect(secret.password).toHaveLength(16);
      const credentials = { username: secret.username, password: secret.password };

      const url = iscsiUrl(tgtd.portal, targetIqn(volume.id), 1, credentials);
      expect(readCapacity(url)).toEqual({ bytes: GIB });
      expect(readCapacity(iscsiUrl(tgtd.portal, targetIqn(volume.id), 1)).error).toMatch(/Authentication failure|Login Failed/i);
      expect(readCapacity(iscsiUrl(tgtd.portal, targetIqn(volume.id), 1, { ...credentials, password: 'WrongPassword23' })).error).toMatch(/Authentication failure|Login Failed/i);

      // The password is in no answer, listing or log.
      const listing = await server.call('list_connections', { volume_id: volume.id });
      expect(listing.data.connections).toHaveLength(1);
      expect(JSON.stringify(listing)).not.toContain(credentials.password);
      expect(connected.text).not.toContain(credentials.password);
      expect(server.stderr()).not.toContain(credentials.password);
      // The target's config file holds it, readable by root alone.
      const file = join(targetsDir(), `volume-${volume.id}`);
      expect(statSync(file).mode & 0o077).toBe(0);
      expect(readFileSync(file, 'utf8')).toContain(`incominguser ${credentials.username} ${credentials.password}`);
    });

    it('moves bytes both ways: written into the volume, read over iSCSI; written over iSCSI, landed in the volume', async () => {
      const volume = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
      const connection = (await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-a', initiator: INITIATOR_A } })).data;
      const { username, password } = secretOf(connection.id);
      const url = iscsiUrl(tgtd.portal, targetIqn(volume.id), 1, { username: username, password: password });

      const known = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7 + 3) % 256));
      const image = await open(imageOf(volume.id), 'r+');
      await image.write(known, 0, known.length, 5 * MIB);
      await image.close();
      expect(readOverIscsi(url, 5 * MIB, 512).equals(known)).toBe(true);

      writeOverIscsi(url, 700 * MIB, 64 * 1024, 0x5a);
      const landed = Buffer.alloc(64 * 1024);
      const reread = await open(imageOf(volume.id), 'r');
      await reread.read(landed, 0, landed.length, 700 * MIB);
      await reread.close();
      expect(landed.every((byte) => byte === 0x5a)).toBe(true);
    });

    it('follows an extend: the LUN shows the new size', async () => {
      const volume = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
      const connection = (await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-a', initiator: INITIATOR_A } })).data;
      const { username, password } = secretOf(connection.id);
      const url = iscsiUrl(tgtd.portal, targetIqn(volume.id), 1, { username: username, password: password });
      const extended = await server.call('extend_volume', { volume_id: volume.id, new_size: 3 });
      expect(extended.isError, extended.text).toBe(false);
      expect(extended.data).toMatchObject({ size: 3, status: 'in-use' });
      expect(readCapacity(url)).toEqual({ bytes: 3 * GIB });
    });

    it('refuses to delete a connected volume, naming the connection; one initiator connects once, another shares the target', async () => {
      const volume = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
      const first = (await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-a', initiator: INITIATOR_A } })).data;
      const deleted = await server.call('delete_volume', { volume_id: volume.id });
      expect(deleted.text).toMatch(new RegExp(`^IN_USE: .*connection ${first.id}`));
      const again = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-a', initiator: INITIATOR_A } });
      expect(again.text).toMatch(new RegExp(`^ALREADY_EXISTS: .*connection ${first.id}`));
      const second = (await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-b', initiator: INITIATOR_B } })).data;
      expect(second.connection_info.data.target_iqn).toBe(first.connection_info.data.target_iqn);
      // Every connection of a volume gets the volume's credentials (Cinder's provider_auth).
      expect(secretOf(second.id).password).toBe(secretOf(first.id).password);

      const { username, password } = secretOf(first.id);
      const url = iscsiUrl(tgtd.portal, targetIqn(volume.id), 1, { username: username, password: password });
      expect((await server.call('disconnect_volume', { connection_id: first.id })).data).toEqual({ connection_id: first.id, disconnected: true });
      // The other host still reaches the volume.
      expect(readCapacity(url)).toEqual({ bytes: GIB });
      expect((await server.call('get_volume', { volume_id: volume.id })).data.status).toBe('in-use');
      await server.call('disconnect_volume', { connection_id: second.id });
      expect((await server.call('get_volume', { volume_id: volume.id })).data.status).toBe('available');
      expect(tgtd.targets()).not.toContain(targetIqn(volume.id));
      expect(readCapacity(url).error).toBeDefined();
      expect(existsSync(join(targetsDir(), `volume-${volume.id}`))).toBe(false);
      expect((await server.call('disconnect_volume', { connection_id: second.id })).text).toMatch(/^NOT_FOUND: /);
      expect(secretOf(second.id)).toMatchObject({ code: 1, stdout: '' });
      expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
    });

    it('keeps connections across a restart: listed from the store, still exported', async () => {
      const volume = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
      const connection = (await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-a', initiator: INITIATOR_A }, request_id: 'restart-1' })).data;
      await server.close();
      server = await start();
      const listed = (await server.call('list_connections', { volume_id: volume.id })).data.connections;
      expect(listed.map((c: { id: string }) => c.id)).toEqual([connection.id]);
      const { username, password } = secretOf(connection.id);
      expect(readCapacity(iscsiUrl(tgtd.portal, targetIqn(volume.id), 1, { username: username, password: password }))).toEqual({ bytes: GIB });
      // A retried connect with the same request_id answers the same connection.
      const retried = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-a', initiator: INITIATOR_A }, request_id: 'restart-1' });
      expect(retried.data.id).toBe(connection.id);
      await server.call('disconnect_volume', { connection_id: connection.id });
    });

    it("a volume restored from a dump keeps its live target's CHAP credentials; connection-secret says the loaded one's are not known", async () => {
      // Its own store, images and target configs; the restore goes into a second store on the same folders.
      const restoreConfig = (store: string) => {
        const path = join(root, `restore-${store}.yaml`);
        writeFileSync(
          path,
          stringify({
            global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(root, `restore-${store}.sqlite`)}` } },
            backends: [{ ...config().backends[0], volumes_dir: join(root, 'restore-volumes'), target_config_dir: join(root, 'restore-targets') }],
          }),
        );
        return path;
      };
      const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: REPO_ROOT });
      const before = restoreConfig('before');
      const first = await startMcpServer(null, { args: ['--config', before], workDir: mkdtempSync(join(root, 'restore-server-')) });
      const volume = (await first.call('create_volume', { backend: 'files', size: 1 })).data;
      const original = (await first.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-a', initiator: INITIATOR_A } })).data;
      await first.close();
      const credentials = secretOf(original.id, before);
      expect(credentials.code).toBe(0);

      const dumped = cli('dump', '--config', before);
      expect(dumped.status, dumped.stderr).toBe(0);
      expect(dumped.stdout).not.toContain(credentials.password);
      writeFileSync(join(root, 'restore.json'), dumped.stdout);
      const after = restoreConfig('after');
      const loaded = cli('load', join(root, 'restore.json'), '--config', after);
      expect(loaded.status, loaded.stderr).toBe(0);

      const unknown = secretOf(original.id, after);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toMatch(/auth_password is not known here: it was loaded from a dump, and dumps never carry secrets/);

      const restored = await startMcpServer(null, { args: ['--config', after], workDir: mkdtempSync(join(root, 'restore-server-')) });
      try {
        const another = await restored.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-b', initiator: INITIATOR_B } });
        expect(another.isError, another.text).toBe(false);
        const kept = secretOf(another.data.id, after);
        expect([kept.username, kept.password]).toEqual([credentials.username, credentials.password]);
        // The host connected before the restore still logs in with what it had.
        expect(readCapacity(iscsiUrl(tgtd.portal, targetIqn(volume.id), 1, { username: credentials.username, password: credentials.password }))).toEqual({ bytes: GIB });
        for (const connection of [original.id, another.data.id]) expect((await restored.call('disconnect_volume', { connection_id: connection })).isError).toBe(false);
        expect((await restored.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
      } finally {
        await restored.close();
      }
    });

    it('leaves nothing behind when a connect fails: no record, no target, no config file', async () => {
      // tgtd does not listen on this backend's portal: refused before anything is exported.
      const volume = (await server.call('create_volume', { backend: 'elsewhere', size: 1 })).data;
      const refused = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-a', initiator: INITIATOR_A } });
      expect(refused.text).toMatch(/^BACKEND_UNAVAILABLE: .*tgtd .* listens on .*not on 127\.0\.0\.1:\d+/);
      // The image is replaced by a folder, which tgt cannot serve: tgt-admin fails after the config file was written.
      const broken = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
      rmSync(imageOf(broken.id));
      mkdirSync(imageOf(broken.id));
      const failed = await server.call('connect_volume', { volume_id: broken.id, connector: { host: 'host-a', initiator: INITIATOR_A } });
      expect(failed.text).toMatch(/^BACKEND_UNAVAILABLE: .*no LUN 1 in target/);
      rmSync(imageOf(broken.id), { recursive: true });
      const vanished = await server.call('connect_volume', { volume_id: broken.id, connector: { host: 'host-a', initiator: INITIATOR_A } });
      expect(vanished.text).toMatch(/^BACKEND_UNAVAILABLE: .*backing store .* does not exist/);
      for (const id of [volume.id, broken.id]) {
        expect((await server.call('list_connections', { volume_id: id })).data.connections).toEqual([]);
        expect((await server.call('get_volume', { volume_id: id })).data.status).toBe('available');
        expect(tgtd.targets()).not.toContain(targetIqn(id));
      }
      expect(existsSync(join(targetsDir(), `volume-${broken.id}`))).toBe(false);
      expect(readdirSync(targetsDir()).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    });

    it("attaches a volume on the server's host as a loop device that dd reads and writes, follows an extend, and detaches leaving nothing", async () => {
      const volume = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
      const attached = await server.call('attach_volume', { volume_id: volume.id });
      expect(attached.isError, attached.text).toBe(false);
      const device = attached.data.device.path as string;
      expect(device).toMatch(/^\/dev\/loop\d+$/);
      expect(attached.data.connection_info).toEqual({ driver_volume_type: 'local', data: { device_path: imageOf(volume.id), volume_id: volume.id } });
      expect((await server.call('get_volume', { volume_id: volume.id })).data.status).toBe('in-use');

      execFileSync('dd', [`of=${device}`, 'bs=4096', 'count=1', 'seek=256', 'oflag=direct', 'status=none'], { input: Buffer.alloc(4096, 0xc3) });
      const landed = Buffer.alloc(4096);
      const image = await open(imageOf(volume.id), 'r');
      await image.read(landed, 0, 4096, 256 * 4096);
      await image.close();
      expect(landed.every((byte) => byte === 0xc3)).toBe(true);

      expect((await server.call('extend_volume', { volume_id: volume.id, new_size: 2 })).data.size).toBe(2);
      expect(Number(execFileSync('blockdev', ['--getsize64', device], { encoding: 'utf8' }).trim())).toBe(2 * GIB);

      const disconnect = await server.call('disconnect_volume', { connection_id: attached.data.id });
      expect(disconnect.text).toMatch(/^IN_USE: .*detach_volume/);
      expect((await server.call('detach_volume', { connection_id: attached.data.id })).data).toEqual({ connection_id: attached.data.id, detached: true });
      expect(execFileSync('losetup', ['--noheadings', '--output', 'NAME', '--associated', imageOf(volume.id)], { encoding: 'utf8' }).trim()).toBe('');
      expect((await server.call('get_volume', { volume_id: volume.id })).data.status).toBe('available');
      expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
    });

    it('answers every connection tool with structuredContent matching its output schemas', async () => {
      const volume = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
      const connector = { host: 'host-a', initiator: INITIATOR_A };
      await server.call('validate_connector', { backend: 'files', connector });
      const connection = (await server.call('connect_volume', { volume_id: volume.id, connector })).data;
      const attached = (await server.call('attach_volume', { volume_id: volume.id })).data;
      expect((await server.call('list_connections', { backend: 'files', volume_id: volume.id })).data.connections.map((c: { id: string }) => c.id)).toEqual([
        connection.id,
        attached.id,
      ]);
      await server.call('detach_volume', { connection_id: attached.id });
      await server.call('disconnect_volume', { connection_id: connection.id });
      for (const tool of ['validate_connector', 'connect_volume', 'list_connections', 'disconnect_volume', 'attach_volume', 'detach_volume']) {
        expect(server.checkedTools.has(tool), tool).toBe(true);
      }
    });

    it('answers connection-secret for an unknown id with exit 1 and nothing on stdout', () => {
      const unknown = secretOf('00000000-0000-4000-8000-000000000000');
      expect(unknown.code).toBe(1);
      expect(unknown.stdout).toBe('');
      expect(unknown.stderr).toMatch(/does not exist/);
    });
  });
}
