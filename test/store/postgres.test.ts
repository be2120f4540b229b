import { afterAll, beforeAll, describe, it } from 'vitest';
import { PostgresVolumeStore } from '../../src/persistence/postgres.js';
import { postgresPrerequisites, startPostgres, type PostgresFixture } from '../postgres/fixture.js';
import { defineStoreBehaviours } from './behaviours.js';

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
}
