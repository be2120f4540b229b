import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startMcpServer } from '../helpers/server.js';

/**
 * Contract section 11: the metadata store holds provider_auth (CHAP secrets), so it and its
 * -wal, -shm and lock side files are 0600, in a folder made 0700: no other local user reads them;
 * the file driver's images and folder likewise.
 */
describe('secrets at rest', () => {
  it("the embedded default's metadata store, its WAL files and its locks are private to the server's user", async () => {
    const server = await startMcpServer(null);
    const dataDir = join(server.workDir, 'data', 'cinderlib-mcp');
    try {
      const volume = await server.call('create_volume', { backend: 'default', size: 1 });
      expect(volume.isError, volume.text).toBe(false);
      const files = readdirSync(dataDir).filter((name) => name.startsWith('metadata.sqlite'));
      expect(files.sort()).toEqual(expect.arrayContaining(['metadata.sqlite', 'metadata.sqlite-shm', 'metadata.sqlite-wal', 'metadata.sqlite.lock', 'metadata.sqlite.lock.holder']));
      for (const name of files) expect([name, (statSync(join(dataDir, name)).mode & 0o777).toString(8)]).toEqual([name, '600']);
      expect((statSync(dataDir).mode & 0o777).toString(8)).toBe('700');
      const volumesDir = join(dataDir, 'volumes');
      // The volume images hold users' data: theirs alone as well.
      expect((statSync(volumesDir).mode & 0o777).toString(8)).toBe('700');
      expect(readdirSync(volumesDir).length).toBeGreaterThan(1);
      for (const name of readdirSync(volumesDir)) {
        expect([name, (statSync(join(volumesDir, name)).mode & 0o077).toString(8)]).toEqual([name, '0']);
      }
    } finally {
      await server.close();
    }
  });
});
