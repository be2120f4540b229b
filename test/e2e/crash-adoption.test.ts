import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteVolumeStore } from '../../src/store/sqlite.js';
import { RawMcpServer, toolText } from '../helpers/raw-server.js';

/**
 * An adoption (manage_volume) interrupted by a crash: its intent record is written first, then the
 * array volume is renamed volume-<id> (as Cinder renames it), then the record says available. A
 * server killed between the rename and that last write leaves a record "creating" and the user's
 * data under the new name. The restarted server must surface it as an adoption never confirmed,
 * and delete_volume must forget the record and leave the data, never delete it as it deletes the
 * leftovers of an unconfirmed create. The crash state is written as that kill leaves it (the rename
 * is one system call: no kill lands inside it reliably), on a real SQLite file and folder.
 */
const root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-crash-adoption-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const HOST = 'adoption-host';
const MIB = 1024 * 1024;
const DATA = 'the user data this volume held before it was adopted';

function config(volumesDir: string, sqlitePath: string): string {
  const path = join(root, 'config.json');
  writeFileSync(
    path,
    JSON.stringify({
      global: { host: HOST, persistence_config: { storage: 'db', connection: `sqlite:///${sqlitePath}` } },
      backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: volumesDir }],
    }),
  );
  return path;
}

describe('an adoption interrupted by a crash', () => {
  it('is surfaced as an adoption never confirmed, and delete_volume forgets it without deleting the adopted data', async () => {
    const volumesDir = join(root, 'volumes');
    const sqlitePath = join(root, 'meta.sqlite');
    const configPath = config(volumesDir, sqlitePath);
    // A first server makes the folder and the store, then stops.
    const first = new RawMcpServer(configPath, { XDG_DATA_HOME: join(root, 'xdg') });
    await first.initialize();
    expect((await first.call('get_stats', { backend: 'files' })).result?.isError).toBeFalsy();
    await first.close();

    // What a kill between the rename and the last write leaves: the intent, and the data under its new name.
    const id = randomUUID();
    const renamed = join(volumesDir, `volume-${id}`);
    writeFileSync(renamed, DATA);
    truncateSync(renamed, MIB);
    const store = new SqliteVolumeStore(sqlitePath);
    const now = new Date().toISOString();
    await store.volumes.insert({
      id,
      backend: 'files',
      name: 'adopted',
      description: '',
      size: 1,
      status: 'creating',
      pool_name: 'files',
      bootable: false,
      created_at: now,
      updated_at: now,
      status_reason: null,
      provider_location: null,
      snapshot_id: null,
      source_volume_id: null,
      failed_operation: 'manage',
      owner: HOST,
      lease_expires_at: new Date(Date.now() + 60_000).toISOString(),
    });
    await store.close();

    const server = new RawMcpServer(configPath, { XDG_DATA_HOME: join(root, 'xdg') });
    await server.initialize();
    try {
      const surfaced = (await server.call('get_volume', { volume_id: id })).result?.structuredContent as { status: string; status_reason: string };
      expect(surfaced.status).toBe('error');
      expect(surfaced.status_reason).toMatch(/^interrupted while adopting an array volume: .*delete_volume forgets this record and leaves that array volume/);

      const deleted = await server.call('delete_volume', { volume_id: id });
      expect(deleted.result?.isError, toolText(deleted)).toBeFalsy();
      expect(toolText(await server.call('get_volume', { volume_id: id }))).toMatch(/^NOT_FOUND: /);
      // The data is where the adoption left it, whole.
      expect(existsSync(renamed)).toBe(true);
      expect(readFileSync(renamed).subarray(0, DATA.length).toString()).toBe(DATA);

      // Listed as an array volume no record knows, and adopted again.
      const unmanaged = (await server.call('list_unmanaged', { backend: 'files' })).result?.structuredContent as { volumes: Array<{ reference: { 'source-name': string } }> };
      expect(unmanaged.volumes.map((entry) => entry.reference['source-name'])).toContain(`volume-${id}`);
      const again = await server.call('manage_volume', { backend: 'files', reference: { 'source-name': `volume-${id}` }, name: 'adopted again' });
      expect(again.result?.isError, toolText(again)).toBeFalsy();
      const adopted = again.result?.structuredContent as { id: string; status: string };
      expect(adopted.status).toBe('available');
      expect(
        readFileSync(join(volumesDir, `volume-${adopted.id}`))
          .subarray(0, DATA.length)
          .toString(),
      ).toBe(DATA);
    } finally {
      await server.close();
    }
  });
});
