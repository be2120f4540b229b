import { refusingHost } from '../helpers/refusing-host.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import xtremio from '../../drivers/xtremio/index.js';
import { validateDriverOptions } from '../../src/config/driver-options.js';
import { StorageError } from '../../src/base/errors.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { XmsEmulator } from '../emulators/xtremio/server.js';
import { ISCSI_ATTACH_HERE, defineBackendScenarios, mapsState } from '../helpers/scenarios.js';
import { startMcpServer } from '../helpers/server.js';

const PASSWORD = 'xms-Secret-pw-4411';
const xms = new XmsEmulator({ password: PASSWORD });
beforeAll(async () => {
  await xms.start();
});
afterAll(async () => {
  await xms.cleanup();
});

/** The seed's XtremIO backend, verbatim, pointed at the emulator and its test CA. */
const seedBackend = (extra: Record<string, unknown> = {}) => ({
  volume_backend_name: 'xtremio',
  volume_driver: 'cinder.volume.drivers.dell_emc.xtremio.XtremIOISCSIDriver',
  san_ip: xms.address,
  xtremio_cluster_name: 'xtremio_cluster',
  san_login: 'xtremio_user',
  san_password: '${env:XTREMIO_PASSWORD}',
  driver_ssl_cert_path: xms.certs.caPath,
  xtremio_array_busy_retry_interval: 0,
  ...extra,
});
const env = { XTREMIO_PASSWORD: PASSWORD };

defineBackendScenarios({
  label: 'XtremIO (XMS emulator)',
  backend: 'xtremio',
  makeConfig: () => ({ backends: [seedBackend()] }),
  env: () => env,
  connections: { connect: 'works', attach: ISCSI_ATTACH_HERE },
  arrayState: () => mapsState(xms.volumes, xms.snapshotSets, xms.initiatorGroups, xms.initiators, xms.lunMaps),
  arrayRequests: () => xms.requests,
  foreign: { make: (name, sizeGb) => xms.addVolume(name, sizeGb), inUse: (name, sizeGb) => (xms.addVolume(name, sizeGb, true), () => undefined) },
  data: { write: (id, text) => void (xms.volumes.get(id)!.content = text), read: (id) => xms.volumes.get(id)!.content ?? '' },
});

describe('XtremIO specifics', () => {
  it("reports Cinder's XtremIO stats with KiB converted to GiB, and capacity moves with volumes", async () => {
    const server = await startMcpServer({ backends: [seedBackend()] }, { env });
    try {
      const before = (await server.call('get_stats', { backend: 'xtremio', refresh: true })).data.stats;
      expect(before).toMatchObject({ vendor_name: 'Dell EMC', driver_version: '1.0.13', storage_protocol: 'iSCSI', thin_provisioning_support: true, consistencygroup_support: true });
      expect(before.total_capacity_gb).toBe(8000);
      expect(before.free_capacity_gb).toBe(7500);
      expect(before.pools[0]).toMatchObject({ pool_name: 'xtremio', total_capacity_gb: 8000, free_capacity_gb: 7500, max_over_subscription_ratio: 20 });
      const created = await server.call('create_volume', { backend: 'xtremio', size: 3 });
      expect(xms.volumes.get(created.data.id)?.sizeKib).toBe(3 * 1024 * 1024);
      const after = (await server.call('get_stats', { backend: 'xtremio', refresh: true })).data.stats;
      expect(after.provisioned_capacity_gb).toBe(before.provisioned_capacity_gb + 3);
      // From XMS 4 on, the driver speaks v2 scoped to the configured cluster.
      expect(xms.requests).toContain('GET /api/json/v2/types/clusters?name=xtremio_cluster&cluster-name=xtremio_cluster');
      await server.call('extend_volume', { volume_id: created.data.id, new_size: 5 });
      expect(xms.volumes.get(created.data.id)?.sizeKib).toBe(5 * 1024 * 1024);
      await server.call('delete_volume', { volume_id: created.data.id });
      expect(xms.volumes.has(created.data.id)).toBe(false);
    } finally {
      await server.close();
    }
  });

  it('reports FC for the FC driver path', async () => {
    const server = await startMcpServer({ backends: [seedBackend({ volume_driver: 'cinder.volume.drivers.dell_emc.xtremio.XtremIOFCDriver' })] }, { env });
    try {
      expect((await server.call('get_stats', { backend: 'xtremio' })).data.stats.storage_protocol).toBe('FC');
    } finally {
      await server.close();
    }
  });

  it('keeps duplicate display names apart, and refuses a duplicate array name', async () => {
    const server = await startMcpServer({ backends: [seedBackend()] }, { env });
    try {
      const one = await server.call('create_volume', { backend: 'xtremio', size: 1, name: 'twin' });
      const two = await server.call('create_volume', { backend: 'xtremio', size: 1, name: 'twin' });
      expect(one.data.id).not.toBe(two.data.id);
      expect(xms.volumes.has(one.data.id) && xms.volumes.has(two.data.id)).toBe(true);
      for (const volume of [one, two]) await server.call('delete_volume', { volume_id: volume.data.id });
    } finally {
      await server.close();
    }
    // The array's own uniqueness rule, straight through the driver.
    const secrets = new SecretRegistry();
    const { options } = validateDriverOptions('xtremio', xtremio, { ...seedBackend(), san_password: PASSWORD }, secrets);
    const driver = xtremio.create(
      options,
      { backendName: 'xtremio', log: createLogger('t'), secrets, dataDir: '/tmp', rootHelper: '', serving: true, host: refusingHost('this test attaches nothing') },
      'xtremio',
    );
    await driver.setup();
    const volume = { id: '5a1d3c84-1111-4c2b-9c55-0d7a5b1e2f30', size: 1, pool_name: 'xtremio', name: '', description: '', bootable: false };
    await driver.createVolume(volume);
    await expect(driver.createVolume(volume)).rejects.toMatchObject({ code: 'ALREADY_EXISTS', message: expect.stringMatching(/vol_obj_name_not_unique/) });
    await driver.deleteVolume(volume);
    await driver.deleteVolume(volume); // already gone counts as deleted
    await driver.close();
  });

  it('retries while the array is busy, up to xtremio_array_busy_retry_count', async () => {
    const server = await startMcpServer({ backends: [seedBackend({ xtremio_array_busy_retry_count: 3 })] }, { env });
    try {
      await server.call('get_stats', { backend: 'xtremio' });
      const posts = () => xms.requests.filter((line) => line.startsWith('POST')).length;
      let start = posts();
      xms.answerBusy(2, 'POST');
      const patient = await server.call('create_volume', { backend: 'xtremio', size: 1 });
      expect(patient.isError, patient.text).toBe(false);
      expect(posts() - start).toBe(3);
      start = posts();
      xms.answerBusy(10, 'POST');
      const gaveUp = await server.call('create_volume', { backend: 'xtremio', size: 1 });
      expect(gaveUp.text).toMatch(/^BACKEND_BUSY: backend "xtremio": create volume [0-9a-f-]+: the array stayed busy after 3 attempts \(system_is_busy\)/);
      expect(posts() - start).toBe(3);
      xms.answerBusy(10); // busy for everything: the capacity check cannot read stats, nothing is recorded
      const volumesBefore = (await server.call('list_volumes', { backend: 'xtremio' })).data.volumes.length;
      const early = await server.call('create_volume', { backend: 'xtremio', size: 1 });
      expect(early.text).toMatch(/^BACKEND_BUSY: backend "xtremio": read cluster xtremio_cluster: the array stayed busy after 3 attempts/);
      expect((await server.call('list_volumes', { backend: 'xtremio' })).data.volumes.length).toBe(volumesBefore);
      xms.answerBusy(0);
      const id = /record ([0-9a-f-]{36})/.exec(gaveUp.text)![1];
      expect((await server.call('get_volume', { volume_id: id })).data.status).toBe('error');
      expect((await server.call('delete_volume', { volume_id: id })).isError).toBe(false);
      xms.answerServerError(1, 'PUT'); // not "busy": no retry, a clear failure
      const broken = await server.call('extend_volume', { volume_id: patient.data.id, new_size: 2 });
      expect(broken.text).toMatch(/^BACKEND_UNAVAILABLE: backend "xtremio": extend volume .* failed: HTTP 500: internal_error/);
      await server.call('delete_volume', { volume_id: patient.data.id });
    } finally {
      xms.answerBusy(0);
      xms.answerServerError(0);
      await server.close();
    }
  });

  it('says the password is wrong without ever showing it, even when the array echoes headers', async () => {
    xms.echoRequestHeaders(true);
    const wrong = 'Wrong-Pa55-canary-889';
    const server = await startMcpServer({ backends: [seedBackend({ san_password: wrong })] }, { env });
    try {
      const { backends } = (await server.call('list_backends')).data;
      expect(backends[0].initialized).toBe(false);
      expect(backends[0].error).toMatch(/backend "xtremio": list clusters failed: HTTP 401: Unauthorized; check san_login and san_password/);
      const everything = JSON.stringify(backends) + server.stderr() + (await server.call('get_stats', { backend: 'xtremio' })).text;
      for (const secret of [wrong, Buffer.from(`xtremio_user:${wrong}`).toString('base64'), PASSWORD]) expect(everything).not.toContain(secret);
    } finally {
      xms.echoRequestHeaders(false);
      await server.close();
    }
  });

  it('verifies the array certificate unless told not to, and says which option to set', async () => {
    const server = await startMcpServer(
      {
        backends: [
          { ...seedBackend({ driver_ssl_cert_path: undefined }), volume_backend_name: 'strict' },
          { ...seedBackend({ driver_ssl_cert_path: undefined, driver_ssl_cert_verify: false }), volume_backend_name: 'lax' },
          { ...seedBackend({ san_ip: '127.0.0.1:1' }), volume_backend_name: 'gone' },
        ],
      },
      { env },
    );
    try {
      const { backends } = (await server.call('list_backends')).data;
      const byId = Object.fromEntries(backends.map((b: { id: string }) => [b.id, b]));
      expect(byId.strict.initialized).toBe(false);
      expect(byId.strict.error).toMatch(
        /TLS certificate of https:\/\/127\.0\.0\.1:\d+ was refused .*set driver_ssl_cert_path to the array's CA bundle, or driver_ssl_cert_verify: false/,
      );
      expect(byId.lax.initialized).toBe(true);
      expect(byId.gone.initialized).toBe(false);
      expect(byId.gone.error).toMatch(/cannot reach https:\/\/127\.0\.0\.1:1: ECONNREFUSED/);
    } finally {
      await server.close();
    }
  });

  it('names an unknown cluster and lists the real ones', async () => {
    const server = await startMcpServer({ backends: [seedBackend({ xtremio_cluster_name: 'other' })] }, { env });
    try {
      const { backends } = (await server.call('list_backends')).data;
      expect(backends[0].error).toMatch(/xtremio_cluster_name "other" is not a cluster of this XMS; its clusters are: xtremio_cluster/);
    } finally {
      await server.close();
    }
  });
});

it('exposes StorageError codes the contract lists', () => {
  expect(new StorageError('BACKEND_BUSY', 'x').toClientText()).toBe('BACKEND_BUSY: x');
});
