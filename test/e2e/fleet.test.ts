import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XmsEmulator } from '../emulators/xtremio/server.js';
import { RawMcpServer, toolText, type RawAnswer } from '../helpers/raw-server.js';
import { postgresPrerequisites, startPostgres, type PostgresFixture } from '../postgres/fixture.js';

/**
 * Contract section 16 with two and three real server processes on one real PostgreSQL:
 * - a `file` folder they share (a tmpfs mounted for the test) is served by every server, its
 *   capacity decided across them (never overbooked), any server deleting what another made;
 * - servers whose backend of one name differs: the later one serves it `initialized: false`,
 *   naming the option; options that are not the backend's identity (retry counts, secrets) may
 *   differ, and a secret's value never shows.
 */
const GIB = 1024 ** 3;
const POOL_GB = 20;
const PASSWORD = 'xms-Fleet-pw-7731';

function prerequisites(): string | undefined {
  const missing = postgresPrerequisites();
  if (missing) return missing;
  if (process.getuid?.() !== 0) return 'needs root (to mount a tmpfs for the shared folder)';
  return undefined;
}

const missing = prerequisites();
const inCi = process.env.CI === 'true';

const data = (answer: RawAnswer) => {
  if (answer.result?.isError || answer.error) throw new Error(toolText(answer) ?? JSON.stringify(answer.error));
  return answer.result!.structuredContent;
};

if (missing && !inCi) {
  describe.skip(`a fleet of servers on one PostgreSQL (${missing})`, () => {
    it('runs where its prerequisites are', () => undefined);
  });
} else if (missing) {
  describe('a fleet of servers on one PostgreSQL', () => {
    it('has its prerequisites under CI', () => {
      throw new Error(`the fleet suite ${missing}; .ci/run must install and start PostgreSQL, and the tests run as root`);
    });
  });
} else {
  describe('a fleet of servers on one PostgreSQL', () => {
    let pg: PostgresFixture;
    let xms: XmsEmulator;
    let root: string;
    let shared: string;
    const servers: RawMcpServer[] = [];

    beforeAll(async () => {
      pg = await startPostgres();
      xms = await new XmsEmulator({ password: PASSWORD, physicalGb: 100, usedGb: 0 }).start();
      root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-fleet-'));
      shared = join(root, 'shared-folder');
      mkdirSync(shared);
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${POOL_GB}g,mode=0700`, 'tmpfs', shared]);
    }, 120_000);
    afterAll(async () => {
      await Promise.all(servers.map((server) => server.kill9()));
      if (shared && existsSync(shared)) spawnSync('umount', [shared]);
      await xms?.cleanup();
      await pg?.stop();
      if (root) rmSync(root, { recursive: true, force: true });
    });

    const start = async (host: string, url: string, backends: object[], env: Record<string, string> = {}) => {
      const path = join(root, `${host}.json`);
      writeFileSync(path, JSON.stringify({ global: { host, lease_seconds: 5, persistence_config: { storage: 'db', connection: url } }, backends }));
      const server = new RawMcpServer(path, { XDG_DATA_HOME: join(root, host), ...env });
      servers.push(server);
      await server.initialize();
      return server;
    };
    /** The backend as list_backends shows it once its initialization attempt has ended. */
    const backendOf = async (server: RawMcpServer, name: string) => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const listed = data(await server.call('list_backends', {})).backends as Array<{ id: string; initialized: boolean; error?: string; initializing?: boolean }>;
        const backend = listed.find((each) => each.id === name)!;
        if (!backend.initializing || Date.now() > deadline) return backend;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    };
    const imagesGb = () =>
      readdirSync(shared)
        .filter((name) => name.startsWith('volume-'))
        .reduce((sum, name) => sum + statSync(join(shared, name)).size / GIB, 0);

    it('serves one shared folder from three servers, never overbooking it, each deleting what another made', async () => {
      const url = await pg.createDatabase('fleet_folder');
      const files = { volume_backend_name: 'shared', volume_driver: 'file', volumes_dir: shared, max_over_subscription_ratio: 1, reserved_percentage: 0 };
      const fleet = [await start('fleet-a', url, [files]), await start('fleet-b', url, [files]), await start('fleet-c', url, [files])];
      for (const server of fleet) expect(await backendOf(server, 'shared')).toMatchObject({ initialized: true });
      // The folder's identity is kept in the folder itself: every server names one capacity domain by it.
      expect(readFileSync(join(shared, '.cinderlib-mcp.folder-id'), 'utf8').trim()).toMatch(/^[0-9a-f-]{36}$/);

      const answers = await Promise.all(Array.from({ length: 15 }, (_, i) => fleet[i % 3].call('create_volume', { backend: 'shared', size: 2, name: `race-${i}` }, 60_000)));
      const made = answers.filter((answer) => !answer.result?.isError);
      for (const answer of answers.filter((answer) => answer.result?.isError)) expect(toolText(answer)).toMatch(/^OUT_OF_CAPACITY: /);
      expect(made.length).toBeGreaterThan(0);
      expect(made.length).toBeLessThanOrEqual(POOL_GB / 2);
      expect(imagesGb()).toBeLessThanOrEqual(POOL_GB);
      // Whatever the race left, the folder fills to exactly its size, and not one GiB beyond.
      let more: RawAnswer;
      let filled = made.length;
      while (!(more = await fleet[filled % 3].call('create_volume', { backend: 'shared', size: 2 }, 60_000)).result?.isError) filled++;
      expect(toolText(more)).toMatch(/^OUT_OF_CAPACITY: /);
      expect(filled).toBe(POOL_GB / 2);
      expect(imagesGb()).toBe(POOL_GB);

      // Every server lists every volume; one made through A is deleted through C, its file with it.
      const volumes = data(await fleet[1].call('list_volumes', { backend: 'shared' })).volumes as Array<{ id: string }>;
      expect(volumes).toHaveLength(POOL_GB / 2);
      const first = data(made[0]);
      const madeBy = fleet[0];
      expect(data(await madeBy.call('get_volume', { volume_id: first.id })).status).toBe('available');
      expect(data(await fleet[2].call('delete_volume', { volume_id: first.id })).deleted).toBe(true);
      expect(existsSync(join(shared, `volume-${first.id}`))).toBe(false);
      // The room it left is seen by every server: exactly one more 2 GiB volume fits.
      const again = data(await fleet[1].call('create_volume', { backend: 'shared', size: 2 }));
      expect(toolText(await fleet[0].call('create_volume', { backend: 'shared', size: 2 }))).toMatch(/^OUT_OF_CAPACITY: /);
      for (const volume of [...volumes.filter((v) => v.id !== first.id), again]) data(await fleet[volume.id.charCodeAt(0) % 3].call('delete_volume', { volume_id: volume.id }));
      expect(imagesGb()).toBe(0);
      for (const server of fleet) await server.close();
    });

    it('serves a backend that differs from the same backend on another live server as not initialized, naming the option', async () => {
      const url = await pg.createDatabase('fleet_agree');
      const [dirA, dirB] = [join(root, 'folder-a'), join(root, 'folder-b')];
      // Retry counts and the password are not the backend's identity: they may differ (the password comes from the environment here).
      const a = await start('agree-a', url, [{ volume_backend_name: 'f', volume_driver: 'file', volumes_dir: dirA }, xms.cinderBackend('xio', { xtremio_array_busy_retry_count: 3 })]);
      expect(await backendOf(a, 'f')).toMatchObject({ initialized: true });
      expect(await backendOf(a, 'xio')).toMatchObject({ initialized: true });
      const b = await start(
        'agree-b',
        url,
        [
          { volume_backend_name: 'f', volume_driver: 'cinderlib_mcp.drivers.file.FileDriver', volumes_dir: dirB },
          { ...xms.cinderBackend('xio', { xtremio_array_busy_retry_count: 9 }), san_password: '${env:FLEET_XMS_PASSWORD}' },
        ],
        { FLEET_XMS_PASSWORD: PASSWORD },
      );
      const refused = await backendOf(b, 'f');
      expect(refused.initialized).toBe(false);
      expect(refused.error).toMatch(
        /backend "f" is configured differently on server agree-a, which shares this metadata store and serves it: option volumes_dir \(here .*folder-b.*, there .*folder-a.*\)/,
      );
      expect(await backendOf(b, 'xio')).toMatchObject({ initialized: true });
      // B cannot act on A's "f": a volume made through A is not deleted through B.
      const volume = data(await a.call('create_volume', { backend: 'f', size: 1 }));
      expect(toolText(await b.call('delete_volume', { volume_id: volume.id }))).toMatch(/^BACKEND_UNAVAILABLE: backend "f" is not initialized: .*volumes_dir/);
      expect(existsSync(join(dirA, `volume-${volume.id}`))).toBe(true);
      expect(b.stderr).not.toContain(PASSWORD);
      expect(JSON.stringify(await backendOf(b, 'f'))).not.toContain(PASSWORD);

      // A third server whose array differs is refused naming san_ip; its secret never shows, whole or hashed.
      const c = await start('agree-c', url, [{ volume_backend_name: 'f', volume_driver: 'file', volumes_dir: dirA }, xms.cinderBackend('xio', { san_ip: `localhost:${xms.port}` })]);
      expect(await backendOf(c, 'f')).toMatchObject({ initialized: true });
      const other = await backendOf(c, 'xio');
      expect(other.initialized).toBe(false);
      expect(other.error).toMatch(/option san_ip \(here "localhost:\d+", there "127\.0\.0\.1:\d+"\)/);
      expect(other.error).not.toMatch(/san_password|xtremio_array_busy_retry_count/);

      // Once A stops, B's "f" is compared again on its next try and serves.
      data(await a.call('delete_volume', { volume_id: volume.id }));
      await a.close();
      await c.close();
      const deadline = Date.now() + 30_000;
      let served = await backendOf(b, 'f');
      while (!served.initialized && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        await b.call('get_stats', { backend: 'f', refresh: true });
        served = await backendOf(b, 'f');
      }
      expect(served.initialized).toBe(true);
      await b.close();
    });
  });
}
