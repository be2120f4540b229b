import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/base/log.js';
import { openVolumeStore } from '../../src/store/index.js';
import { MemoryVolumeStore } from '../../src/store/memory.js';
import { PostgresVolumeStore } from '../../src/store/postgres.js';
import type { VolumeStore } from '../../src/store/store.js';
import { postgresPrerequisites, startPostgres, type PostgresFixture } from '../postgres/fixture.js';
import { record } from '../store/behaviours.js';

/** list_volumes' and list_snapshots' name filter in each store engine: a case-insensitive substring, LIKE's wildcards literal. */
const missing = postgresPrerequisites();
let root: string;
let postgres: PostgresFixture | undefined;
const opened: VolumeStore[] = [];
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-names-'));
  if (!missing) postgres = await startPostgres();
});
afterAll(async () => {
  await Promise.allSettled(opened.map((store) => store.close()));
  await postgres?.stop();
  rmSync(root, { recursive: true, force: true });
});

const engines: Array<[string, () => Promise<VolumeStore>]> = [
  ['memory', async () => new MemoryVolumeStore()],
  ['SQLite', () => openVolumeStore({ storage: 'db', path: join(root, 'meta.sqlite') }, { log: createLogger('test') })],
  ['PostgreSQL', async () => PostgresVolumeStore.open(await postgres!.createDatabase())],
];

describe.each(engines)('name filter on %s', (engine, open) => {
  it('matches a case-insensitive substring, wildcards taken literally, with the other filters and paging', async () => {
    if (engine === 'PostgreSQL' && missing) {
      if (process.env.CI === 'true') throw new Error(`PostgreSQL ${missing}`);
      return;
    }
    const store = await open();
    opened.push(store);
    const names = ['Alpha', 'beta 100%', 'Gamma_1', 'ALPHABET', 'a\\b'];
    for (const [i, name] of names.entries()) await store.volumes.insert(record(i + 1, { name, backend: 'b' }));
    const found = async (name: string, extra: object = {}) => (await store.volumes.list({ name, limit: 10, ...extra })).records.map((r) => r.name);
    expect(await found('alpha')).toEqual(['Alpha', 'ALPHABET']);
    expect(await found('%')).toEqual(['beta 100%']);
    expect(await found('_')).toEqual(['Gamma_1']);
    expect(await found('\\')).toEqual(['a\\b']);
    expect(await found('ALPHA', { status: 'error' })).toEqual([]);
    const first = await store.volumes.list({ name: 'a', limit: 2 });
    expect(first.records.map((r) => r.name)).toEqual(['Alpha', 'beta 100%']);
    const second = await store.volumes.list({ name: 'a', limit: 10, after: first.nextAfter });
    expect(second.records.map((r) => r.name)).toEqual(['Gamma_1', 'ALPHABET', 'a\\b']);
  });
});
