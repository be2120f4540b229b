import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import type { JsonSchemaType } from '@modelcontextprotocol/sdk/validation';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOOLS } from '../../tools/index.js';
import { startMcpServer, type McpHarness, type ToolAnswer } from './server.js';

/**
 * One scenario suite for every driver, as cinderlib's functional tests run one list against each
 * configured backend: stats, create, stats after create, extend, delete, create-delete twice,
 * and the refusals a user would hit first. Each driver's test file calls this with its config.
 */
export interface ScenarioOptions {
  /** Suite title, e.g. "file driver". */
  label: string;
  /** The volume_backend_name under test. */
  backend: string;
  /** The whole config file content (global + backends). Called in beforeAll. */
  makeConfig(): Promise<object> | object;
  /** Extra environment for the server process. */
  env?: () => Record<string, string>;
  /** Volume size used by the scenarios, GiB (default 1). */
  sizeGb?: number;
  /**
   * What the driver does with snapshots and copies on THIS machine: `works`; `fails here` (the
   * driver can, the host cannot: LVM without device-mapper); `unsupported` (the driver cannot).
   */
  lifecycle?: { snapshots: LifecycleOutcome; fromSnapshot: LifecycleOutcome; clones: LifecycleOutcome };
  /**
   * What connect_volume and attach_volume do on THIS machine (contract section 8): attaching iSCSI
   * exports needs a kernel initiator this machine lacks, so there it is `unsupported`.
   */
  connections: { connect: LifecycleOutcome; attach: LifecycleOutcome };
  /** list_backends' capabilities when they differ from what works here (K2 can clone, through a host that can attach). */
  capabilities?: { snapshots: boolean; clones: boolean; exports: boolean };
  /** What the array holds now (files, LVs, an emulator's objects), compared before and after dry runs. */
  arrayState(): unknown;
  /** An emulator's request log ("METHOD /path?query"): dry runs may only read. */
  arrayRequests?: () => readonly string[];
  /** What revert_to_snapshot does on THIS machine (default: works where snapshots work, else unsupported). */
  revert?: LifecycleOutcome;
  /**
   * Makes an array volume outside this server (a file in volumes_dir, an LV, an array volume), and
   * optionally one that is in use, for list_unmanaged and manage_volume; `inUse` answers a cleanup.
   */
  foreign: { make(name: string, sizeGb: number): void; inUse?(name: string, sizeGb: number): () => void };
  /** Writes and reads a volume's data (the first bytes of a file; an emulator's content marker), to see a revert's effect. */
  data?: { write(volumeId: string, text: string): void; read(volumeId: string): string };
}

export type LifecycleOutcome = 'works' | 'fails here' | 'unsupported';

/**
 * Attaching an iSCSI export on this machine: without the kernel's iSCSI transport the server
 * refuses (UNSUPPORTED); with one, the emulators' portals are not real targets, so the login fails.
 */
export const ISCSI_ATTACH_HERE: LifecycleOutcome = existsSync('/sys/class/iscsi_transport/tcp') ? 'fails here' : 'unsupported';
/** Loop devices need root. */
export const LOOP_ATTACH_HERE: LifecycleOutcome = process.getuid?.() === 0 ? 'works' : 'unsupported';

/**
 * list_backends once no backend is still starting: it answers at once, and a backend reached over
 * the network may still be initializing (`initializing: true`, no error yet). Polls until none is,
 * or until `timeoutMs` has passed (then the answer as it stands, for the test to fail on).
 */
export async function settledBackends(server: McpHarness, timeoutMs = 30_000): Promise<ToolAnswer> {
  const deadline = Date.now() + timeoutMs;
  let answer = await server.call('list_backends');
  while (answer.data?.backends?.some((b: { initializing?: boolean }) => b.initializing) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    answer = await server.call('list_backends');
  }
  return answer;
}

export function defineBackendScenarios(options: ScenarioOptions): void {
  const size = options.sizeGb ?? 1;
  describe(`${options.label}: shared backend scenarios`, () => {
    let server: McpHarness;

    beforeAll(async () => {
      // Every answer of every driver is checked against the tool's declared output schemas.
      server = await checkingOutputSchemas(await startMcpServer(await options.makeConfig(), { env: options.env?.() }));
    });
    afterAll(async () => {
      await server?.close();
    });

    const pool = async (refresh = true) => {
      const answer = await server.call('get_stats', { backend: options.backend, refresh });
      expect(answer.isError, answer.text).toBe(false);
      return answer.data.stats.pools[0];
    };

    it('lists the backend as initialized with its pools', async () => {
      const answer = await settledBackends(server);
      expect(answer.isError, answer.text).toBe(false);
      const entry = answer.data.backends.find((b: { id: string }) => b.id === options.backend);
      expect(entry, JSON.stringify(answer.data)).toBeDefined();
      expect(entry.error, entry.error).toBeUndefined();
      expect(entry.initialized).toBe(true);
      expect(entry.pool_names.length).toBeGreaterThan(0);
      const pools = await server.call('pool_names', { backend: options.backend });
      expect(pools.data.pool_names).toEqual(entry.pool_names);
    });

    it('reports Cinder stats with capacity in GiB', async () => {
      const answer = await server.call('get_stats', { backend: options.backend });
      expect(answer.isError, answer.text).toBe(false);
      const { stats } = answer.data;
      expect(stats.volume_backend_name).toBe(options.backend);
      for (const key of ['driver_version', 'storage_protocol', 'vendor_name']) expect(typeof stats[key]).toBe('string');
      const first = stats.pools[0];
      expect(typeof first.total_capacity_gb).toBe('number');
      expect(first.free_capacity_gb).toBeLessThanOrEqual(first.total_capacity_gb);
      expect(typeof first.provisioned_capacity_gb).toBe('number');
    });

    it('creates, shows, extends and deletes a volume, and stats follow', async () => {
      const before = await pool();
      const created = await server.call('create_volume', {
        backend: options.backend,
        size,
        name: 'scenario volume',
        description: 'made by the shared scenarios',
      });
      expect(created.isError, created.text).toBe(false);
      expect(created.data).toMatchObject({ backend: options.backend, size, status: 'available', name: 'scenario volume' });
      const id = created.data.id as string;

      const shown = await server.call('get_volume', { volume_id: id });
      expect(shown.data).toEqual(created.data);
      const listed = await server.call('list_volumes', { backend: options.backend });
      expect(listed.data.volumes.map((v: { id: string }) => v.id)).toContain(id);

      const afterCreate = await pool();
      expect(afterCreate.provisioned_capacity_gb).toBeCloseTo(before.provisioned_capacity_gb + size, 1);

      const extended = await server.call('extend_volume', { volume_id: id, new_size: size + 1 });
      expect(extended.isError, extended.text).toBe(false);
      expect(extended.data.size).toBe(size + 1);
      expect((await pool()).provisioned_capacity_gb).toBeCloseTo(before.provisioned_capacity_gb + size + 1, 1);

      const shrink = await server.call('extend_volume', { volume_id: id, new_size: size });
      expect(shrink.isError).toBe(true);
      expect(shrink.text).toMatch(/^INVALID_ARGUMENT: .*cannot shrink/);

      const deleted = await server.call('delete_volume', { volume_id: id });
      expect(deleted.isError, deleted.text).toBe(false);
      expect(deleted.data).toEqual({ volume_id: id, deleted: true });
      const gone = await server.call('get_volume', { volume_id: id });
      expect(gone.text).toMatch(/^NOT_FOUND: /);
      expect((await pool()).provisioned_capacity_gb).toBeCloseTo(before.provisioned_capacity_gb, 1);
    });

    it('creates and deletes twice in a row', async () => {
      for (let round = 0; round < 2; round++) {
        const created = await server.call('create_volume', { backend: options.backend, size });
        expect(created.isError, created.text).toBe(false);
        const deleted = await server.call('delete_volume', { volume_id: created.data.id });
        expect(deleted.isError, deleted.text).toBe(false);
      }
    });

    it('refuses a size the pool cannot hold, before touching the array', async () => {
      const current = await pool();
      const listedBefore = await server.call('list_volumes', { backend: options.backend });
      const tooBig = Math.ceil(current.total_capacity_gb * Math.max(Number(current.max_over_subscription_ratio) || 1, 1)) + 1000;
      const refused = await server.call('create_volume', { backend: options.backend, size: tooBig });
      expect(refused.isError).toBe(true);
      expect(refused.text).toMatch(new RegExp(`^OUT_OF_CAPACITY: a ${tooBig} GiB volume .* GiB of room left`));
      const listedAfter = await server.call('list_volumes', { backend: options.backend });
      expect(listedAfter.data.volumes.length).toBe(listedBefore.data.volumes.length);
      expect((await pool()).provisioned_capacity_gb).toBeCloseTo(current.provisioned_capacity_gb, 1);
    });

    const lifecycle = options.lifecycle ?? { snapshots: 'works', fromSnapshot: 'works', clones: 'works' };

    /** An answer as this machine gives it: success, the driver's refusal here (an error record is kept), or UNSUPPORTED. */
    const expectOutcome = (answer: ToolAnswer, outcome: LifecycleOutcome) => {
      if (outcome === 'works') return expect(answer.isError, answer.text).toBe(false);
      // Or, for a server that is not root, its root helper refusing (sudo -n, contract section 11): how this host says it cannot attach.
      if (outcome === 'unsupported')
        return expect(answer.text).toMatch(new RegExp(`^UNSUPPORTED: (backend "${options.backend}": |.*: the root helper \\(root_helper: "[^"]*"\\) may not run )`));
      expect(answer.text).toMatch(/^(BACKEND_UNAVAILABLE|BACKEND_BUSY|INTERNAL): /); // the driver can; this host cannot
    };

    it('walks snapshot, volume from snapshot, clone, cascade delete and the refusals', async () => {
      const { backends } = (await server.call('list_backends')).data;
      const capabilities = backends.find((b: { id: string }) => b.id === options.backend).capabilities;
      expect(capabilities).toEqual(
        options.capabilities ?? {
          snapshots: lifecycle.snapshots !== 'unsupported',
          clones: lifecycle.clones !== 'unsupported',
          exports: options.connections.connect !== 'unsupported',
        },
      );
      const volume = (await server.call('create_volume', { backend: options.backend, size, name: 'lifecycle source' })).data;

      const snapshot = await server.call('create_snapshot', { volume_id: volume.id, name: 'restore point' });
      expectOutcome(snapshot, lifecycle.snapshots);
      let snapshotId: string | undefined = snapshot.data?.id;
      if (lifecycle.snapshots === 'fails here') {
        // The failed create is kept as an error record that names the snapshot, and delete_snapshot cleans it up.
        const kept = (await server.call('list_snapshots', { volume_id: volume.id })).data.snapshots;
        expect(kept.map((s: { status: string }) => s.status)).toEqual(['error']);
        snapshotId = kept[0].id;
      }
      if (lifecycle.snapshots === 'works') {
        expect(snapshot.data).toMatchObject({ volume_id: volume.id, volume_size: size, status: 'available', backend: options.backend });
        const refused = await server.call('delete_volume', { volume_id: volume.id });
        expect(refused.text).toMatch(new RegExp(`^IN_USE: volume ${volume.id} has 1 snapshot\\(s\\): ${snapshotId}`));
        const fromSnapshot = await server.call('create_volume', { snapshot_id: snapshotId, size: size + 1 });
        expectOutcome(fromSnapshot, lifecycle.fromSnapshot);
        if (lifecycle.fromSnapshot === 'works') {
          expect(fromSnapshot.data).toMatchObject({ backend: options.backend, size: size + 1, snapshot_id: snapshotId, status: 'available' });
        }
        for (const made of (await server.call('list_volumes', { backend: options.backend })).data.volumes) {
          if (made.snapshot_id === snapshotId) expect((await server.call('delete_volume', { volume_id: made.id })).isError).toBe(false);
        }
      }

      const clone = await server.call('create_volume', { source_volume_id: volume.id });
      expectOutcome(clone, lifecycle.clones);
      if (lifecycle.clones === 'works') expect(clone.data).toMatchObject({ size, source_volume_id: volume.id, status: 'available' });
      for (const made of (await server.call('list_volumes', { backend: options.backend })).data.volumes) {
        if (made.source_volume_id === volume.id) expect((await server.call('delete_volume', { volume_id: made.id })).isError).toBe(false);
      }

      const cascade = await server.call('delete_volume', { volume_id: volume.id, cascade: true });
      expect(cascade.isError, cascade.text).toBe(false);
      expect(cascade.data).toEqual({ volume_id: volume.id, deleted: true, snapshots_deleted: snapshotId ? [snapshotId] : [] });
      expect((await server.call('list_snapshots', { backend: options.backend })).data.snapshots).toEqual([]);
    });

    it('connects a volume to a host, lists it, refuses to delete it, extends it and disconnects it; attaches it on this host', async () => {
      const { connect, attach } = options.connections;
      const volume = (await server.call('create_volume', { backend: options.backend, size, name: 'connected' })).data;
      const connector = { host: 'scenario-host', initiator: 'iqn.1994-05.com.example:scenario-host' };
      const statusOf = async () => (await server.call('get_volume', { volume_id: volume.id })).data.status;

      const valid = await server.call('validate_connector', { backend: options.backend, connector });
      if (connect === 'unsupported') expectOutcome(valid, 'unsupported');
      else {
        expect(valid.data).toEqual({ backend: options.backend, valid: true });
        expect((await server.call('validate_connector', { backend: options.backend, connector: { host: 'scenario-host' } })).text).toMatch(/^INVALID_ARGUMENT: .*lacks initiator/);
      }
      const connected = await server.call('connect_volume', { volume_id: volume.id, connector });
      expectOutcome(connected, connect);
      if (connect === 'works') {
        const data = connected.data.connection_info.data;
        expect(connected.data).toMatchObject({ volume_id: volume.id, backend: options.backend, status: 'attached', connector });
        expect(connected.data.connection_info.driver_volume_type).toBe('iscsi');
        expect(data).toMatchObject({ target_iqn: expect.any(String), target_portal: expect.stringMatching(/:\d+$/), target_lun: expect.any(Number) });
        if (data.auth_method) expect(data.auth_password).toBe('***');
        expect(await statusOf()).toBe('in-use');
        expect((await server.call('list_connections', { volume_id: volume.id })).data.connections.map((c: { id: string }) => c.id)).toEqual([connected.data.id]);
        expect((await server.call('delete_volume', { volume_id: volume.id })).text).toMatch(new RegExp(`^IN_USE: .*connection ${connected.data.id}`));
        if (lifecycle.snapshots === 'works') {
          // A cascade refused for the connection deletes nothing: its snapshots are all still there.
          const kept = (await server.call('create_snapshot', { volume_id: volume.id, name: 'kept through a refused cascade' })).data;
          const cascade = await server.call('delete_volume', { volume_id: volume.id, cascade: true });
          expect(cascade.text).toMatch(new RegExp(`^IN_USE: .*connection ${connected.data.id}`));
          expect((await server.call('get_snapshot', { snapshot_id: kept.id })).data).toMatchObject({ id: kept.id, status: 'available' });
          expect((await server.call('delete_snapshot', { snapshot_id: kept.id })).isError).toBe(false);
        }
        const extended = await server.call('extend_volume', { volume_id: volume.id, new_size: size + 1 });
        expect(extended.data, extended.text).toMatchObject({ size: size + 1, status: 'in-use' });
        expect((await server.call('disconnect_volume', { connection_id: connected.data.id })).data).toEqual({ connection_id: connected.data.id, disconnected: true });
        expect((await server.call('disconnect_volume', { connection_id: connected.data.id })).text).toMatch(/^NOT_FOUND: connection/);
      }
      // Whatever the outcome, nothing stays connected and the volume is usable again.
      expect((await server.call('list_connections', { volume_id: volume.id })).data.connections).toEqual([]);
      expect(await statusOf()).toBe('available');

      const attached = await server.call('attach_volume', { volume_id: volume.id });
      expectOutcome(attached, attach);
      if (attach === 'works') {
        expect(attached.data.device.path).toMatch(/^\/dev\//);
        expect(await statusOf()).toBe('in-use');
        expect((await server.call('detach_volume', { connection_id: attached.data.id })).data).toEqual({ connection_id: attached.data.id, detached: true });
      }
      expect((await server.call('list_connections', { volume_id: volume.id })).data.connections).toEqual([]);
      expect(await statusOf()).toBe('available');
      expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
    });

    it('dry runs check what the real call checks, answer what it would do, and change nothing in the store or on the array', async () => {
      const volume = (await server.call('create_volume', { backend: options.backend, size, name: 'dry source' })).data;
      const snapshot = lifecycle.snapshots === 'works' ? (await server.call('create_snapshot', { volume_id: volume.id })).data : undefined;
      const before = { store: await storeState(server), array: await options.arrayState() };
      const requestsBefore = options.arrayRequests?.().length ?? 0;
      const dry = async (tool: string, args: Record<string, unknown>) => server.call(tool, { ...args, dry_run: true });

      const create = await dry('create_volume', { backend: options.backend, size, name: 'would be' });
      expect(create.data, create.text).toEqual({
        dry_run: true,
        would: {
          action: 'create_volume',
          volume: { backend: options.backend, pool_name: expect.any(String), size, name: 'would be', description: '', bootable: false, snapshot_id: null, source_volume_id: null },
        },
      });
      expect((await dry('extend_volume', { volume_id: volume.id, new_size: size + 1 })).data.would).toEqual({ action: 'extend_volume', volume_id: volume.id, size, new_size: size + 1 });
      expect((await dry('extend_volume', { volume_id: volume.id, new_size: size })).data.would).toMatchObject({ action: 'none' });
      const cascade = await dry('delete_volume', { volume_id: volume.id, cascade: true });
      expect(cascade.data?.would, cascade.text).toEqual({ action: 'delete_volume', volume_id: volume.id, snapshots_deleted: snapshot ? [snapshot.id] : [] });
      const snap = await dry('create_snapshot', { volume_id: volume.id, name: 'would be' });
      if (lifecycle.snapshots === 'unsupported') expectOutcome(snap, 'unsupported');
      else expect(snap.data?.would, snap.text).toEqual({ action: 'create_snapshot', volume_id: volume.id, snapshot: { name: 'would be', description: '', volume_size: size } });
      if (snapshot)
        expect((await dry('delete_snapshot', { snapshot_id: snapshot.id })).data.would).toEqual({ action: 'delete_snapshot', snapshot_id: snapshot.id, volume_id: volume.id });
      const connector = { host: 'dry-host', initiator: 'iqn.1994-05.com.example:dry-host' };
      const connect = await dry('connect_volume', { volume_id: volume.id, connector });
      if (options.connections.connect === 'works')
        expect(connect.data?.would, connect.text).toEqual({ action: 'connect_volume', volume_id: volume.id, connector, driver_volume_type: 'iscsi' });
      else expect(connect.text).toMatch(/^UNSUPPORTED: /);
      expect((await dry('update_volume', { volume_id: volume.id, name: 'renamed' })).data.would).toMatchObject({ action: 'update_volume' });
      if (snapshot) expect((await dry('unmanage_volume', { volume_id: volume.id })).text).toBe((await server.call('unmanage_volume', { volume_id: volume.id })).text);
      else expect((await dry('unmanage_volume', { volume_id: volume.id })).data.would).toMatchObject({ action: 'unmanage_volume', volume_id: volume.id });
      if (snapshot && (options.revert ?? 'works') === 'works') {
        expect((await dry('revert_to_snapshot', { volume_id: volume.id, snapshot_id: snapshot.id })).data.would).toMatchObject({ action: 'revert_to_snapshot' });
      }
      const attach = await dry('attach_volume', { volume_id: volume.id });
      if (options.connections.attach === 'works') expect(attach.data?.would, attach.text).toMatchObject({ action: 'attach_volume', volume_id: volume.id });
      else expect(attach.isError).toBe(true);

      // Refusals: the same error as the real call, which refuses without writing either.
      const refusals: Array<[string, Record<string, unknown>]> = [
        ['create_volume', { backend: options.backend, size: 1024 * 1024 }],
        ['create_volume', { backend: options.backend, size, pool_name: 'no-such-pool' }],
        ['extend_volume', { volume_id: volume.id, new_size: 1024 * 1024 }],
        ['extend_volume', { volume_id: randomUUID(), new_size: size + 1 }],
        ['delete_snapshot', { snapshot_id: randomUUID() }],
        ['disconnect_volume', { connection_id: randomUUID() }],
      ];
      if (snapshot) refusals.push(['delete_volume', { volume_id: volume.id }]);
      for (const [tool, args] of refusals) {
        const real = await server.call(tool, args);
        expect(real.isError, `${tool} ${real.text}`).toBe(true);
        expect((await dry(tool, args)).text).toBe(real.text);
      }

      expect({ store: await storeState(server), array: await options.arrayState() }).toEqual(before);
      for (const request of options.arrayRequests?.().slice(requestsBefore) ?? []) expect(request).toMatch(/^GET /);

      expect((await server.call('delete_volume', { volume_id: volume.id, cascade: true })).isError).toBe(false);
    });

    it('renames and describes a volume (metadata only) and finds volumes and snapshots by name', async () => {
      const alpha = (await server.call('create_volume', { backend: options.backend, size, name: 'Alpha' })).data;
      const beta = (await server.call('create_volume', { backend: options.backend, size, name: 'beta 100%' })).data;
      const array = await options.arrayState();
      const updated = await server.call('update_volume', { volume_id: alpha.id, name: 'Gamma_1', description: 'renamed', bootable: true });
      expect(updated.data, updated.text).toEqual({ ...alpha, name: 'Gamma_1', description: 'renamed', bootable: true });
      expect((await server.call('get_volume', { volume_id: alpha.id })).data).toEqual(updated.data);
      expect(await options.arrayState()).toEqual(array); // the array never sees names
      expect((await server.call('update_volume', { volume_id: alpha.id, name: 'Delta', dry_run: true })).data).toEqual({
        dry_run: true,
        would: { action: 'update_volume', volume_id: alpha.id, changes: { name: { from: 'Gamma_1', to: 'Delta' } } },
      });
      expect((await server.call('update_volume', { volume_id: alpha.id })).text).toMatch(/^INVALID_ARGUMENT: update_volume: nothing to change/);
      expect((await server.call('update_volume', { volume_id: randomUUID(), name: 'x' })).text).toMatch(/^NOT_FOUND: /);

      const names = async (args: Record<string, unknown>) => (await server.call('list_volumes', { backend: options.backend, ...args })).data.volumes.map((v: { id: string }) => v.id);
      expect(await names({ name: 'gamma' })).toEqual([alpha.id]);
      expect(await names({ name: 'BETA 100%' })).toEqual([beta.id]);
      expect(await names({ name: '_1' })).toEqual([alpha.id]); // LIKE's wildcards are taken literally
      expect(await names({ name: '%' })).toEqual([beta.id]);
      expect(await names({ name: 'no such volume' })).toEqual([]);
      const first = (await server.call('list_volumes', { backend: options.backend, name: 'A', limit: 1 })).data;
      expect(first.volumes.map((v: { id: string }) => v.id)).toEqual([alpha.id]);
      const second = (await server.call('list_volumes', { backend: options.backend, name: 'A', limit: 1, cursor: first.next_cursor })).data;
      expect(second.volumes.map((v: { id: string }) => v.id)).toEqual([beta.id]);
      expect((await server.call('list_volumes', { backend: options.backend, name: 'B', cursor: first.next_cursor })).text).toMatch(
        /^INVALID_ARGUMENT: cursor was issued for other filters/,
      );

      if (lifecycle.snapshots === 'works') {
        const nightly = (await server.call('create_snapshot', { volume_id: beta.id, name: 'Nightly backup' })).data;
        await server.call('create_snapshot', { volume_id: beta.id, name: 'weekly' });
        const found = await server.call('list_snapshots', { volume_id: beta.id, name: 'NIGHT' });
        expect(found.data.snapshots.map((s: { id: string }) => s.id)).toEqual([nightly.id]);
      }
      for (const volume of [alpha, beta]) expect((await server.call('delete_volume', { volume_id: volume.id, cascade: true })).isError).toBe(false);
    });

    it("reverts a volume to its snapshot: its data becomes the snapshot's and it keeps its size; UNSUPPORTED where it cannot", async () => {
      const revert = options.revert ?? (lifecycle.snapshots === 'works' ? 'works' : 'unsupported');
      const volume = (await server.call('create_volume', { backend: options.backend, size, name: 'reverted' })).data;
      if (lifecycle.snapshots !== 'works') {
        expectOutcome(await server.call('revert_to_snapshot', { volume_id: volume.id, snapshot_id: randomUUID() }), revert);
        expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
        return;
      }
      options.data?.write(volume.id, 'first state');
      const snapshot = (await server.call('create_snapshot', { volume_id: volume.id, name: 'before' })).data;
      options.data?.write(volume.id, 'later state');
      const other = (await server.call('create_volume', { backend: options.backend, size })).data;
      expect((await server.call('revert_to_snapshot', { volume_id: other.id, snapshot_id: snapshot.id })).text).toMatch(
        new RegExp(`^INVALID_ARGUMENT: snapshot ${snapshot.id} is of volume ${volume.id}, not of volume ${other.id}`),
      );
      expect((await server.call('extend_volume', { volume_id: volume.id, new_size: size + 1 })).isError).toBe(false);
      const planned = await server.call('revert_to_snapshot', { volume_id: volume.id, snapshot_id: snapshot.id, dry_run: true });
      if (revert === 'works') {
        expect(planned.data, planned.text).toEqual({
          dry_run: true,
          would: { action: 'revert_to_snapshot', volume_id: volume.id, snapshot_id: snapshot.id, size: size + 1, snapshot_size: size },
        });
        const reverted = await server.call('revert_to_snapshot', { volume_id: volume.id, snapshot_id: snapshot.id });
        expect(reverted.data, reverted.text).toMatchObject({ id: volume.id, status: 'available', size: size + 1 });
        if (options.data) expect(options.data.read(volume.id)).toBe('first state');
        expect((await pool()).provisioned_capacity_gb).toBeGreaterThan(0);
      } else {
        expectOutcome(planned, revert);
        expectOutcome(await server.call('revert_to_snapshot', { volume_id: volume.id, snapshot_id: snapshot.id }), revert);
        expect((await server.call('get_volume', { volume_id: volume.id })).data.status).toBe('available');
      }
      for (const id of [volume.id, other.id]) expect((await server.call('delete_volume', { volume_id: id, cascade: true })).isError).toBe(false);
    });

    it('lists array volumes no record knows, adopts one (renamed as Cinder renames), and forgets one without touching the array', async () => {
      const unmanaged = async () => {
        const all: Array<{ reference: { 'source-name': string }; size: number; safe_to_manage: boolean; reason_not_safe: string | null }> = [];
        let cursor: string | undefined;
        do {
          const page = await server.call('list_unmanaged', { backend: options.backend, limit: 2, ...(cursor ? { cursor } : {}) });
          expect(page.isError, page.text).toBe(false);
          all.push(...page.data.volumes);
          cursor = page.data.next_cursor;
        } while (cursor);
        return all;
      };
      const entry = (name: string, list: Awaited<ReturnType<typeof unmanaged>>) => list.find((item) => item.reference['source-name'] === name);
      const name = `foreign-${randomUUID().slice(0, 8)}`;
      const known = (await server.call('create_volume', { backend: options.backend, size, name: 'known' })).data;
      options.foreign.make(name, 1);
      const listed = await unmanaged();
      expect(entry(name, listed)).toEqual({ reference: { 'source-name': name }, size: 1, safe_to_manage: true, reason_not_safe: null });
      expect(JSON.stringify(listed)).not.toContain(known.id); // what a record knows is not listed

      const array = await options.arrayState();
      const planned = await server.call('manage_volume', { backend: options.backend, reference: { 'source-name': name }, name: 'adopted', dry_run: true });
      expect(planned.data?.would, planned.text).toMatchObject({ action: 'manage_volume', reference: { 'source-name': name }, volume: { name: 'adopted', size: 1 } });
      expect(await options.arrayState()).toEqual(array);
      const adopted = await server.call('manage_volume', { backend: options.backend, reference: { 'source-name': name }, name: 'adopted' });
      expect(adopted.data, adopted.text).toMatchObject({ backend: options.backend, name: 'adopted', size: 1, status: 'available' });
      const id = adopted.data.id as string;
      expect(entry(name, await unmanaged())).toBeUndefined();
      expect((await server.call('manage_volume', { backend: options.backend, reference: { 'source-name': name } })).text).toMatch(/^NOT_FOUND: .*list_unmanaged/);
      // The driver finds it under its own naming now: extend and snapshot work on it.
      expect((await server.call('extend_volume', { volume_id: id, new_size: 2 })).data).toMatchObject({ size: 2, status: 'available' });
      if (lifecycle.snapshots === 'works') {
        const snapshot = (await server.call('create_snapshot', { volume_id: id })).data;
        expect((await server.call('unmanage_volume', { volume_id: id })).text).toMatch(/^IN_USE: .*snapshot/);
        expect((await server.call('delete_snapshot', { snapshot_id: snapshot.id })).isError).toBe(false);
      }

      const arrayBefore = await options.arrayState();
      expect((await server.call('unmanage_volume', { volume_id: id, dry_run: true })).data.would).toMatchObject({ action: 'unmanage_volume', volume_id: id });
      expect((await server.call('unmanage_volume', { volume_id: id })).data).toEqual({ volume_id: id, unmanaged: true });
      expect(await options.arrayState()).toEqual(arrayBefore); // the array is not touched
      expect((await server.call('get_volume', { volume_id: id })).text).toMatch(/^NOT_FOUND: /);
      const again = (await unmanaged()).find((item) => item.reference['source-name'].includes(id));
      expect(again, 'the forgotten volume is listed again under its name').toMatchObject({ size: 2, safe_to_manage: true });
      const readopted = await server.call('manage_volume', { backend: options.backend, reference: again!.reference });
      expect(readopted.data, readopted.text).toMatchObject({ id, size: 2, status: 'available' }); // its name carries its id: kept
      expect((await server.call('delete_volume', { volume_id: id })).isError).toBe(false);
      // Gone, or (Pure without eradication) kept destroyed on the array, and not safe to manage.
      for (const item of (await unmanaged()).filter((candidate) => candidate.reference['source-name'].includes(id))) expect(item.safe_to_manage).toBe(false);

      if (options.foreign.inUse) {
        const busy = `busy-${randomUUID().slice(0, 8)}`;
        const release = options.foreign.inUse(busy, 1);
        try {
          const shown = entry(busy, await unmanaged());
          expect(shown).toMatchObject({ safe_to_manage: false, reason_not_safe: expect.stringMatching(/in use|attached|connected/i) });
          expect((await server.call('manage_volume', { backend: options.backend, reference: { 'source-name': busy } })).text).toMatch(/^IN_USE: /);
        } finally {
          release();
        }
      }
      expect((await server.call('delete_volume', { volume_id: known.id })).isError).toBe(false);
    });

    it('refuses an unknown pool and names the real ones', async () => {
      const answer = await server.call('create_volume', { backend: options.backend, size, pool_name: 'no-such-pool' });
      expect(answer.isError).toBe(true);
      expect(answer.text).toMatch(/^INVALID_ARGUMENT: pool_name "no-such-pool" is not a pool/);
    });
  });
}

/** Every object of the metadata store as cinderlib's JSON (its resources), by URI. */
export async function storeState(server: McpHarness): Promise<Record<string, string>> {
  const state: Record<string, string> = {};
  let cursor: string | undefined;
  do {
    const page = await server.client.listResources(cursor ? { cursor } : {});
    for (const resource of page.resources) {
      const read = await server.client.readResource({ uri: resource.uri });
      state[resource.uri] = (read.contents[0] as { text: string }).text;
    }
    cursor = page.nextCursor;
  } while (cursor);
  return state;
}

export interface SchemaCheckedHarness extends McpHarness {
  /** Tools whose successful answers were checked against both output schemas. */
  checkedTools: Set<string>;
}

/**
 * The harness, with every successful answer checked against the tool's own zod output schema and
 * against the outputSchema tools/list declares for it (with the validator SDK clients use).
 */
export async function checkingOutputSchemas(harness: McpHarness): Promise<SchemaCheckedHarness> {
  const validator = new AjvJsonSchemaValidator();
  const { tools } = await harness.client.listTools();
  const listed = new Map(tools.map((tool) => [tool.name, validator.getValidator(tool.outputSchema as JsonSchemaType)]));
  const definitions = new Map(TOOLS.map((tool) => [tool.name, tool]));
  const checkedTools = new Set<string>();
  return {
    ...harness,
    checkedTools,
    async call(name, args) {
      const answer = await harness.call(name, args);
      if (answer.isError) return answer;
      const byZod = definitions.get(name)!.output.safeParse(answer.data);
      expect(byZod.success, `${name} answer vs its zod output schema: ${byZod.error?.message}`).toBe(true);
      const byListing = listed.get(name)?.(answer.data);
      expect(byListing?.valid, `${name} answer vs the outputSchema tools/list declares: ${byListing?.errorMessage ?? 'not listed'}`).toBe(true);
      checkedTools.add(name);
      return answer;
    },
  };
}

/** A plain copy of an emulator's maps (nested maps included), for before-and-after comparisons. */
export function mapsState(...maps: ReadonlyArray<Map<unknown, unknown>>): unknown {
  const plain = (value: unknown): unknown => {
    if (value instanceof Map) return [...value.entries()].map(([key, item]) => [key, plain(item)]);
    if (value instanceof Set) return [...value].map(plain);
    if (Array.isArray(value)) return value.map(plain);
    if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, plain(item)]));
    return value;
  };
  return maps.map(plain);
}

/** The files of a folder (names, sizes, modification times), for before-and-after comparisons. */
export function folderState(dir: string): Array<[string, number, number]> {
  return readdirSync(dir)
    .sort()
    .map((name) => {
      const info = statSync(join(dir, name));
      return [name, info.size, info.mtimeMs];
    });
}
