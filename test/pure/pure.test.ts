import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PureEmulator } from '../emulators/pure/server.js';
import { ISCSI_ATTACH_HERE, defineBackendScenarios, mapsState, settledBackends } from '../helpers/scenarios.js';
import { startMcpServer } from '../helpers/server.js';

const TOKEN = 'c6a1f0e2-7d4b-4f3a-9e8c-pure-token-5521';
const array = new PureEmulator({ apiToken: TOKEN });
beforeAll(async () => {
  await array.start();
});
afterAll(async () => {
  await array.cleanup();
});

/** A Pure backend as a cinderlib user writes it, the token from the environment, pointed at the emulator and its test CA. */
const backend = (extra: Record<string, unknown> = {}) => ({
  volume_backend_name: 'pure',
  volume_driver: 'cinder.volume.drivers.pure.PureISCSIDriver',
  san_ip: array.address,
  pure_api_token: '${env:PURE_API_TOKEN}',
  driver_ssl_cert_path: array.certs.caPath,
  ...extra,
});
const env = { PURE_API_TOKEN: TOKEN };
const GIB = 1024 ** 3;
const data = {
  write: (id: string, text: string) => void (array.volumes.get(`volume-${id}-cinder`)!.content = text),
  read: (id: string) => array.volumes.get(`volume-${id}-cinder`)!.content ?? '',
};
const foreign = {
  make: (name: string, sizeGb: number) => array.addVolume(name, sizeGb),
  inUse: (name: string, sizeGb: number) => {
    array.addVolume(name, sizeGb);
    array.connections.push({ host: 'some-host', volume: name, lun: 9 });
    return () =>
      void array.connections.splice(
        array.connections.findIndex((c) => c.volume === name),
        1,
      );
  },
};
const arrayState = () => mapsState(array.volumes, array.snapshots, array.hosts, new Map(array.connections.map((c, i) => [i, c])));

defineBackendScenarios({
  label: 'Pure FlashArray (REST 2.x emulator)',
  backend: 'pure',
  makeConfig: () => ({ backends: [backend()] }),
  env: () => env,
  connections: { connect: 'works', attach: ISCSI_ATTACH_HERE },
  arrayState,
  arrayRequests: () => array.requests,
  data,
  foreign,
});

defineBackendScenarios({
  label: 'Pure FlashArray with CHAP and eradication, alias pure',
  backend: 'pure-chap',
  makeConfig: () => ({ backends: [backend({ volume_backend_name: 'pure-chap', volume_driver: 'pure', use_chap_auth: true, pure_eradicate_on_delete: true })] }),
  env: () => env,
  connections: { connect: 'works', attach: ISCSI_ATTACH_HERE },
  arrayState,
  arrayRequests: () => array.requests,
  data,
  foreign,
});

describe('Pure specifics', () => {
  it("reports Cinder's Pure stats from arrays/space in GiB, the data reduction as the ratio, and the array's counts", async () => {
    const server = await startMcpServer({ backends: [backend()] }, { env });
    try {
      const before = (await server.call('get_stats', { backend: 'pure', refresh: true })).data.stats;
      expect(before).toMatchObject({
        vendor_name: 'Pure Storage',
        driver_version: '22.0.iscsi',
        storage_protocol: 'iSCSI',
        thin_provisioning_support: true,
        total_capacity_gb: 10_240,
        max_over_subscription_ratio: 4.2,
        reserved_percentage: 0,
      });
      expect(before.free_capacity_gb).toBeCloseTo(10_240 - array.usedBytes() / GIB, 6);
      expect(before.pools[0]).toMatchObject({ pool_name: 'pure', total_capacity_gb: 10_240, max_over_subscription_ratio: 4.2 });
      const created = await server.call('create_volume', { backend: 'pure', size: 3 });
      const name = `volume-${created.data.id}-cinder`;
      expect(array.volumes.get(name)).toMatchObject({ provisioned: 3 * GIB, destroyed: false });
      const after = (await server.call('get_stats', { backend: 'pure', refresh: true })).data.stats;
      expect(after.provisioned_capacity_gb).toBe(before.provisioned_capacity_gb + 3);
      expect(after.total_volumes).toBe(before.total_volumes + 1);
      // The version is discovered, the session is made once, and sizes travel in bytes.
      expect(array.requests).toContain('GET /api/api_version');
      expect(array.requests).toContain(`POST /api/2.26/login`);
      expect(array.requests).toContain(`POST /api/2.26/volumes?names=${name}&with_default_protection=false`);
      expect(array.requests.some((line) => line.startsWith('GET /api/2.26/arrays/performance?end_time='))).toBe(true);
      await server.call('extend_volume', { volume_id: created.data.id, new_size: 5 });
      expect(array.volumes.get(name)?.provisioned).toBe(5 * GIB);
      // Deleted without eradication: destroyed on the array, its name and its space kept there.
      array.write(name, 2 * GIB);
      const usedBefore = array.usedBytes();
      expect((await server.call('delete_volume', { volume_id: created.data.id })).isError).toBe(false);
      expect(array.volumes.get(name)).toMatchObject({ destroyed: true });
      expect(array.usedBytes()).toBe(usedBefore);
      const stats = (await server.call('get_stats', { backend: 'pure', refresh: true })).data.stats;
      expect(stats.provisioned_capacity_gb).toBe(before.provisioned_capacity_gb);
    } finally {
      await server.close();
    }
  });

  it('uses max_over_subscription_ratio when pure_automatic_max_oversubscription_ratio is off, or the reduction is 100 or more', async () => {
    const server = await startMcpServer({ backends: [backend({ pure_automatic_max_oversubscription_ratio: false, max_over_subscription_ratio: 7.5 })] }, { env });
    try {
      expect((await server.call('get_stats', { backend: 'pure', refresh: true })).data.stats.max_over_subscription_ratio).toBe(7.5);
    } finally {
      await server.close();
    }
    const reduction = array.totalReduction;
    array.totalReduction = 250;
    const auto = await startMcpServer({ backends: [backend()] }, { env });
    try {
      expect((await auto.call('get_stats', { backend: 'pure', refresh: true })).data.stats.max_over_subscription_ratio).toBe(20);
    } finally {
      array.totalReduction = reduction;
      await auto.close();
    }
  });

  it('logs in again when the session expires, and keeps working', async () => {
    const server = await startMcpServer({ backends: [backend()] }, { env });
    try {
      const first = await server.call('create_volume', { backend: 'pure', size: 1 });
      expect(first.isError, first.text).toBe(false);
      const logins = array.logins;
      array.endSessions();
      const second = await server.call('create_volume', { backend: 'pure', size: 1 });
      expect(second.isError, second.text).toBe(false);
      expect(array.logins).toBe(logins + 1);
      array.endSessions();
      for (const volume of [first, second]) expect((await server.call('delete_volume', { volume_id: volume.data.id })).isError).toBe(false);
      expect(array.logins).toBe(logins + 2);
    } finally {
      await server.close();
    }
  });

  it('after a 5xx on create (the array having acted or not), leaves no volume on the array and an error record, not an available one', async () => {
    const server = await startMcpServer({ backends: [backend()] }, { env });
    try {
      await server.call('get_stats', { backend: 'pure' });
      for (const afterActing of [false, true]) {
        const before = [...array.volumes.keys()];
        array.inject({ method: 'POST', pathIncludes: '/volumes', status: 500, message: 'Internal server error.', afterActing });
        const failed = await server.call('create_volume', { backend: 'pure', size: 2 });
        expect(failed.text).toMatch(/^BACKEND_UNAVAILABLE: backend "pure": create volume volume-[0-9a-f-]+-cinder failed: HTTP 500: Internal server error\..* kept in status "error"/);
        expect([...array.volumes.keys()]).toEqual(before);
        const id = /record ([0-9a-f-]{36})/.exec(failed.text)![1];
        expect((await server.call('get_volume', { volume_id: id })).data.status).toBe('error');
        expect((await server.call('delete_volume', { volume_id: id })).isError).toBe(false);
      }
    } finally {
      array.clearFaults();
      await server.close();
    }
  });

  it('waits for a slow array, and pages through long lists', async () => {
    const paged = await new PureEmulator({ apiToken: TOKEN, pageSize: 2 }).start();
    const server = await startMcpServer({ backends: [backend({ san_ip: paged.address, driver_ssl_cert_path: paged.certs.caPath })] }, { env });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await server.call('create_volume', { backend: 'pure', size: 1 })).data.id);
      paged.slowDown({ method: 'GET', pathIncludes: '/arrays/space', ms: 400 });
      const started = Date.now();
      const stats = (await server.call('get_stats', { backend: 'pure', refresh: true })).data.stats;
      expect(Date.now() - started).toBeGreaterThanOrEqual(400);
      expect(stats.total_volumes).toBe(5);
      expect(paged.requests.filter((line) => line.startsWith('GET /api/2.26/volumes?continuation_token=')).length).toBeGreaterThanOrEqual(2);
      for (const id of ids) await server.call('delete_volume', { volume_id: id });
    } finally {
      await server.close();
      await paged.cleanup();
    }
  });

  it('says the token is wrong without showing it; an old Purity, an unreachable or unverified array say why', async () => {
    array.echoRequestHeaders(true);
    const wrong = 'Wrong-Pure-token-canary-7301';
    const old = await new PureEmulator({ apiToken: TOKEN, purityVersion: '5.3.10' }).start();
    const server = await startMcpServer(
      {
        backends: [
          { ...backend({ pure_api_token: wrong }), volume_backend_name: 'wrong' },
          { ...backend({ san_ip: old.address, driver_ssl_cert_path: old.certs.caPath }), volume_backend_name: 'old' },
          { ...backend({ san_ip: '127.0.0.1:1' }), volume_backend_name: 'gone' },
          { ...backend({ driver_ssl_cert_path: undefined }), volume_backend_name: 'untrusted' },
          { ...backend({ driver_ssl_cert_path: undefined, driver_ssl_cert_verify: false }), volume_backend_name: 'lax' },
        ],
      },
      { env },
    );
    try {
      const { backends } = (await settledBackends(server)).data;
      const byId = Object.fromEntries(backends.map((b: { id: string }) => [b.id, b]));
      expect(byId.wrong.error).toMatch(/backend "wrong": log in failed: HTTP 401: invalid API token; check pure_api_token/);
      expect(byId.old.error).toMatch(/FlashArray Purity version less than 6\.1\.0 unsupported \(the array runs 5\.3\.10\)/);
      expect(byId.gone.error).toMatch(/cannot reach https:\/\/127\.0\.0\.1:1: ECONNREFUSED/);
      expect(byId.untrusted.error).toMatch(/TLS certificate .* was refused .*driver_ssl_cert_verify: false/);
      expect(byId.lax.initialized).toBe(true);
      const everything = JSON.stringify(backends) + server.stderr() + (await server.call('get_stats', { backend: 'wrong' })).text;
      for (const secret of [wrong, TOKEN]) expect(everything).not.toContain(secret);
    } finally {
      array.echoRequestHeaders(false);
      await server.close();
      await old.cleanup();
    }
  });
});
