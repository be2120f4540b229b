import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { StorageError } from '../../src/base/errors.js';
import { openVolumeStore } from '../../src/store/index.js';
import { POSTGRES_SCHEMA_VERSION, PostgresVolumeStore, type PostgresOpenOptions } from '../../src/store/postgres.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { freePort, postgresPrerequisites, relay, startPostgres, type PostgresFixture } from './fixture.js';
import { record } from '../store/behaviours.js';

const missing = postgresPrerequisites();
const inCi = process.env.CI === 'true';

let fixture: PostgresFixture;

/** Every spelling the password could leak in. */
function expectNoPassword(text: string): void {
  const password = fixture.password;
  for (const form of [password, encodeURIComponent(password), password.slice(0, 12)]) expect(text).not.toContain(form);
}

if (missing && !inCi) {
  describe.skip(`PostgreSQL metadata store (${missing})`, () => {
    it('runs where PostgreSQL 15 is installed', () => undefined);
  });
} else if (missing) {
  describe('PostgreSQL metadata store', () => {
    it('has its prerequisites under CI', () => {
      throw new Error(`the PostgreSQL suite ${missing}; .ci/run must install them`);
    });
  });
} else {
  const opened: PostgresVolumeStore[] = [];
  const open = async (url: string, options: PostgresOpenOptions = {}): Promise<PostgresVolumeStore> => {
    const store = await PostgresVolumeStore.open(url, options);
    opened.push(store);
    return store;
  };
  /** Two servers on one database: two stores, two pools. */
  const twoServers = async (options: PostgresOpenOptions = {}) => {
    const url = await fixture.createDatabase();
    return { url, a: await open(url, options), b: await open(url, options) };
  };
  const query = async (url: string, sql: string, params: unknown[] = []) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query(sql, params)).rows;
    } finally {
      await client.end();
    }
  };
  const later = (ms: number) => new Date(Date.now() + ms).toISOString();
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  beforeAll(async () => {
    fixture = await startPostgres();
  });
  afterAll(async () => {
    await Promise.allSettled(opened.map((store) => store.close()));
    await fixture?.stop();
  });

  describe('postgresql store', () => {
    it('describes itself by database, host and port, never the password', async () => {
      const url = await fixture.createDatabase('described');
      const store = await open(url);
      expect(store.description).toBe(`PostgreSQL ${new URL(url).pathname.slice(1)} on ${fixture.host}:${fixture.port}`);
      expectNoPassword(store.description);
      expect(store.shared).toBeDefined();
    });

    it('opens the SQLAlchemy spellings, postgresql+psycopg2:// and postgres://', async () => {
      const url = await fixture.createDatabase('spelled');
      for (const scheme of ['postgresql+psycopg2', 'postgres']) {
        const store = await open(url.replace(/^postgresql/, scheme));
        await store.volumes.insert(record(1));
        expect((await store.volumes.get(record(1).id))?.name).toBe('v1');
      }
    });

    it('migrates once when several servers start at once, and refuses a schema newer than itself', async () => {
      const url = await fixture.createDatabase('migrated');
      await Promise.all([open(url), open(url), open(url)]);
      const rows = await query(url, 'SELECT version FROM schema_migrations ORDER BY version');
      expect(rows.map((row) => row.version)).toEqual(Array.from({ length: POSTGRES_SCHEMA_VERSION }, (_, i) => i + 1));
      const tables = (await query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")).map((row) => row.tablename);
      expect(tables).toEqual([
        'audit_log',
        'backend_fingerprints',
        'capacity_domains',
        'capacity_holds',
        'connections',
        'requests',
        'schema_migrations',
        'servers',
        'snapshots',
        'tombstones',
        'volumes',
      ]);
      await query(url, "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'future')");
      const refused = PostgresVolumeStore.open(url);
      await expect(refused).rejects.toMatchObject({
        code: 'BACKEND_UNAVAILABLE',
        message: expect.stringMatching(/schema version 99, newer than this cinderlib-mcp understands \(\d+\); upgrade/),
      });
    });

    it('never shows the password: a wrong one, an unreachable port', async () => {
      const url = await fixture.createDatabase('secret');
      const wrong = fixture.urlWith(url, { password: `${fixture.password}-wrong` });
      const wrongError = await PostgresVolumeStore.open(wrong).catch((error: unknown) => error);
      expect(wrongError).toBeInstanceOf(StorageError);
      expect(wrongError).toMatchObject({
        code: 'BACKEND_UNAVAILABLE',
        message: expect.stringMatching(/^cannot open the metadata store PostgreSQL secret_\S+ on 127\.0\.0\.1:\d+: .*password authentication failed/),
      });
      expectNoPassword((wrongError as Error).message);
      expect((wrongError as Error).message).not.toContain('-wrong');
      expectNoPassword(JSON.stringify(wrongError));

      const closedPort = await freePort();
      const unreachable = await PostgresVolumeStore.open(fixture.urlWith(url, { port: closedPort }), { connectTimeoutMs: 2_000 }).catch((error: unknown) => error);
      expect(unreachable).toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringContaining(`on 127.0.0.1:${closedPort}: `) });
      expect((unreachable as Error).message).toMatch(/ECONNREFUSED/);
      expectNoPassword((unreachable as Error).message);
    });

    it('answers BACKEND_UNAVAILABLE naming the store while PostgreSQL is unreachable, and works again once it is back', async () => {
      const url = await fixture.createDatabase('lost');
      const link = await relay(fixture.port);
      try {
        const store = await open(fixture.urlWith(url, { port: link.port }), { connectTimeoutMs: 2_000 });
        await store.volumes.insert(record(1));
        await link.cut();
        const lost = await store.volumes.get(record(1).id).catch((error: unknown) => error);
        expect(lost).toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringContaining(`the metadata store ${store.description} is unavailable`) });
        expectNoPassword((lost as Error).message);
        await expect(store.volumes.update(record(1).id, { status: 'deleting' })).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
        await expect(store.shared.holdKeys(['volume:x'], async () => 1)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
        await link.restore();
        expect((await store.volumes.get(record(1).id))?.name).toBe('v1');
      } finally {
        await link.close();
      }
    });

    it('writes an update deferred while the store could not take it before its next write', async () => {
      const url = await fixture.createDatabase('deferred');
      const store = await open(url);
      const other = await open(url);
      await store.volumes.insert(record(1, { status: 'creating' }));
      store.volumes.defer(record(1).id, { status: 'available', provider_location: 'here' });
      expect(await store.volumes.get(record(1).id)).toMatchObject({ status: 'available', provider_location: 'here' });
      expect(await other.volumes.get(record(1).id)).toMatchObject({ status: 'creating', provider_location: null });
      await store.volumes.insert(record(2));
      expect(await other.volumes.get(record(1).id)).toMatchObject({ status: 'available', provider_location: 'here' });
    });

    it('takes a ${env:} password holding "@", "/" and "%" from the config, percent-encoded, and masks it', async () => {
      const url = new URL(await fixture.createDatabase('configured'));
      const secrets = new SecretRegistry();
      const template = `postgresql+psycopg2://${url.username}:\${env:PG_TEST_PASSWORD}@${url.hostname}:${url.port}${url.pathname}`;
      const config = parseConfig(
        { global: { persistence_config: { storage: 'db', connection: template } }, backends: [{ volume_backend_name: 'b', volume_driver: 'x' }] },
        'test.yaml',
        { env: { PG_TEST_PASSWORD: fixture.password }, secrets },
      );
      expect(config.global.persistence).toMatchObject({ storage: 'db', engine: 'postgresql' });
      const store = await openVolumeStore(config.global.persistence, { secrets });
      opened.push(store as PostgresVolumeStore);
      await store.volumes.insert(record(1));
      expect((await store.volumes.get(record(1).id))?.name).toBe('v1');
      const shown = secrets.redact(JSON.stringify(config.global.persistence));
      expectNoPassword(shown);
    });
  });

  describe('postgresql shared by two servers', () => {
    it('runs 100 operations at once on one server, each holding its lock and then deciding capacity, on pools of 2 connections', async () => {
      const store = await open(await fixture.createDatabase('burst'), { poolSize: 2, connectTimeoutMs: 2_000 });
      let inside = 0;
      let most = 0;
      const started = Date.now();
      const outcomes = await Promise.allSettled(
        Array.from({ length: 100 }, (_, i) =>
          store.shared.holdKeys([`volume:${i}`], async (held) => {
            inside++;
            most = Math.max(most, inside);
            const hold = await store.shared.holdCapacity('pool', 'burst-server', async () => 1);
            await store.volumes.insert(record(i + 1));
            await sleep(20); // the array's time
            held.check();
            await hold.release();
            inside--;
            return i;
          }),
        ),
      );
      const failed = outcomes.filter((outcome) => outcome.status === 'rejected').map((outcome) => String(outcome.reason));
      expect(failed).toEqual([]);
      expect(most).toBeGreaterThan(2); // more operations held locks at once than there are connections
      expect(Date.now() - started).toBeLessThan(15_000);
      expect((await store.volumes.list({ limit: 200 })).records).toHaveLength(100);
    });

    it('holdKeys excludes across servers: the second waits its turn, or gets BACKEND_BUSY naming the key', async () => {
      const { a, b } = await twoServers({ lockTimeoutMs: 800 });
      const events: string[] = [];
      let finishA!: () => void;
      const aHolds = new Promise<void>((resolve) => (finishA = resolve));
      let aStarted!: () => void;
      const started = new Promise<void>((resolve) => (aStarted = resolve));
      const first = a.shared.holdKeys(['volume:1', 'snapshot:2'], async () => {
        events.push('a start');
        aStarted();
        await aHolds;
        events.push('a end');
        return 'a';
      });
      await started;
      const busy = await b.shared.holdKeys(['snapshot:2'], async () => events.push('b ran beside a')).catch((error: unknown) => error);
      expect(busy).toBeInstanceOf(StorageError);
      expect(busy).toMatchObject({ code: 'BACKEND_BUSY', message: expect.stringMatching(/^snapshot:2 is busy: another server is operating on it/) });
      // Another key is free meanwhile.
      expect(await b.shared.holdKeys(['volume:3'], async () => 'free')).toBe('free');
      // A wait shorter than the lock timeout: b runs after a, never beside it.
      const second = b.shared.holdKeys(['volume:1'], async () => {
        events.push('b start');
        return 'b';
      });
      await sleep(300);
      finishA();
      expect(await Promise.all([first, second])).toEqual(['a', 'b']);
      expect(events).toEqual(['a start', 'a end', 'b start']);
      // Released, also after a task that throws.
      await expect(a.shared.holdKeys(['volume:1'], async () => Promise.reject(new Error('task failed')))).rejects.toThrow('task failed');
      expect(await b.shared.holdKeys(['volume:1'], async () => 'again')).toBe('again');
    });

    it('holdCapacity never lets two servers both see room for the last GiB: 20 holds of 1 GiB, 10 GiB, exactly 10 succeed', async () => {
      const { url, a, b } = await twoServers();
      const ownHeld: Record<string, number> = { 'server-a': 0, 'server-b': 0 };
      const attempt = (store: PostgresVolumeStore, owner: string) =>
        store.shared.holdCapacity('pool-1', owner, async ({ heldByOthersGb: heldByOthers }) => {
          await sleep(5); // a decision takes a moment: the window a race would need
          if (heldByOthers + ownHeld[owner] + 1 > 10) throw new StorageError('OUT_OF_CAPACITY', 'pool-1 is full');
          ownHeld[owner] += 1;
          return 1;
        });
      const outcomes = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => (i % 2 ? attempt(a, 'server-a') : attempt(b, 'server-b'))));
      const held = outcomes.filter((outcome) => outcome.status === 'fulfilled');
      expect(held).toHaveLength(10);
      for (const outcome of outcomes) if (outcome.status === 'rejected') expect(outcome.reason).toMatchObject({ code: 'OUT_OF_CAPACITY' });
      expect((await query(url, "SELECT SUM(gb)::int AS gb FROM capacity_holds WHERE domain = 'pool-1'"))[0].gb).toBe(10);
      // Another domain is not affected; released holds free their GiB for the other server.
      let seen = -1;
      await (await a.shared.holdCapacity('pool-2', 'server-a', async ({ heldByOthersGb }) => ((seen = heldByOthersGb), 0))).release();
      expect(seen).toBe(0);
      for (const outcome of held) await (outcome as PromiseFulfilledResult<{ release(): Promise<number | undefined> }>).value.release();
      await (await b.shared.holdCapacity('pool-1', 'server-b', async ({ heldByOthersGb }) => ((seen = heldByOthersGb), 0))).release();
      expect(seen).toBe(0);
    });

    it('holds whose owner stops renewing lapse; renewed ones stay', async () => {
      const url = await fixture.createDatabase();
      const short = await open(url, { holdLeaseMs: 1_500 });
      const other = await open(url);
      await short.shared.holdCapacity('pool', 'dying', async () => 4);
      await short.shared.holdCapacity('pool', 'living', async () => 2);
      let seen = -1;
      const look = async () => (await other.shared.holdCapacity('pool', 'observer', async ({ heldByOthersGb }) => ((seen = heldByOthersGb), 0))).release();
      await look();
      expect(seen).toBe(6);
      await short.renewLeases('living', later(60_000));
      await sleep(1_700);
      await look();
      expect(seen).toBe(2);
      // leave forgets what the server still held.
      await short.shared.leave('living');
      await look();
      expect(seen).toBe(0);
    });

    it("a domain's change count moves with every release, told change and lapsed hold, so servers know when to count anew", async () => {
      const url = await fixture.createDatabase();
      const a = await open(url, { holdLeaseMs: 1_000 });
      const b = await open(url, { lockTimeoutMs: 500 });
      const count = async (store: PostgresVolumeStore) => {
        let changes = -1;
        await (await store.shared.holdCapacity('pool', 'observer', async (room) => ((changes = room.changes), 0))).release();
        return changes;
      };
      expect(await count(a)).toBe(0); // a domain no one changed yet
      const hold = await a.shared.holdCapacity('pool', 'server-a', async () => 3);
      expect(await count(b)).toBe(0); // held, not yet changed: the hold itself is counted by GiB
      expect(await hold.release()).toBe(1);
      expect(await count(b)).toBe(1);
      expect(await b.shared.noteCapacityChange('pool')).toBe(2); // a delete, told by another server
      expect(await count(a)).toBe(2);
      expect(await count(a)).toBe(2); // a decision holding nothing changes nothing
      expect(await b.shared.noteCapacityChange('other-pool')).toBe(1); // per domain
      // A hold whose owner died lapses: forgetting it is a change (its array object may exist now).
      await a.shared.holdCapacity('pool', 'dead-server', async () => 5);
      await sleep(1_200);
      expect(await count(b)).toBe(3);
      expect(await count(b)).toBe(3);
      // A decision that waits too long for the domain's lock is BACKEND_BUSY, and its connection stays usable.
      let letGo!: () => void;
      const slow = a.shared.holdCapacity('pool', 'server-a', () => new Promise<number>((resolve) => (letGo = () => resolve(0))));
      await sleep(100);
      await expect(b.shared.holdCapacity('pool', 'server-b', async () => 1)).rejects.toMatchObject({ code: 'BACKEND_BUSY' });
      letGo();
      await (await slow).release();
      for (let i = 0; i < 12; i++) expect(await count(b)).toBe(3); // every pooled connection answers again
    });

    it("opens beside a running server's open transactions without waiting for them: an up-to-date schema takes no lock on its tables", async () => {
      const url = await fixture.createDatabase();
      await (await open(url)).close();
      // A running server mid-transaction, with rows written in two tables (as a create's capacity hold and intent are).
      const running = new pg.Client({ connectionString: url });
      await running.connect();
      try {
        await running.query("BEGIN; INSERT INTO capacity_holds (id, domain, gb, owner, lease_expires_at) VALUES ('h', 'pool', 1, 'a', '9999')");
        await running.query(
          'INSERT INTO volumes (id, backend, name, description, size, status, pool_name, bootable, created_at, updated_at) VALUES ($1, $2, $3, $4, 1, $5, $6, false, $7, $7)',
          ['v', 'b', 'n', '', 'creating', 'p', 'now'],
        );
        const started = Date.now();
        const starting = await open(url, { statementTimeoutMs: 5_000, lockTimeoutMs: 5_000 });
        expect(Date.now() - started).toBeLessThan(4_000);
        expect(await starting.volumes.get('v')).toBeUndefined(); // not committed: not seen, and not waited for
      } finally {
        await running.query('ROLLBACK').catch(() => undefined);
        await running.end();
      }
    });

    it("join refuses a twin while the holder's database session lives, naming it, and takes the identity at once when that session ends", async () => {
      const { url, a, b } = await twoServers({ joinGraceMs: 300 });
      expect(await a.shared.join('host-1', 'server A (pid 1 on alpha)', later(1_500))).toEqual({ joined: true });
      expect(await b.shared.join('host-1', 'server B', later(30_000))).toEqual({ joined: false, holder: 'server A (pid 1 on alpha)' });
      expect(await b.shared.join('host-2', 'server B', later(30_000))).toEqual({ joined: true }); // another identity is welcome
      await sleep(1_700);
      // A lapsed lease is not death: A's session lives, so the identity is still A's.
      expect((await b.shared.join('host-1', 'server B', later(30_000))).joined).toBe(false);
      await a.shared.leave('host-1');
      expect(await b.shared.join('host-1', 'server B', later(30_000))).toEqual({ joined: true });
      // B dies without leaving (its session ends, as with kill -9): the identity is free at once.
      await b.close();
      const c = await open(url, { joinGraceMs: 300 });
      const asked = Date.now();
      expect(await c.shared.join('host-1', 'server C', later(30_000))).toEqual({ joined: true });
      expect(Date.now() - asked).toBeLessThan(1_000);
    });

    it('an operation whose lock session is terminated learns it; the server takes its identity back and locks again', async () => {
      const url = await fixture.createDatabase('dropped');
      const lines: string[] = [];
      const log = { info: (line: string) => lines.push(`info ${line}`), warn: (line: string) => lines.push(`warn ${line}`), error: (line: string) => lines.push(`error ${line}`) };
      const store = await open(url, { log, joinGraceMs: 300 });
      expect(await store.shared.join('host-d', 'server D', later(30_000))).toEqual({ joined: true });
      let observed: unknown;
      let finish!: () => void;
      let entered!: () => void;
      const inside = new Promise<void>((resolve) => (entered = resolve));
      const operation = store.shared.holdKeys(['volume:slow'], async (held) => {
        entered();
        await new Promise<void>((resolve) => (finish = resolve)); // the slow array call
        try {
          held.check();
        } catch (error) {
          observed = error;
        }
        return held.signal.aborted;
      });
      await inside;
      const terminated = await query(
        url,
        "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cinderlib-mcp locks'",
      );
      expect(terminated).toEqual([{ done: true }]);
      await sleep(200);
      finish();
      expect(await operation).toBe(true);
      expect(observed).toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringMatching(/was lost .*stopped before its next array call/) });
      expectNoPassword(String((observed as Error).message));
      // The key is free for another server at once; the identity comes back to this one.
      const other = await open(url, { joinGraceMs: 300 });
      expect(await other.shared.holdKeys(['volume:slow'], async () => 'free')).toBe('free');
      const deadline = Date.now() + 10_000;
      while (!lines.some((line) => line.startsWith('info took identity host-d back')) && Date.now() < deadline) await sleep(100);
      expect(lines.find((line) => line.startsWith('warn '))).toMatch(/identity host-d and its cluster-wide locks .* dropped/);
      expect(lines.some((line) => line.startsWith('info took identity host-d back'))).toBe(true);
      expect((await other.shared.join('host-d', 'twin', later(30_000))).joined).toBe(false);
      expect(await store.shared.holdKeys(['volume:slow'], async () => 'again')).toBe('again');
    });

    it("surfaceInterrupted from one server never touches another live server's records, and two recoveries at once recover each record once", async () => {
      const { a, b } = await twoServers();
      const soon = later(60_000);
      const past = new Date(Date.now() - 1_000).toISOString();
      await b.volumes.insert(record(1, { status: 'creating', owner: 'server-b', lease_expires_at: soon }));
      await b.volumes.insert(record(2, { status: 'extending', owner: 'server-a', lease_expires_at: soon }));
      await b.volumes.insert(record(3, { status: 'deleting', owner: 'server-c', lease_expires_at: past }));
      await b.connections.insert({
        id: 'c1',
        volume_id: record(1).id,
        backend: 'odd',
        status: 'attached',
        attach_mode: 'rw',
        connector: {},
        connection_info: {},
        device: null,
        created_at: soon,
        updated_at: soon,
        status_reason: null,
        owner: 'server-b',
        lease_expires_at: soon,
      });
      const now = new Date().toISOString();
      const [fromA, fromB] = await Promise.all([
        a.surfaceInterrupted({ owner: 'server-a', now, includeOwn: true }, () => 'a restarted'),
        b.surfaceInterrupted({ owner: 'server-b', now, includeOwn: false }, () => 'b looked'),
      ]);
      const recovered = [...fromA.volumes, ...fromB.volumes].map((volume) => volume.size).sort();
      expect(recovered).toEqual([2, 3]); // each once, by whichever got there first
      expect(fromA.volumes.map((volume) => volume.size)).toContain(2);
      expect(await a.volumes.get(record(1).id)).toMatchObject({ status: 'creating', owner: 'server-b' });
      expect(await a.connections.get('c1')).toMatchObject({ status: 'attached', owner: 'server-b' });
      expect([...fromA.connections, ...fromB.connections]).toEqual([]);
    });

    it('one request_id retried on two servers at once makes one volume', async () => {
      const { a, b } = await twoServers();
      const entry = (object: number) => ({
        request_id: 'retry',
        tool: 'create_volume',
        fingerprint: '{}',
        object_kind: 'volume' as const,
        object_id: record(object).id,
        created_at: new Date().toISOString(),
      });
      const outcomes = await Promise.all([a.volumes.insert(record(1), entry(1)), b.volumes.insert(record(2), entry(2))]);
      expect(outcomes.filter((outcome) => outcome.inserted)).toHaveLength(1);
      expect((await a.volumes.list({ limit: 10 })).records).toHaveLength(1);
    });
  });
}
