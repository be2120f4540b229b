import { closeSync, existsSync, mkdtempSync, openSync, readSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkingOutputSchemas, type SchemaCheckedHarness } from '../helpers/scenarios.js';
import { startMcpServer } from '../helpers/server.js';

const READ_TOOLS = [
  'list_backends',
  'get_stats',
  'pool_names',
  'list_volumes',
  'get_volume',
  'list_snapshots',
  'get_snapshot',
  'validate_connector',
  'list_connections',
  'list_supported_drivers',
  'list_unmanaged',
];
/** Their answers' schemas are checked in test/iscsi, against a real target. */
const CONNECTION_TOOLS = ['validate_connector', 'connect_volume', 'list_connections', 'disconnect_volume', 'attach_volume', 'detach_volume'];
const ALL_TOOLS = [
  ...READ_TOOLS,
  'create_volume',
  'extend_volume',
  'delete_volume',
  'create_snapshot',
  'delete_snapshot',
  'connect_volume',
  'disconnect_volume',
  'attach_volume',
  'detach_volume',
  'update_volume',
  'revert_to_snapshot',
  'manage_volume',
  'unmanage_volume',
];
/** Tools that answer from the metadata store alone; every other tool may ask an array. */
const STORE_ONLY_TOOLS = ['list_volumes', 'get_volume', 'list_snapshots', 'get_snapshot', 'list_connections', 'list_supported_drivers', 'update_volume', 'unmanage_volume'];
/** Tools whose second identical call does not answer as the first did (without a request_id). */
const NOT_IDEMPOTENT_TOOLS = [
  'create_volume',
  'delete_volume',
  'create_snapshot',
  'delete_snapshot',
  'connect_volume',
  'disconnect_volume',
  'attach_volume',
  'detach_volume',
  'revert_to_snapshot',
  'manage_volume',
  'unmanage_volume',
];
const DESTRUCTIVE_TOOLS = ['delete_volume', 'delete_snapshot', 'disconnect_volume', 'detach_volume', 'revert_to_snapshot', 'unmanage_volume'];

describe('the MCP contract over a real stdio pipe', () => {
  let root: string;
  let server: SchemaCheckedHarness;
  const config = () => ({
    global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(root, 'meta.sqlite')}` } },
    backends: [
      { volume_backend_name: 'alpha', volume_driver: 'file', volumes_dir: join(root, 'alpha') },
      { volume_backend_name: 'beta', volume_driver: 'file', volumes_dir: join(root, 'beta'), max_over_subscription_ratio: 1 },
    ],
  });

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-contract-'));
    server = await checkingOutputSchemas(await startMcpServer(config()));
  });
  afterAll(async () => {
    await server?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('offers every tool with a title, both schemas and all four annotations set', async () => {
    const { tools } = await server.client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual([...ALL_TOOLS].sort());
    for (const tool of tools) {
      expect(tool.title, tool.name).toBeTruthy();
      expect(tool.description!.length, tool.name).toBeGreaterThan(40);
      expect(tool.inputSchema.type).toBe('object');
      expect(tool.outputSchema?.type, tool.name).toBe('object');
      const hints = tool.annotations!;
      for (const hint of ['readOnlyHint', 'destructiveHint', 'idempotentHint', 'openWorldHint'] as const) {
        expect(typeof hints[hint], `${tool.name}.${hint}`).toBe('boolean');
      }
      expect(hints.openWorldHint, tool.name).toBe(!STORE_ONLY_TOOLS.includes(tool.name));
      expect(hints.idempotentHint, tool.name).toBe(!NOT_IDEMPOTENT_TOOLS.includes(tool.name));
      expect(hints.readOnlyHint).toBe(READ_TOOLS.includes(tool.name));
      expect(hints.destructiveHint, tool.name).toBe(DESTRUCTIVE_TOOLS.includes(tool.name));
    }
  });

  it('answers structuredContent and the same data as JSON text', async () => {
    const result = await server.client.callTool({ name: 'list_backends', arguments: {} });
    const text = (result.content as Array<{ type: string; text: string }>)[0];
    expect(text.type).toBe('text');
    expect(JSON.parse(text.text)).toEqual(result.structuredContent);
    const backends = (result.structuredContent as { backends: Array<Record<string, unknown>> }).backends;
    expect(backends.map((b) => b.id)).toEqual(['alpha', 'beta']);
    expect(backends[0]).toEqual({
      id: 'alpha',
      volume_driver: 'file',
      initialized: true,
      config: { volume_backend_name: 'alpha' },
      pool_names: ['alpha'],
      capabilities: { snapshots: expect.any(Boolean), clones: expect.any(Boolean), exports: expect.any(Boolean) },
    });
  });

  it('creates a sparse image file named after the volume id, never after user text', async () => {
    const created = await server.call('create_volume', { backend: 'alpha', size: 3, name: '$(touch /tmp/pwned); rm -rf /', bootable: true });
    expect(created.isError, created.text).toBe(false);
    expect(created.data).toMatchObject({ size: 3, status: 'available', bootable: true, name: '$(touch /tmp/pwned); rm -rf /' });
    expect(created.data.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    const file = join(root, 'alpha', `volume-${created.data.id}`);
    const info = statSync(file);
    expect(info.size).toBe(3 * 1024 ** 3);
    expect(info.blocks * 512).toBeLessThan(1024 ** 2); // sparse: nothing written
    const extended = await server.call('extend_volume', { volume_id: created.data.id, new_size: 5 });
    expect(extended.data.size).toBe(5);
    expect(statSync(file).size).toBe(5 * 1024 ** 3);
    const again = await server.call('extend_volume', { volume_id: created.data.id, new_size: 5 });
    expect(again.isError).toBe(false); // idempotent
    await server.call('delete_volume', { volume_id: created.data.id });
    expect(existsSync(file)).toBe(false);
    // Not idempotent, as its hints say: deleting again answers NOT_FOUND, which means the volume is gone.
    const deletedAgain = await server.call('delete_volume', { volume_id: created.data.id });
    expect(deletedAgain.text).toMatch(new RegExp(`^NOT_FOUND: volume ${created.data.id} does not exist`));
  });

  it('pages list_volumes with an opaque cursor, in a stable order, without a cursor on the last page', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await server.call('create_volume', { backend: 'beta', size: 1, name: `page-${i}` })).data.id);
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await server.call('list_volumes', { backend: 'beta', limit: 2, ...(cursor ? { cursor } : {}) });
      expect(page.isError, page.text).toBe(false);
      expect(page.data.volumes.length).toBeLessThanOrEqual(2);
      seen.push(...page.data.volumes.map((v: { id: string }) => v.id));
      cursor = page.data.next_cursor;
      pages++;
    } while (cursor);
    expect(seen).toEqual(ids);
    expect(pages).toBe(3);
    const exact = await server.call('list_volumes', { backend: 'beta', limit: 5 });
    expect(exact.data.next_cursor).toBeUndefined();
    const firstPage = await server.call('list_volumes', { backend: 'beta', limit: 2 });
    const reused = await server.call('list_volumes', { backend: 'alpha', limit: 2, cursor: firstPage.data.next_cursor });
    expect(reused.text).toMatch(/^INVALID_ARGUMENT: cursor was issued for other filters/);
    const forged = await server.call('list_volumes', { cursor: 'not-a-cursor' });
    expect(forged.text).toMatch(/^INVALID_ARGUMENT: cursor is not one this server issued/);
    const tooMany = await server.call('list_volumes', { limit: 1001 });
    expect(tooMany.text).toMatch(/^INVALID_ARGUMENT: .*limit must be at most 1000.*got 1001/);
    const filtered = await server.call('list_volumes', { status: 'available', backend: 'beta' });
    expect(filtered.data.volumes.length).toBe(5);
    for (const id of ids) await server.call('delete_volume', { volume_id: id });
  });

  it('applies thick-like limits when over-subscription is 1 and names the room left', async () => {
    const stats = await server.call('get_stats', { backend: 'beta', refresh: true });
    const pool = stats.data.stats.pools[0];
    const room = Math.min(pool.total_capacity_gb - pool.provisioned_capacity_gb, pool.free_capacity_gb);
    const refused = await server.call('create_volume', { backend: 'beta', size: Math.floor(room) + 1 });
    expect(refused.text).toMatch(/^OUT_OF_CAPACITY: a \d+ GiB volume does not fit in backend "beta" pool "beta": [\d.]+ GiB of room left/);
  });

  it('gives clear errors with a stable code and keeps serving', async () => {
    const unknownBackend = await server.call('get_stats', { backend: 'gamma' });
    expect(unknownBackend).toMatchObject({ isError: true });
    expect(unknownBackend.text).toBe('NOT_FOUND: backend "gamma" is not configured; known backends: alpha, beta');
    const missing = await server.call('create_volume', { size: 1 });
    expect(missing.text).toMatch(/^INVALID_ARGUMENT: create_volume: backend is required \(known backends: alpha, beta\), unless snapshot_id or source_volume_id/);
    const noSize = await server.call('create_volume', { backend: 'alpha' });
    expect(noSize.text).toMatch(/^INVALID_ARGUMENT: create_volume: size is required \(in GiB\) unless snapshot_id or source_volume_id gives it/);
    const badSize = await server.call('create_volume', { backend: 'alpha', size: 1.5 });
    expect(badSize.text).toMatch(/^INVALID_ARGUMENT: .*size must be a whole number of GiB.*got 1.5/);
    const extra = await server.call('create_volume', { backend: 'alpha', size: 1, colour: 'blue' });
    expect(extra.text).toMatch(
      /^INVALID_ARGUMENT: .*unknown argument "colour"; create_volume accepts backend, size, snapshot_id, source_volume_id, name, description, pool_name, bootable, request_id/,
    );
    const badId = await server.call('get_volume', { volume_id: '42' });
    expect(badId.text).toMatch(/^INVALID_ARGUMENT: .*volume_id must be a volume id/);
    const noVolume = await server.call('delete_volume', { volume_id: '00000000-0000-4000-8000-000000000000' });
    expect(noVolume.text).toMatch(/^NOT_FOUND: volume 00000000-0000-4000-8000-000000000000 does not exist/);
    const noTool = await server.call('format_disk', {});
    expect(noTool.text).toMatch(/^NOT_FOUND: there is no tool "format_disk"/);
    for (const answer of [unknownBackend, missing, badSize, extra, badId, noVolume, noTool]) {
      expect(answer.text).not.toMatch(/\n\s+at /); // no stack traces
    }
    expect((await server.call('list_backends')).isError).toBe(false);
  });

  it('keeps a failed create visible in status error and lets delete_volume clean it up', async () => {
    await server.call('get_stats', { backend: 'alpha' }); // capacity known, so the create reaches the "array"
    rmSync(join(root, 'alpha'), { recursive: true, force: true }); // the "array" goes away under the server
    const failed = await server.call('create_volume', { backend: 'alpha', size: 1, name: 'doomed' });
    expect(failed.text).toMatch(/^BACKEND_UNAVAILABLE: .*The volume record [0-9a-f-]{36} is kept in status "error"; delete_volume removes it/);
    const id = /record ([0-9a-f-]{36})/.exec(failed.text)![1];
    const record = await server.call('get_volume', { volume_id: id });
    expect(record.data).toMatchObject({ status: 'error', name: 'doomed' });
    expect(record.data.status_reason).toMatch(/^create failed: /);
    const errors = await server.call('list_volumes', { status: 'error' });
    expect(errors.data.volumes.map((v: { id: string }) => v.id)).toContain(id);
    const extend = await server.call('extend_volume', { volume_id: id, new_size: 2 });
    expect(extend.text).toMatch(/^INVALID_ARGUMENT: volume .* is "error"/);
    const deleted = await server.call('delete_volume', { volume_id: id });
    expect(deleted.isError, deleted.text).toBe(false);
  });

  it("snapshots, volumes from snapshots and clones hold the source's bytes of the moment; cascade and IN_USE; request_id replays", async () => {
    const original = Buffer.alloc(4096, 0x5a);
    const changed = Buffer.alloc(4096, 0xa5);
    const source = (await server.call('create_volume', { backend: 'beta', size: 1, name: 'source' })).data;
    const image = (id: string) => join(root, 'beta', `volume-${id}`);
    const writeAt = (id: string, bytes: Buffer, offset: number) => {
      const fd = openSync(image(id), 'r+');
      writeSync(fd, bytes, 0, bytes.length, offset);
      closeSync(fd);
    };
    const readAt = (id: string, offset: number) => {
      const fd = openSync(image(id), 'r');
      const buffer = Buffer.alloc(4096);
      readSync(fd, buffer, 0, 4096, offset);
      closeSync(fd);
      return buffer;
    };
    writeAt(source.id, original, 0);
    writeAt(source.id, original, 1024 ** 3 - 4096);

    const snapshot = await server.call('create_snapshot', { volume_id: source.id, name: 'before the change', request_id: 'snap-1' });
    expect(snapshot.isError, snapshot.text).toBe(false);
    expect(snapshot.data).toMatchObject({ volume_id: source.id, volume_size: 1, status: 'available', backend: 'beta', name: 'before the change' });
    // A retry with the same request_id answers the same snapshot; other arguments under it are refused.
    expect((await server.call('create_snapshot', { volume_id: source.id, name: 'before the change', request_id: 'snap-1' })).data.id).toBe(snapshot.data.id);
    expect((await server.call('create_snapshot', { volume_id: source.id, name: 'other', request_id: 'snap-1' })).text).toMatch(
      /^ALREADY_EXISTS: request_id "snap-1" was already used with other arguments/,
    );
    expect((await server.call('get_snapshot', { snapshot_id: snapshot.data.id })).data).toEqual(snapshot.data);

    writeAt(source.id, changed, 0); // the risky change
    const restored = await server.call('create_volume', { snapshot_id: snapshot.data.id, name: 'restored', request_id: 'restore-1' });
    expect(restored.isError, restored.text).toBe(false);
    expect(restored.data).toMatchObject({ backend: 'beta', size: 1, snapshot_id: snapshot.data.id, source_volume_id: null, status: 'available' });
    expect(readAt(restored.data.id, 0)).toEqual(original);
    expect(readAt(restored.data.id, 1024 ** 3 - 4096)).toEqual(original);
    expect(statSync(image(restored.data.id)).blocks * 512).toBeLessThan(64 * 1024 ** 2); // still sparse
    expect((await server.call('create_volume', { snapshot_id: snapshot.data.id, name: 'restored', request_id: 'restore-1' })).data.id).toBe(restored.data.id);

    // A copy tells a client that asked for progress when it starts, how far it got, and when it is done.
    const progress: Array<{ progress: number; total?: number; message?: string }> = [];
    const copied = (await server.client.callTool({ name: 'create_volume', arguments: { snapshot_id: snapshot.data.id } }, undefined, { onprogress: (p) => progress.push(p) })) as {
      isError?: boolean;
      structuredContent?: { id: string };
    };
    expect(copied.isError).toBeFalsy();
    expect(progress[0]?.message).toBe(`copying snapshot ${snapshot.data.id} into volume ${copied.structuredContent!.id}`);
    expect(progress.at(-1)).toMatchObject({ progress: 1024 ** 3, total: 1024 ** 3, message: expect.stringMatching(/: done$/) });
    for (let i = 1; i < progress.length; i++) expect(progress[i].progress).toBeGreaterThanOrEqual(progress[i - 1].progress);
    expect((await server.call('delete_volume', { volume_id: copied.structuredContent!.id })).isError).toBe(false);

    // A file snapshot is a copy too, and says so (start, bytes, end).
    const snapshotProgress: Array<{ progress: number; total?: number; message?: string }> = [];
    const another = (await server.client.callTool({ name: 'create_snapshot', arguments: { volume_id: source.id } }, undefined, { onprogress: (p) => snapshotProgress.push(p) })) as {
      isError?: boolean;
      structuredContent?: { id: string };
    };
    expect(another.isError).toBeFalsy();
    expect(snapshotProgress[0]?.message).toBe(`snapshotting volume ${source.id}`);
    expect(snapshotProgress.at(-1)).toMatchObject({ progress: 1024 ** 3, total: 1024 ** 3, message: expect.stringMatching(/: done$/) });
    expect((await server.call('delete_snapshot', { snapshot_id: another.structuredContent!.id })).isError).toBe(false);

    const clone = await server.call('create_volume', { source_volume_id: source.id, size: 2 });
    expect(clone.isError, clone.text).toBe(false);
    expect(clone.data).toMatchObject({ size: 2, source_volume_id: source.id, snapshot_id: null });
    writeAt(source.id, original, 0);
    expect(readAt(clone.data.id, 0)).toEqual(changed); // the source's bytes at the moment of the clone
    expect(statSync(image(clone.data.id)).size).toBe(2 * 1024 ** 3);

    for (const refused of [
      ['create_volume', { snapshot_id: snapshot.data.id, size: 0 }, /^INVALID_ARGUMENT: /],
      ['create_volume', { backend: 'alpha', snapshot_id: snapshot.data.id }, /^INVALID_ARGUMENT: the source is on backend "beta", not "alpha"/],
      ['create_volume', { snapshot_id: snapshot.data.id, source_volume_id: source.id }, /^INVALID_ARGUMENT: create_volume takes at most one of snapshot_id and source_volume_id/],
      [
        'create_volume',
        { source_volume_id: source.id, size: 1, name: 'x', pool_name: 'beta', request_id: 'restore-1' },
        /^ALREADY_EXISTS: request_id "restore-1" was already used with other arguments/,
      ],
      ['delete_volume', { volume_id: source.id }, new RegExp(`^IN_USE: volume ${source.id} has 1 snapshot\\(s\\): ${snapshot.data.id}; delete them first`)],
    ] as const) {
      expect((await server.call(refused[0], refused[1])).text, JSON.stringify(refused[1])).toMatch(refused[2]);
    }
    const listed = await server.call('list_snapshots', { volume_id: source.id });
    expect(listed.data.snapshots.map((s: { id: string }) => s.id)).toEqual([snapshot.data.id]);
    const deleted = await server.call('delete_volume', { volume_id: source.id, cascade: true });
    expect(deleted.data).toEqual({ volume_id: source.id, deleted: true, snapshots_deleted: [snapshot.data.id] });
    expect((await server.call('get_snapshot', { snapshot_id: snapshot.data.id })).text).toMatch(/^NOT_FOUND: snapshot/);
    expect(readdirSync(join(root, 'beta')).filter((name) => name.includes(source.id) || name.includes(snapshot.data.id))).toEqual([]);
    const second = (await server.call('create_snapshot', { volume_id: restored.data.id })).data;
    expect(await server.call('delete_snapshot', { snapshot_id: second.id })).toMatchObject({ isError: false, data: { snapshot_id: second.id, deleted: true } });
    expect(existsSync(join(root, 'beta', `snapshot-${second.id}`))).toBe(false);
    for (const id of [restored.data.id, clone.data.id]) expect((await server.call('delete_volume', { volume_id: id })).isError).toBe(false);
    const again = await server.call('delete_snapshot', { snapshot_id: snapshot.data.id });
    expect(again.text).toMatch(/^NOT_FOUND: snapshot/);
  });

  it("lists the supported drivers as cinderlib's list_supported_drivers, keyed by class name", async () => {
    const drivers = await server.call('list_supported_drivers', {});
    expect(drivers.isError, drivers.text).toBe(false);
    expect(drivers.data.LVMVolumeDriver).toMatchObject({ class_fqn: 'cinder.volume.drivers.lvm.LVMVolumeDriver', version: '3.0.0', supported: true });
    expect(drivers.data.FileDriver.driver_options.find((o: { name: string }) => o.name === 'volumes_dir')).toMatchObject({ type: 'String', required: 'False' });
  });

  it('walks the everyday verbs: rename, revert, forget and adopt again', async () => {
    const volume = (await server.call('create_volume', { backend: 'beta', size: 1, name: 'walk' })).data;
    expect((await server.call('update_volume', { volume_id: volume.id, description: 'walked' })).data).toMatchObject({ id: volume.id, description: 'walked' });
    const snapshot = (await server.call('create_snapshot', { volume_id: volume.id })).data;
    expect((await server.call('revert_to_snapshot', { volume_id: volume.id, snapshot_id: snapshot.id })).data).toMatchObject({ id: volume.id, status: 'available' });
    expect((await server.call('delete_snapshot', { snapshot_id: snapshot.id })).isError).toBe(false);
    expect((await server.call('unmanage_volume', { volume_id: volume.id })).data).toEqual({ volume_id: volume.id, unmanaged: true });
    const listed = (await server.call('list_unmanaged', { backend: 'beta' })).data.volumes;
    const entry = listed.find((item: { reference: { 'source-name': string } }) => item.reference['source-name'] === `volume-${volume.id}`);
    expect(entry).toMatchObject({ size: 1, safe_to_manage: true, reason_not_safe: null });
    expect((await server.call('manage_volume', { backend: 'beta', reference: entry.reference })).data).toMatchObject({ id: volume.id, status: 'available' });
    expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
  });

  it('answered every tool in this walk with structuredContent matching its zod output schema and its listed outputSchema', async () => {
    // Each server.call above checked its own answer; the walk has not asked for pool names yet (alpha's folder is gone by now).
    const pools = await server.call('pool_names', { backend: 'beta' });
    expect(pools.isError, pools.text).toBe(false);
    expect([...server.checkedTools].sort()).toEqual(ALL_TOOLS.filter((tool) => !CONNECTION_TOOLS.includes(tool)).sort());
  });
});

describe('read-only mode', () => {
  it('hides every mutating tool and refuses it at call time', async () => {
    const server = await startMcpServer({
      global: { read_only: true, persistence_config: { storage: 'memory' } },
      backends: [{ volume_backend_name: 'ro', volume_driver: 'file', volumes_dir: join(tmpdir(), `cinderlib-mcp-ro-${process.pid}`) }],
    });
    try {
      const { tools } = await server.client.listTools();
      expect(tools.map((t) => t.name).sort()).toEqual([...READ_TOOLS].sort());
      for (const name of ALL_TOOLS.filter((tool) => !READ_TOOLS.includes(tool))) {
        const refused = await server.call(name, { backend: 'ro', size: 1 });
        expect(refused.text, name).toMatch(new RegExp(`^READ_ONLY: ${name} is disabled`));
      }
      expect((await server.call('get_stats', { backend: 'ro' })).isError).toBe(false);
    } finally {
      await server.close();
      rmSync(join(tmpdir(), `cinderlib-mcp-ro-${process.pid}`), { recursive: true, force: true });
    }
  });

  it('is forced by CINDERLIB_MCP_READ_ONLY=true, the bundle switch', async () => {
    const server = await startMcpServer(null, { env: { CINDERLIB_MCP_READ_ONLY: 'true' } });
    try {
      const { tools } = await server.client.listTools();
      expect(tools.map((t) => t.name).sort()).toEqual([...READ_TOOLS].sort());
    } finally {
      await server.close();
    }
  });
});

describe('the embedded default', () => {
  it('serves one "default" file backend under $XDG_DATA_HOME with real capacity figures', async () => {
    const server = await startMcpServer(null);
    try {
      const backends = await server.call('list_backends');
      expect(backends.data.backends).toEqual([
        {
          id: 'default',
          volume_driver: 'file',
          initialized: true,
          config: { volume_backend_name: 'default' },
          pool_names: ['default'],
          capabilities: { snapshots: true, clones: true, exports: false },
        },
      ]);
      const stats = await server.call('get_stats', { backend: 'default' });
      const pool = stats.data.stats.pools[0];
      const fs = (await import('node:fs')).statfsSync(server.workDir);
      expect(pool.total_capacity_gb).toBeCloseTo((fs.blocks * fs.bsize) / 1024 ** 3, 0);
      const created = await server.call('create_volume', { backend: 'default', size: 1 });
      expect(existsSync(join(server.workDir, 'data', 'cinderlib-mcp', 'volumes', `volume-${created.data.id}`))).toBe(true);
      expect(existsSync(join(server.workDir, 'data', 'cinderlib-mcp', 'metadata.sqlite'))).toBe(true);
    } finally {
      await server.close();
    }
  });
});
