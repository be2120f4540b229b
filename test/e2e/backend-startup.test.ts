import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, startMcpServer } from '../helpers/server.js';

/**
 * Backends that are slow, silent or broken at start-up: the server answers at once from what it
 * knows, gives up on a silent array after backend_init_timeout, and recovers a failed backend on
 * demand. Plus the one-owner rules for SQLite files and volumes folders.
 */
const root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-startup-'));

/** An "array" that accepts TCP connections and never says a word. */
let silent: Server;
const sockets: Socket[] = [];
let silentAddress = '';
beforeAll(async () => {
  silent = createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  silentAddress = `127.0.0.1:${(silent.address() as { port: number }).port}`;
});
afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => silent.close(resolve));
  rmSync(root, { recursive: true, force: true });
});

const silentXtremio = (extra: Record<string, unknown> = {}) => ({
  volume_backend_name: 'silent',
  volume_driver: 'xtremio',
  san_ip: silentAddress,
  san_login: 'admin',
  san_password: 'pw-silent-array',
  driver_ssl_cert_verify: false,
  ...extra,
});

const files = (name: string, dir: string, extra: Record<string, unknown> = {}) => ({
  volume_backend_name: name,
  volume_driver: 'file',
  volumes_dir: dir,
  ...extra,
});

describe('a silent array', () => {
  it('does not hold up list_backends: the others serve and it shows as initializing', async () => {
    const server = await startMcpServer({
      global: { persistence_config: { storage: 'memory' } },
      backends: [files('local', join(root, 'silent-local')), silentXtremio()],
    });
    try {
      const { backends } = (await server.call('list_backends')).data;
      const byId = Object.fromEntries(backends.map((b: { id: string }) => [b.id, b]));
      expect(byId.local).toMatchObject({ initialized: true, pool_names: ['local'] });
      expect(byId.silent).toMatchObject({ initialized: false, initializing: true, pool_names: [] });
      const created = await server.call('create_volume', { backend: 'local', size: 1 });
      expect(created.isError, created.text).toBe(false);
    } finally {
      await server.close();
    }
  });

  it('is given up after backend_init_timeout, with progress for the call that waited, and check says why', async () => {
    const server = await startMcpServer({
      global: { persistence_config: { storage: 'memory' } },
      backends: [silentXtremio({ backend_init_timeout: 2 })],
    });
    try {
      const progress: string[] = [];
      const result = (await server.client.callTool({ name: 'get_stats', arguments: { backend: 'silent' } }, undefined, {
        onprogress: (update) => progress.push(update.message ?? ''),
        timeout: 30_000,
      })) as { isError?: boolean; content: Array<{ text: string }> };
      expect(result.isError).toBe(true);
      expect(result.content[0].text).toMatch(/^BACKEND_UNAVAILABLE: backend "silent" is not initialized: the array did not finish answering within 2 s \(backend_init_timeout\)/);
      expect(progress[0]).toBe('waiting for backend "silent" to initialize');
      expect(progress.at(-1)).toBe('waiting for backend "silent" to initialize: done');
      const { backends } = (await server.call('list_backends')).data;
      expect(backends[0]).toMatchObject({ initialized: false, error: expect.stringMatching(/backend_init_timeout/) });
      expect(Date.parse(backends[0].next_retry_at)).toBeGreaterThan(0);
    } finally {
      await server.close();
    }

    const config = join(root, 'silent.yaml');
    writeFileSync(config, stringify({ backends: [silentXtremio({ backend_init_timeout: 1 })] }));
    const check = spawnSync(process.execPath, [BIN, 'check', '--config', config], { encoding: 'utf8', input: '', timeout: 60_000 });
    expect(check.status).toBe(1);
    expect(check.stdout).toMatch(/^silent\txtremio\tnot initialized: the array did not finish answering within 1 s \(backend_init_timeout\)/m);
    expect(check.stdout + check.stderr).not.toContain('pw-silent-array');
  });
});

describe('a backend that failed at start-up', () => {
  it('recovers on demand: get_stats refresh retries at once, other calls after the back-off', async () => {
    const blocker = join(root, 'not-yet');
    writeFileSync(blocker, 'a file where the folder should be');
    const server = await startMcpServer({
      global: { persistence_config: { storage: 'memory' } },
      backends: [files('late', join(blocker, 'volumes')), files('later', join(blocker, 'more'), { backend_init_retry_interval: 0 })],
    });
    try {
      const { backends } = (await server.call('list_backends')).data;
      expect(backends[0]).toMatchObject({ initialized: false, error: expect.stringMatching(/volumes_dir .* is not a writable directory \(ENOTDIR\)/) });
      const stillDown = await server.call('create_volume', { backend: 'late', size: 1 });
      expect(stillDown.text).toMatch(/^BACKEND_UNAVAILABLE: backend "late" is not initialized: .*it is tried again on the next call after .*, or now with get_stats refresh: true/);

      rmSync(blocker); // the "array" comes back
      const refreshed = await server.call('get_stats', { backend: 'late', refresh: true });
      expect(refreshed.isError, refreshed.text).toBe(false);
      // No back-off configured: the very next call retries by itself.
      const created = await server.call('create_volume', { backend: 'later', size: 1 });
      expect(created.isError, created.text).toBe(false);
      const after = (await server.call('list_backends')).data.backends;
      expect(after.map((b: { initialized: boolean }) => b.initialized)).toEqual([true, true]);
      expect(after[0].error).toBeUndefined();
    } finally {
      await server.close();
    }
  });
});

describe('one owner per metadata file and per volumes folder', () => {
  it('refuses a second server on the same SQLite file, naming the first, and serves again once it is gone', async () => {
    const db = join(root, 'shared.sqlite');
    const config = (dir: string) => ({
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${db}` } },
      backends: [files('f', join(root, dir))],
    });
    const first = await startMcpServer(config('owner-1'));
    const created = await first.call('create_volume', { backend: 'f', size: 1 });
    expect(created.isError, created.text).toBe(false);
    const second = await startMcpServer(config('owner-2'));
    try {
      const refused = await second.call('list_volumes');
      expect(refused.text).toMatch(new RegExp(`^BACKEND_UNAVAILABLE: the metadata store ${db} is in use by cinderlib-mcp pid \\d+ on .*; a SQLite store serves one server at a time`));
    } finally {
      await second.close();
      await first.close();
    }
    const third = await startMcpServer(config('owner-3'));
    try {
      const listed = await third.call('list_volumes');
      expect(listed.data.volumes.map((v: { id: string }) => v.id)).toEqual([created.data.id]);
    } finally {
      await third.close();
    }
  });

  it('refuses a second backend or server on one volumes_dir', async () => {
    const dir = join(root, 'one-folder');
    const first = await startMcpServer({ global: { persistence_config: { storage: 'memory' } }, backends: [files('a', dir), files('b', dir)] });
    const second = await startMcpServer({ global: { persistence_config: { storage: 'memory' } }, backends: [files('c', dir)] });
    try {
      const one = (await first.call('list_backends')).data.backends;
      expect(one[0]).toMatchObject({ id: 'a', initialized: true });
      expect(one[1].error).toMatch(/volumes_dir .*one-folder is already used by this server \(backend "a"\); two backends or servers on one folder/);
      const two = (await second.call('list_backends')).data.backends;
      expect(two[0].error).toMatch(/volumes_dir .*one-folder is already used by cinderlib-mcp pid \d+ on .* \(backend "a"\)/);
    } finally {
      await second.close();
      await first.close();
    }
  });

  it('recounts the folder on refresh, and makes backends on one filesystem share its room', async () => {
    const server = await startMcpServer({
      global: { persistence_config: { storage: 'memory' } },
      backends: [files('left', join(root, 'fs-left'), { max_over_subscription_ratio: 1 }), files('right', join(root, 'fs-right'), { max_over_subscription_ratio: 1 })],
    });
    try {
      expect((await server.call('list_backends')).data.backends.map((b: { initialized: boolean }) => b.initialized)).toEqual([true, true]);
      const before = (await server.call('get_stats', { backend: 'left', refresh: true })).data.stats.pools[0];
      expect(before.capacity_shared_with).toEqual(['right']);
      // A volume image put there by hand (or by another tool) counts once the user refreshes.
      const byHand = join(root, 'fs-left', 'volume-0b5e3f0c-1d2e-4f5a-9b8c-7d6e5f4a3b2c');
      writeFileSync(byHand, '');
      truncateSync(byHand, 3 * 1024 ** 3);
      const recounted = (await server.call('get_stats', { backend: 'left', refresh: true })).data.stats.pools[0];
      expect(recounted.provisioned_capacity_gb).toBe(before.provisioned_capacity_gb + 3);

      // Fill the filesystem's room from "left"; "right" must then be refused too, not offered the same room again.
      for (let i = 0; i < 20; i++) {
        const pool = (await server.call('get_stats', { backend: 'left', refresh: true })).data.stats.pools[0];
        const room = Math.floor(Math.min(pool.total_capacity_gb - pool.provisioned_capacity_gb, pool.free_capacity_gb));
        if (room < 1) break;
        const made = await server.call('create_volume', { backend: 'left', size: room });
        expect(made.isError, made.text).toBe(false);
      }
      await server.call('get_stats', { backend: 'left', refresh: true });
      const refused = await server.call('create_volume', { backend: 'right', size: 1 });
      expect(refused.text).toMatch(/^OUT_OF_CAPACITY: .*GiB provisioned by backends sharing this space/);
    } finally {
      await server.close();
    }
  });
});
