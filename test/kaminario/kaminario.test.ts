import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { K2Emulator } from '../emulators/kaminario/server.js';
import { ISCSI_ATTACH_HERE, defineBackendScenarios, mapsState, settledBackends } from '../helpers/scenarios.js';
import { startMcpServer } from '../helpers/server.js';

const PASSWORD = 'k2-Secret-pw-7731';
const k2 = new K2Emulator({ password: PASSWORD });
beforeAll(async () => {
  await k2.start();
});
afterAll(async () => {
  await k2.cleanup();
});

/** The seed's Kaminario backend, verbatim, pointed at the emulator and its test CA. */
const seedBackend = (extra: Record<string, unknown> = {}) => ({
  volume_backend_name: 'kaminario',
  volume_driver: 'cinder.volume.drivers.kaminario.kaminario_iscsi.KaminarioISCSIDriver',
  san_ip: k2.address,
  san_login: 'admin',
  san_password: PASSWORD,
  driver_ssl_cert_path: k2.certs.caPath,
  kaminario_retry_interval: 0,
  ...extra,
});

const k2Volumes = () => [...k2.objects.get('volumes')!.values()].map((v) => v.name);
const k2Groups = () => [...k2.objects.get('volume_groups')!.values()].map((g) => g.name);

// Cinder's K2 driver copies volumes through the host, which needs a kernel iSCSI initiator: where
// there is none, copies are UNSUPPORTED (test/kaminario/connections.test.ts copies through a test host).
defineBackendScenarios({
  label: 'Kaminario K2 (emulator)',
  backend: 'kaminario',
  makeConfig: () => ({ backends: [seedBackend()] }),
  lifecycle: {
    snapshots: 'works',
    fromSnapshot: ISCSI_ATTACH_HERE === 'unsupported' ? 'unsupported' : 'fails here',
    clones: ISCSI_ATTACH_HERE === 'unsupported' ? 'unsupported' : 'fails here',
  },
  connections: { connect: 'works', attach: ISCSI_ATTACH_HERE },
  capabilities: { snapshots: true, clones: true, exports: true },
  arrayState: () => mapsState(k2.objects),
  arrayRequests: () => k2.requests,
  foreign: { make: (name, sizeGb) => k2.addVolume(name, sizeGb), inUse: (name, sizeGb) => (k2.addVolume(name, sizeGb, true), () => undefined) },
  revert: ISCSI_ATTACH_HERE === 'unsupported' ? 'unsupported' : 'fails here',
});

describe('Kaminario specifics', () => {
  it("reports Cinder's Kaminario stats with KiB converted to GiB, and capacity moves with volumes", async () => {
    const server = await startMcpServer({ backends: [seedBackend()] });
    try {
      const before = (await server.call('get_stats', { backend: 'kaminario', refresh: true })).data.stats;
      expect(before).toMatchObject({
        vendor_name: 'Kaminario',
        driver_version: '1.4',
        storage_protocol: 'iSCSI',
        total_capacity_gb: 20000,
        free_capacity_gb: 18000,
        thin_provisioning_support: true,
        thick_provisioning_support: false,
      });
      expect(before.pools[0]).toMatchObject({ pool_name: 'kaminario', total_capacity_gb: 20000, free_capacity_gb: 18000 });
      const created = await server.call('create_volume', { backend: 'kaminario', size: 4 });
      const id = created.data.id as string;
      // One volume group and one volume per Cinder volume, named after its id, sized in KiB.
      const group = k2.named('volume_groups', `cvg-${id}`);
      expect(group).toMatchObject({ quota: 0, is_dedup: true });
      expect(k2.named('volumes', `cv-${id}`)).toMatchObject({ size: 4 * 1024 * 1024, volume_group: { ref: `/volume_groups/${group!.id}` } });
      const after = (await server.call('get_stats', { backend: 'kaminario', refresh: true })).data.stats;
      expect(after.provisioned_capacity_gb).toBe(before.provisioned_capacity_gb + 4);
      expect(after.total_volumes).toBe(before.total_volumes + 1);
      await server.call('extend_volume', { volume_id: id, new_size: 6 });
      expect(k2.named('volumes', `cv-${id}`)?.size).toBe(6 * 1024 * 1024);
      expect(k2.requests.some((line) => line.startsWith('PATCH /api/v2/volumes/'))).toBe(true);
      await server.call('delete_volume', { volume_id: id });
      expect(k2Volumes()).not.toContain(`cv-${id}`);
      expect(k2Groups()).not.toContain(`cvg-${id}`);
    } finally {
      await server.close();
    }
  });

  it('leaves nothing behind when the second step of a create fails', async () => {
    const server = await startMcpServer({ backends: [seedBackend({ volume_driver: 'kaminario' })] });
    try {
      await server.call('get_stats', { backend: 'kaminario' });
      const groupsBefore = k2Groups();
      const volumesBefore = k2Volumes();
      k2.inject({ status: 400, method: 'POST', resource: 'volumes', count: 1, message: 'size: Volume size exceeds the system limit' });
      const failed = await server.call('create_volume', { backend: 'kaminario', size: 2 });
      expect(failed.text).toMatch(
        /^BACKEND_UNAVAILABLE: backend "kaminario": create volume cv-[0-9a-f-]+ failed: HTTP 400: size: Volume size exceeds the system limit\. The volume record .* is kept in status "error"/,
      );
      expect(k2Groups()).toEqual(groupsBefore); // the volume group made in step one was rolled back
      expect(k2Volumes()).toEqual(volumesBefore);
      const id = /record ([0-9a-f-]{36})/.exec(failed.text)![1];
      expect((await server.call('delete_volume', { volume_id: id })).isError).toBe(false);
    } finally {
      k2.clearFaults();
      await server.close();
    }
  });

  it('retries while the K2 says MC_ERR_BUSY (or answers 5xx), then gives up with BACKEND_BUSY', async () => {
    const server = await startMcpServer({ backends: [seedBackend({ kaminario_retry_count: 3 })] });
    try {
      await server.call('get_stats', { backend: 'kaminario' });
      const busy = { status: 400, method: 'POST', resource: 'volume_groups', message: 'MC_ERR_BUSY: the system is busy, try again' };
      k2.inject({ ...busy, count: 1 });
      k2.inject({ status: 503, method: 'POST', resource: 'volume_groups', count: 1, message: 'Service unavailable' });
      const patient = await server.call('create_volume', { backend: 'kaminario', size: 1 });
      expect(patient.isError, patient.text).toBe(false);
      k2.inject({ ...busy, count: 5 });
      const gaveUp = await server.call('create_volume', { backend: 'kaminario', size: 1 });
      expect(gaveUp.text).toMatch(/^BACKEND_BUSY: backend "kaminario": create volume group cvg-.*: the array stayed busy after 3 attempts \(MC_ERR_BUSY/);
      k2.clearFaults();
      await server.call('delete_volume', { volume_id: patient.data.id });
    } finally {
      k2.clearFaults();
      await server.close();
    }
  });

  it('reports FC for the FC driver path', async () => {
    const server = await startMcpServer({ backends: [seedBackend({ volume_driver: 'cinder.volume.drivers.kaminario.kaminario_fc.KaminarioFCDriver' })] });
    try {
      expect((await server.call('get_stats', { backend: 'kaminario' })).data.stats.storage_protocol).toBe('FC');
    } finally {
      await server.close();
    }
  });

  it('says the password is wrong without ever showing it; unreachable and unverified arrays say why', async () => {
    k2.echoRequestHeaders(true);
    const wrong = 'Wrong-K2-canary-5521';
    const server = await startMcpServer({
      backends: [
        { ...seedBackend({ san_password: wrong }), volume_backend_name: 'wrong' },
        { ...seedBackend({ san_ip: '127.0.0.1:1' }), volume_backend_name: 'gone' },
        { ...seedBackend({ driver_ssl_cert_path: undefined }), volume_backend_name: 'untrusted' },
        { ...seedBackend({ driver_ssl_cert_path: undefined, driver_ssl_cert_verify: false }), volume_backend_name: 'lax' },
      ],
    });
    try {
      const { backends } = (await settledBackends(server)).data;
      const byId = Object.fromEntries(backends.map((b: { id: string }) => [b.id, b]));
      expect(byId.wrong.error).toMatch(
        /backend "wrong": discover resources failed: HTTP 401: Authentication credentials were not provided or are incorrect; check san_login and san_password/,
      );
      expect(byId.gone.error).toMatch(/cannot reach https:\/\/127\.0\.0\.1:1: ECONNREFUSED/);
      expect(byId.untrusted.error).toMatch(/TLS certificate .* was refused .*driver_ssl_cert_verify: false/);
      expect(byId.lax.initialized).toBe(true);
      const everything = JSON.stringify(backends) + server.stderr();
      for (const secret of [wrong, PASSWORD, Buffer.from(`admin:${wrong}`).toString('base64')]) expect(everything).not.toContain(secret);
    } finally {
      k2.echoRequestHeaders(false);
      await server.close();
    }
  });

  it('refuses an array whose REST API is older than 2.2.0', async () => {
    const old = await new K2Emulator({ restApiVersion: '2.1.9' }).start();
    const server = await startMcpServer({ backends: [{ ...seedBackend(), san_ip: old.address, san_password: old.password, driver_ssl_cert_path: old.certs.caPath }] });
    try {
      const { backends } = (await settledBackends(server)).data;
      expect(backends[0].error).toMatch(/K2 rest api version should be >= 2\.2\.0, the array has 2\.1\.9/);
    } finally {
      await server.close();
      await old.cleanup();
    }
  });
});
