import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import xtremio from '../../drivers/xtremio/index.js';
import type { Connector, CreateVolumeRequest, VolumeDriver } from '../../drivers/kit/types.js';
import { refusingHost } from '../helpers/refusing-host.js';
import { validateDriverOptions } from '../../src/config/driver-options.js';
import { StorageError } from '../../src/base/errors.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { XmsEmulator } from '../emulators/xtremio/server.js';
import { startMcpServer } from '../helpers/server.js';

/**
 * iSCSI connections on XtremIO, as Cinder's XtremIOISCSIDriver makes them: an initiator group and
 * an initiator named after the IQN, CHAP credentials when the cluster uses CHAP, a lun-map of the
 * volume to the group, a portal of the cluster's. The checks read the emulator's objects.
 */
const PASSWORD = 'xms-Conn-pw-5519';
const ISCSI = 'cinder.volume.drivers.dell_emc.xtremio.XtremIOISCSIDriver';

const arrays = [
  { api: 'v2 (XMS 4.2)', paths: '/api/json/v2/types', xms: new XmsEmulator({ password: PASSWORD }) },
  { api: 'v2 (XMS 4.0)', paths: '/api/json/v2/types', xms: new XmsEmulator({ password: PASSWORD, xmsVersion: '4.0.10-34' }) },
  { api: 'v1', paths: '/api/json/types', xms: new XmsEmulator({ password: PASSWORD, clusterVersion: '3.0.2-14' }) },
] as const;

beforeAll(async () => {
  for (const { xms } of arrays) await xms.start();
});
afterAll(async () => {
  for (const { xms } of arrays) await xms.cleanup();
});

interface Started {
  driver: VolumeDriver;
  secrets: SecretRegistry;
}

async function startDriver(xms: XmsEmulator, extra: Record<string, unknown> = {}, volumeDriver = ISCSI): Promise<Started> {
  const secrets = new SecretRegistry();
  const config = xms.cinderBackend('xtremio', { volume_driver: volumeDriver, ...extra });
  const { options } = validateDriverOptions('xtremio', xtremio, config, secrets);
  const context = { backendName: 'xtremio', log: createLogger('t'), secrets, dataDir: '/tmp', rootHelper: '', serving: true, host: refusingHost('this test attaches nothing') };
  const driver = xtremio.create(options, context, volumeDriver);
  await driver.setup();
  return { driver, secrets };
}

/** Runs `test` with a driver against `xms`, closing it whatever happens; CHAP is reset after. */
async function withDriver(xms: XmsEmulator, test: (started: Started) => Promise<void>, extra: Record<string, unknown> = {}): Promise<void> {
  const started = await startDriver(xms, extra);
  try {
    await test(started);
  } finally {
    xms.chapAuthenticationMode = 'disabled';
    xms.chapDiscoveryMode = 'disabled';
    await started.driver.close();
  }
}

const newVolume = (size = 1): CreateVolumeRequest => ({ id: randomUUID(), size, pool_name: 'xtremio', name: '', description: '', bootable: false });
const newConnector = (extra: Partial<Connector> = {}): Connector => ({
  host: 'compute-1',
  ip: '127.0.0.1',
  initiator: `iqn.1993-08.org.debian:01:${randomUUID().slice(0, 12)}`,
  ...extra,
});
const AUTH_KEYS = ['auth_method', 'auth_username', 'auth_password', 'discovery_auth_method', 'discovery_auth_username', 'discovery_auth_password'];

async function rejection(promise: Promise<unknown>): Promise<StorageError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(StorageError);
  return error as StorageError;
}

for (const { api, paths, xms } of arrays) {
  describe(`XtremIO iSCSI connections over the ${api} API`, () => {
    const mapsOf = (volumeId: string) => [...xms.lunMaps.values()].filter((map) => map.volume.name === volumeId);

    it('connects with the group and initiator named after the IQN, and the portal, IQN and LUN of the array', async () => {
      await withDriver(xms, async ({ driver }) => {
        const volume = newVolume();
        await driver.createVolume(volume);
        const connector = newConnector();
        expect(driver.exports!.requiredConnectorKeys).toEqual(['initiator']);
        expect(driver.exports!.unavailable).toBeUndefined();
        const before = xms.requests.length;
        expect(await driver.exports!.createExport(volume, connector)).toBeUndefined();
        expect(xms.requests.length).toBe(before); // Cinder's create_export does nothing on the array

        const info = await driver.exports!.initializeConnection(volume, connector);
        const group = xms.initiatorGroups.get(connector.initiator!);
        expect(group).toBeDefined();
        const initiator = xms.initiators.get(connector.initiator!);
        expect(initiator?.portAddress).toBe(connector.initiator);
        expect(initiator?.group).toBe(group);
        const [map] = mapsOf(volume.id);
        expect(map?.group).toBe(group);

        expect(info.driver_volume_type).toBe('iscsi');
        const portal = xms.iscsiPortals.find((p) => `${p.ipAddr.split('/')[0]}:${p.ipPort}` === info.data.target_portal);
        expect(portal, `portal ${String(info.data.target_portal)} is one of the array's`).toBeDefined();
        expect(info.data).toMatchObject({ target_discovered: false, target_iqn: portal!.portAddress, target_lun: map.lun });
        expect(Object.keys(info.data).slice(0, 4)).toEqual(['target_discovered', 'target_iqn', 'target_lun', 'target_portal']);
        expect(info.data).not.toHaveProperty('volume_id');
        expect(info.data.target_portal).toMatch(/^127\.0\.0\.\d+:3260$/);
        for (const key of AUTH_KEYS) expect(info.data).not.toHaveProperty(key); // CHAP is off on the cluster
        if (api === 'v1') {
          expect(xms.requests).toContain(`GET ${paths}/initiators?name=${encodeURIComponent(connector.initiator!)}`);
        } else {
          expect(xms.requests).toContain(`GET ${paths}/initiators?filter=${encodeURIComponent(`port-address:eq:${connector.initiator}`)}&full=1&cluster-name=${xms.clusterName}`);
        }
        await driver.exports!.terminateConnection(volume, connector, false);
        await driver.deleteVolume(volume);
      });
    });

    it('gives a second volume to the same initiator the same group and another LUN, and reuses an existing map', async () => {
      await withDriver(xms, async ({ driver }) => {
        const [first, second] = [newVolume(), newVolume()];
        await driver.createVolume(first);
        await driver.createVolume(second);
        const connector = newConnector();
        const groupPosts = () => xms.requests.filter((line) => line.startsWith(`POST ${paths}/initiator-groups`)).length;
        const initiatorPosts = () => xms.requests.filter((line) => line.startsWith(`POST ${paths}/initiators`)).length;
        const [groupsBefore, initiatorsBefore] = [groupPosts(), initiatorPosts()];

        const one = await driver.exports!.initializeConnection(first, connector);
        const two = await driver.exports!.initializeConnection(second, connector);
        expect(groupPosts()).toBe(groupsBefore + 1);
        expect(initiatorPosts()).toBe(initiatorsBefore + 1);
        const group = xms.initiatorGroups.get(connector.initiator!)!;
        expect(
          xms
            .groupMaps(group)
            .map((map) => map.volume.name)
            .sort(),
        ).toEqual([first.id, second.id].sort());
        expect(one.data.target_lun).toBe(mapsOf(first.id)[0].lun);
        expect(two.data.target_lun).toBe(mapsOf(second.id)[0].lun);
        expect(two.data.target_lun).not.toBe(one.data.target_lun);

        // Connecting again: the array answers already mapped, and the map it has is used.
        const again = await driver.exports!.initializeConnection(first, connector);
        expect(again.data.target_lun).toBe(one.data.target_lun);
        expect(mapsOf(first.id)).toHaveLength(1);

        for (const volume of [first, second]) await driver.exports!.terminateConnection(volume, connector, false);
        for (const volume of [first, second]) await driver.deleteVolume(volume);
      });
    });

    it('with CHAP on, sets generated credentials on the new initiator and returns them (masked in logs)', async () => {
      await withDriver(xms, async ({ driver, secrets }) => {
        xms.chapAuthenticationMode = 'initiator';
        xms.chapDiscoveryMode = 'initiator';
        const volume = newVolume();
        await driver.createVolume(volume);
        const connector = newConnector();
        const info = await driver.exports!.initializeConnection(volume, connector);
        const initiator = xms.initiators.get(connector.initiator!)!;
        expect(info.data).toMatchObject({
          auth_method: 'CHAP',
          auth_username: 'chap_user',
          auth_password: initiator.chapAuthenticationPassword,
          discovery_auth_method: 'CHAP',
          discovery_auth_username: 'chap_user',
          discovery_auth_password: initiator.chapDiscoveryPassword,
        });
        expect(initiator.chapAuthenticationUser).toBe('chap_user');
        for (const password of [info.data.auth_password, info.data.discovery_auth_password] as string[]) {
          // Cinder's _get_password: 12 distinct upper-case letters and digits.
          expect(password).toMatch(/^[A-Z0-9]{12}$/);
          expect(new Set(password).size).toBe(12);
          expect(secrets.redact(`chap ${password}`)).toBe('chap ***');
        }
        expect(info.data.auth_password).not.toBe(info.data.discovery_auth_password);

        // Another volume for the same initiator: the credentials the array holds.
        const second = newVolume();
        await driver.createVolume(second);
        const again = await driver.exports!.initializeConnection(second, connector);
        expect(again.data.auth_password).toBe(info.data.auth_password);
        expect(again.data.discovery_auth_password).toBe(info.data.discovery_auth_password);

        for (const v of [volume, second]) await driver.exports!.terminateConnection(v, connector, false);
        for (const v of [volume, second]) await driver.deleteVolume(v);
      });
    });

    it('adds credentials to an initiator made before CHAP was turned on', async () => {
      await withDriver(xms, async ({ driver }) => {
        const [first, second] = [newVolume(), newVolume()];
        await driver.createVolume(first);
        await driver.createVolume(second);
        const connector = newConnector();
        const plain = await driver.exports!.initializeConnection(first, connector);
        expect(plain.data).not.toHaveProperty('auth_password');
        const initiator = xms.initiators.get(connector.initiator!)!;
        expect(initiator.chapAuthenticationPassword ?? null).toBeNull();

        xms.chapAuthenticationMode = 'initiator';
        const info = await driver.exports!.initializeConnection(second, connector);
        expect(xms.requests).toContain(`PUT ${paths}/initiators/${initiator.index}`);
        expect(info.data.auth_method).toBe('CHAP');
        expect(info.data.auth_password).toMatch(/^[A-Z0-9]{12}$/);
        expect(initiator.chapAuthenticationPassword).toBe(info.data.auth_password);
        expect(info.data).not.toHaveProperty('discovery_auth_method'); // discovery CHAP stays off

        for (const v of [first, second]) await driver.exports!.terminateConnection(v, connector, false);
        for (const v of [first, second]) await driver.deleteVolume(v);
      });
    });

    it('returns every portal, IQN and LUN (multipath) with the LUN repeated', async () => {
      await withDriver(xms, async ({ driver }) => {
        const volume = newVolume();
        await driver.createVolume(volume);
        const connector = newConnector({ multipath: true });
        const info = await driver.exports!.initializeConnection(volume, connector);
        const lun = mapsOf(volume.id)[0].lun;
        expect(info.data.target_portals).toEqual(xms.iscsiPortals.map((p) => `${p.ipAddr.split('/')[0]}:3260`));
        expect(info.data.target_iqns).toEqual(xms.iscsiPortals.map((p) => p.portAddress));
        expect(info.data.target_luns).toEqual(xms.iscsiPortals.map(() => lun));
        await driver.exports!.terminateConnection(volume, connector, false);
        await driver.deleteVolume(volume);
      });
    });

    it('disconnects by removing the lun-map and keeps the group by default; twice, or when gone, succeeds', async () => {
      await withDriver(xms, async ({ driver }) => {
        const volume = newVolume();
        await driver.createVolume(volume);
        const connector = newConnector();
        await driver.exports!.initializeConnection(volume, connector);
        const group = xms.initiatorGroups.get(connector.initiator!)!;
        const mapName = `${xms.volumes.get(volume.id)!.index}_${group.index}_1`;

        await driver.exports!.terminateConnection(volume, connector, false);
        expect(mapsOf(volume.id)).toHaveLength(0);
        expect(xms.requests).toContain(`DELETE ${paths}/lun-maps?name=${mapName}${api === 'v1' ? '' : `&cluster-name=${xms.clusterName}`}`);
        expect(xms.initiatorGroups.get(connector.initiator!)).toBe(group); // xtremio_clean_unused_ig is false
        expect(xms.initiators.has(connector.initiator!)).toBe(true);

        await driver.exports!.terminateConnection(volume, connector, false); // already unmapped
        await driver.exports!.terminateConnection(volume, newConnector(), true); // an initiator the array never saw
        await driver.exports!.removeExport(volume);
        await driver.deleteVolume(volume);
        await driver.exports!.terminateConnection(volume, connector, false); // the volume is gone
      });
    });

    it('with xtremio_clean_unused_ig, deletes the group (and its initiator) once its last volume is disconnected', async () => {
      await withDriver(
        xms,
        async ({ driver }) => {
          const [first, second] = [newVolume(), newVolume()];
          await driver.createVolume(first);
          await driver.createVolume(second);
          const connector = newConnector();
          await driver.exports!.initializeConnection(first, connector);
          await driver.exports!.initializeConnection(second, connector);

          await driver.exports!.terminateConnection(first, connector, false);
          expect(xms.initiatorGroups.has(connector.initiator!)).toBe(true); // still maps the second volume
          await driver.exports!.terminateConnection(second, connector, false);
          expect(xms.initiatorGroups.has(connector.initiator!)).toBe(false);
          expect(xms.initiators.has(connector.initiator!)).toBe(false);
          await driver.exports!.terminateConnection(second, connector, false); // nothing left: still a success

          // Connecting again makes the group and the initiator anew.
          const info = await driver.exports!.initializeConnection(first, connector);
          expect(xms.initiatorGroups.has(connector.initiator!)).toBe(true);
          expect(info.data.target_lun).toBe(mapsOf(first.id)[0].lun);
          await driver.exports!.terminateConnection(first, connector, false);
          for (const v of [first, second]) await driver.deleteVolume(v);
        },
        { xtremio_clean_unused_ig: true },
      );
    });

    it('turns array refusals into StorageErrors that say what failed', async () => {
      await withDriver(xms, async ({ driver }) => {
        const volume = newVolume();
        await driver.createVolume(volume);
        const connector = newConnector();

        xms.answerError('lun_mapping_failed_internally', { method: 'POST', collection: 'lun-maps' });
        const refused = await rejection(driver.exports!.initializeConnection(volume, connector));
        expect(refused.code).toBe('BACKEND_UNAVAILABLE');
        expect(refused.message).toContain(`map volume ${volume.id} to initiator group ${connector.initiator}`);
        expect(refused.message).toContain('lun_mapping_failed_internally');
        expect(mapsOf(volume.id)).toHaveLength(0);

        const missing = newVolume();
        const notFound = await rejection(driver.exports!.initializeConnection(missing, connector));
        expect(notFound.code).toBe('NOT_FOUND');
        expect(notFound.message).toContain(missing.id);

        xms.answerError('cannot_delete_mapping', { method: 'DELETE', collection: 'lun-maps' });
        await driver.exports!.initializeConnection(volume, connector);
        const unmap = await rejection(driver.exports!.terminateConnection(volume, connector, false));
        expect(unmap.message).toContain('cannot_delete_mapping');
        expect(mapsOf(volume.id)).toHaveLength(1);
        await driver.exports!.terminateConnection(volume, connector, false);
        expect(mapsOf(volume.id)).toHaveLength(0);
        await driver.deleteVolume(volume);
      });
    });

    it('uses only the portals xtremio_ports allows, and says so when none is left', async () => {
      const [first, second] = xms.iscsiPortals.map((p) => p.ipAddr.split('/')[0]);
      await withDriver(
        xms,
        async ({ driver }) => {
          const volume = newVolume();
          await driver.createVolume(volume);
          const connector = newConnector();
          const info = await driver.exports!.initializeConnection(volume, connector);
          expect(info.data.target_portal).toBe(`${second}:3260`);
          expect(info.data.target_portals).toEqual([`${second}:3260`]);
          await driver.exports!.terminateConnection(volume, connector, false);
          await driver.deleteVolume(volume);
        },
        { xtremio_ports: ` ${second} ` },
      );
      await withDriver(
        xms,
        async ({ driver }) => {
          const volume = newVolume();
          await driver.createVolume(volume);
          const connector = newConnector();
          const error = await rejection(driver.exports!.initializeConnection(volume, connector));
          expect(error.message).toContain('no accessible iSCSI targets');
          await driver.exports!.terminateConnection(volume, connector, false);
          await driver.deleteVolume(volume);
        },
        { xtremio_ports: '127.0.0.99' },
      );
      expect(first).toBeDefined();
    });
  });
}

describe('XtremIO Fibre Channel exports', () => {
  it('need wwpns, and say FC connections are not implemented', async () => {
    const xms = arrays[0].xms;
    const { driver } = await startDriver(xms, {}, 'cinder.volume.drivers.dell_emc.xtremio.XtremIOFCDriver');
    try {
      expect(driver.exports!.requiredConnectorKeys).toEqual(['wwpns']);
      // The core refuses connections with this reason before asking the array anything.
      expect(driver.exports!.unavailable).toMatch(/Fibre Channel connections .* are not implemented/);
      const volume = newVolume();
      await driver.createVolume(volume);
      const error = await rejection(driver.exports!.initializeConnection(volume, { host: 'compute-1', wwpns: ['1234567890123456'] }));
      expect(error.code).toBe('UNSUPPORTED');
      // Nothing was mapped; disconnecting (WWPNs the array does not know) succeeds.
      await driver.exports!.terminateConnection(volume, { host: 'compute-1', wwpns: ['1234567890123456'] }, false);
      await driver.deleteVolume(volume);
    } finally {
      await driver.close();
    }
  });
});

describe('XtremIO connections through the server', () => {
  it('connects with CHAP, answers the password masked, and disconnects', async () => {
    const xms = arrays[0].xms;
    xms.chapAuthenticationMode = 'initiator';
    const server = await startMcpServer(
      {
        backends: [
          {
            volume_backend_name: 'xtremio',
            volume_driver: ISCSI,
            san_ip: xms.address,
            xtremio_cluster_name: xms.clusterName,
            san_login: 'xtremio_user',
            san_password: '${env:XTREMIO_PASSWORD}',
            driver_ssl_cert_path: xms.certs.caPath,
            xtremio_array_busy_retry_interval: 0,
            xtremio_clean_unused_ig: true,
          },
        ],
      },
      { env: { XTREMIO_PASSWORD: PASSWORD } },
    );
    try {
      const volume = (await server.call('create_volume', { backend: 'xtremio', size: 1 })).data;
      const connector = newConnector();
      const connected = await server.call('connect_volume', { volume_id: volume.id, connector });
      expect(connected.isError, connected.text).toBe(false);
      const initiator = xms.initiators.get(connector.initiator!)!;
      expect(initiator.chapAuthenticationPassword).toMatch(/^[A-Z0-9]{12}$/);
      expect(connected.data.connection_info.data).toMatchObject({ auth_method: 'CHAP', auth_username: 'chap_user', auth_password: '***' });
      expect(connected.text).not.toContain(initiator.chapAuthenticationPassword!);
      expect(connected.data.connection_info.data.target_lun).toBe([...xms.lunMaps.values()].find((map) => map.volume.name === volume.id)!.lun);

      const disconnected = await server.call('disconnect_volume', { connection_id: connected.data.id });
      expect(disconnected.isError, disconnected.text).toBe(false);
      expect([...xms.lunMaps.values()].some((map) => map.volume.name === volume.id)).toBe(false);
      expect(xms.initiatorGroups.has(connector.initiator!)).toBe(false);
      expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
    } finally {
      xms.chapAuthenticationMode = 'disabled';
      await server.close();
    }
  });
});
