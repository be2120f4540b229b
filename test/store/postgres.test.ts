import { readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresVolumeStore } from '../../src/store/postgres.js';
import { postgresPrerequisites, startPostgres, type PostgresFixture } from '../postgres/fixture.js';
import { defineStoreBehaviours, record, snapshotRecord } from './behaviours.js';

const missing = postgresPrerequisites();

if (missing && process.env.CI !== 'true') {
  describe.skip(`PostgreSQL volume store (${missing})`, () => {
    it('runs where PostgreSQL 15 is installed', () => undefined);
  });
} else if (missing) {
  describe('PostgreSQL volume store', () => {
    it('has its prerequisites under CI', () => {
      throw new Error(`the PostgreSQL suite ${missing}; .ci/run must install them`);
    });
  });
} else {
  let fixture: PostgresFixture;
  beforeAll(async () => {
    fixture = await startPostgres();
  });
  afterAll(async () => {
    await fixture?.stop();
  });
  defineStoreBehaviours('postgresql', async () => PostgresVolumeStore.open(await fixture.createDatabase()));

  const query = async (url: string, sql: string, params: unknown[] = []) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query(sql, params)).rows;
    } finally {
      await client.end();
    }
  };
  /** Tables, columns (type, nullability, collation, default) and index definitions, order aside. */
  const schemaOf = async (url: string) => ({
    columns: await query(
      url,
      `SELECT table_name, column_name, data_type, is_nullable, collation_name, column_default FROM information_schema.columns
       WHERE table_schema = current_schema() ORDER BY table_name, column_name`,
    ),
    indexes: await query(url, 'SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY indexname'),
  });
  const legacy = (version: number) => readFileSync(new URL(`./fixtures/postgres-schema-v${version}.sql`, import.meta.url), 'utf8');

  describe('postgresql schema upgrades', () => {
    it('opens databases schema versions 1 and 2 wrote, keeping their records, with the schema of a new one, once when servers start together', async () => {
      const fresh = await fixture.createDatabase('fresh');
      await (await PostgresVolumeStore.open(fresh)).close();
      for (const version of [1, 2]) {
        const url = await fixture.createDatabase(`legacy${version}`);
        await query(url, 'CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
        for (let step = 1; step <= version; step++) {
          await query(url, legacy(step));
          await query(url, 'INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [step, 'then']);
        }
        await query(
          url,
          `INSERT INTO volumes (id, backend, name, description, size, status, pool_name, bootable, created_at, updated_at) VALUES ($1, 'b', 'old', '', 1, 'available', 'p', true, 't', 't')`,
          [record(version).id],
        );
        const stores = await Promise.all([1, 2, 3].map(() => PostgresVolumeStore.open(url)));
        expect(await stores[0].volumes.get(record(version).id)).toMatchObject({ name: 'old', bootable: true, cinderlib_extra: null });
        await Promise.all(stores.map((store) => store.close()));
        expect((await query(url, 'SELECT version FROM schema_migrations ORDER BY version')).map((row) => row.version)).toEqual([1, 2]);
        expect(await schemaOf(url)).toEqual(await schemaOf(fresh));
      }
    });

    it('adds a column declared after the database was written', async () => {
      const url = await fixture.createDatabase('later');
      await (await PostgresVolumeStore.open(url)).close();
      await query(url, 'ALTER TABLE snapshots DROP COLUMN cinderlib_extra'); // as a database from before that column
      const store = await PostgresVolumeStore.open(url);
      const snapshot = snapshotRecord({ backend: 'b', name: 's' });
      await store.snapshots.insert(snapshot);
      expect(await store.snapshots.get(snapshot.id)).toMatchObject({ cinderlib_extra: { user_id: 'u' } });
      await store.close();
    });
  });
}
