import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pgDriver from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XmsEmulator } from '../emulators/xtremio/server.js';
import { RawMcpServer, SERVER_BIN, toolText, type RawAnswer } from '../helpers/raw-server.js';
import { BIN, REPO_ROOT } from '../helpers/server.js';
import { postgresPrerequisites, relay, startPostgres, type PostgresFixture } from '../postgres/fixture.js';
import { startHttpServerProcess } from '../helpers/http-server.js';

/**
 * Contract section 10 with several real server processes on one real PostgreSQL and one array
 * (the XMS emulator, 20 GiB, over-subscription 1): concurrent creates on two servers never
 * overbook the pool; one operation per volume across servers; a server killed mid-operation is
 * recovered by the other once its lease lapses, never before; a twin identity and an unreachable
 * database are refused at start-up; the audit log is shared.
 */
const missing = postgresPrerequisites();
const inCi = process.env.CI === 'true';
const PASSWORD = 'xms-Several-pw-2207';
const POOL_GB = 20;

const data = (answer: RawAnswer) => {
  if (answer.result?.isError) throw new Error(toolText(answer));
  return answer.result!.structuredContent;
};

if (missing && !inCi) {
  describe.skip(`several servers on one PostgreSQL (${missing})`, () => {
    it('runs where its prerequisites are', () => undefined);
  });
} else if (missing) {
  describe('several servers on one PostgreSQL', () => {
    it('has its prerequisites under CI', () => {
      throw new Error(`the several-servers suite ${missing}; .ci/run must install and start PostgreSQL`);
    });
  });
} else {
  describe('several servers on one PostgreSQL', () => {
    let pg: PostgresFixture;
    let xms: XmsEmulator;
    let root: string;
    let url: string;
    const servers: RawMcpServer[] = [];

    beforeAll(async () => {
      pg = await startPostgres();
      xms = await new XmsEmulator({ password: PASSWORD, physicalGb: POOL_GB, usedGb: 0 }).start();
      root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-several-'));
      url = await pg.createDatabase('several');
    }, 120_000);
    afterAll(async () => {
      await Promise.all(servers.map((server) => server.kill9()));
      await xms?.cleanup();
      await pg?.stop();
      rmSync(root, { recursive: true, force: true });
    });

    const configFor = (host: string, storeUrl = url, extra: { global?: Record<string, unknown>; backends?: object[] } = {}) => {
      const path = join(root, `${host}.json`);
      writeFileSync(
        path,
        JSON.stringify({
          global: { host, lease_seconds: 5, persistence_config: { storage: 'db', connection: storeUrl }, ...extra.global },
          backends: extra.backends ?? [xms.cinderBackend('xtremio', { max_over_subscription_ratio: 1, reserved_percentage: 0 })],
        }),
      );
      return path;
    };
    const start = async (host: string, storeUrl = url, extra: Parameters<typeof configFor>[2] = {}) => {
      const server = new RawMcpServer(configFor(host, storeUrl, extra), { XDG_DATA_HOME: join(root, host) });
      servers.push(server);
      await server.initialize();
      return server;
    };
    /** One statement on `storeUrl` as the test user, outside any server. */
    const sql = async (storeUrl: string, text: string, params: unknown[] = []) => {
      const client = new pgDriver.Client({ connectionString: storeUrl });
      await client.connect();
      try {
        return (await client.query(text, params)).rows;
      } finally {
        await client.end();
      }
    };
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const provisionedOnArray = () => [...xms.volumes.values()].reduce((sum, volume) => sum + volume.sizeKib / (1024 * 1024), 0);

    it('never overbooks a pool from two servers creating at once', async () => {
      const [a, b] = [await start('server-a'), await start('server-b')];
      const answers = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 ? a : b).call('create_volume', { backend: 'xtremio', size: 2, name: `race-${i}` }, 60_000)));
      const made = answers.filter((answer) => !answer.result?.isError);
      const refused = answers.filter((answer) => answer.result?.isError);
      expect(made.length).toBe(POOL_GB / 2);
      for (const answer of refused) expect(toolText(answer)).toMatch(/^OUT_OF_CAPACITY: /);
      expect(provisionedOnArray()).toBeLessThanOrEqual(POOL_GB);
      // Each server lists every volume, whichever made it.
      expect(data(await a.call('list_volumes', { backend: 'xtremio' })).volumes).toHaveLength(made.length);
      expect(data(await b.call('list_volumes', { backend: 'xtremio' })).volumes).toHaveLength(made.length);
      for (const answer of made) data(await a.call('delete_volume', { volume_id: data(answer).id }));
      expect(provisionedOnArray()).toBe(0);
    });

    it('runs one operation per volume across servers', async () => {
      const [a, b] = [servers[0], servers[1]];
      const volume = data(await a.call('create_volume', { backend: 'xtremio', size: 1 }));
      xms.slowDown({ method: 'PUT', pathIncludes: '/volumes', ms: 1_500 });
      const extend = a.call('extend_volume', { volume_id: volume.id, new_size: 2 }, 30_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      const deleted = await b.call('delete_volume', { volume_id: volume.id }, 60_000);
      const extended = await extend;
      expect(data(extended).size).toBe(2);
      // The delete waited for the extend (or was told the volume is busy); it never ran beside it.
      if (deleted.result?.isError) expect(toolText(deleted)).toMatch(/^BACKEND_BUSY: /);
      else expect(Date.now() - started).toBeGreaterThan(800);
      if (deleted.result?.isError) data(await b.call('delete_volume', { volume_id: volume.id }));
      expect([...xms.volumes.values()].filter((v) => v.name === volume.id)).toEqual([]);
    });

    it("recovers a killed server's operation when its lease lapses, and leaves a live server's alone", async () => {
      const [a, b] = [servers[0], servers[1]];
      xms.slowDown({ method: 'POST', pathIncludes: '/volumes', ms: 4_000 });
      const seen = xms.requests.length;
      a.callTool('create_volume', { backend: 'xtremio', size: 1, name: 'orphaned' });
      await a.until(() => xms.requests.slice(seen).some((line) => line.startsWith('POST ') && line.includes('/volumes')), 20_000, 'the create reaching the array');
      // While server A lives, B leaves its operation alone.
      const creating = data(await b.call('list_volumes', { backend: 'xtremio', status: 'creating' })).volumes;
      expect(creating.map((v: { name: string }) => v.name)).toEqual(['orphaned']);
      await a.kill9();
      // B serves on at once.
      expect(data(await b.call('get_stats', { backend: 'xtremio' })).backend).toBe('xtremio');
      // Before A's lease lapses (5 s) the record stays A's; after, B marks it.
      expect(data(await b.call('get_volume', { volume_id: creating[0].id })).status).toBe('creating');
      const deadline = Date.now() + 20_000;
      let record = data(await b.call('get_volume', { volume_id: creating[0].id }));
      while (record.status === 'creating' && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        record = data(await b.call('get_volume', { volume_id: creating[0].id }));
      }
      expect(record.status).toBe('error');
      expect(record.status_reason).toMatch(/server server-a stopped renewing its lease/);
      expect(data(await b.call('delete_volume', { volume_id: creating[0].id })).deleted).toBe(true);
    });

    it('refuses a second live server with the same identity, and an unreachable database, at start-up', async () => {
      const startRefused = async (host: string, storeUrl?: string) => {
        const server = new RawMcpServer(configFor(host, storeUrl), { XDG_DATA_HOME: join(root, `${host}-refused`) });
        await server.initialize();
        server.callTool('list_backends', {});
        return { code: await server.waitForExit(60_000), stderr: server.stderr };
      };
      const live = await start('server-d');
      data(await live.call('list_backends', {}));
      const twin = await startRefused('server-d');
      expect(twin.code).toBe(1);
      expect(twin.stderr).toMatch(/another live server with identity server-d/);
      // A server that crashed and restarts on its own host takes its identity back at once.
      await live.kill9();
      const restarted = await start('server-d');
      expect(data(await restarted.call('list_backends', {})).backends).toHaveLength(1);
      const down = await startRefused('server-c', pg.urlWith(url, { port: 1 }));
      expect(down.code).toBe(1);
      expect(down.stderr).toMatch(/PostgreSQL/);
      expect(down.stderr).not.toContain(new URL(url).password);
      expect(down.stderr).not.toContain(decodeURIComponent(new URL(url).password));
    });

    it('serves MCP over HTTP from the shared store; /healthz says 503 while the database is unreachable, 200 once it is back', async () => {
      const link = await relay(pg.port);
      const through = new URL(url);
      through.port = String(link.port);
      const token = 'healthz-token-5f2a9c';
      const configPath = configFor('server-http', through.toString(), { global: { http_tokens: [{ name: 'ops', token }] } });
      const server = await startHttpServerProcess(configPath, { ...process.env, XDG_DATA_HOME: join(root, 'server-http'), CINDERLIB_MCP_LOG_LEVEL: 'info' });
      try {
        const health = async (bearer?: string) => {
          const response = await fetch(`${server.base}/healthz`, bearer ? { headers: { Authorization: `Bearer ${bearer}` } } : {});
          return { status: response.status, body: (await response.json()) as { status: string; reason?: string } };
        };
        expect(await health()).toEqual({ status: 200, body: { status: 'ok' } });
        await link.cut();
        // Without a token (or with a wrong one): the state alone, nothing of the store's address or user.
        for (const bearer of [undefined, 'not-the-token']) {
          const down = await health(bearer);
          expect(down).toEqual({ status: 503, body: { status: 'unavailable' } });
          const text = JSON.stringify(down.body);
          for (const revealing of [String(link.port), '127.0.0.1', 'localhost', 'PostgreSQL', decodeURIComponent(through.username), decodeURIComponent(through.password)]) {
            expect(text).not.toContain(revealing);
          }
        }
        // A valid token is told why.
        const told = await health(token);
        expect(told.status).toBe(503);
        expect(told.body.reason).toMatch(/PostgreSQL/);
        expect(JSON.stringify(told.body)).not.toContain(decodeURIComponent(new URL(url).password));
        await link.restore();
        const deadline = Date.now() + 15_000;
        let back = await health();
        while (back.status !== 200 && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 250));
          back = await health();
        }
        expect(back).toEqual({ status: 200, body: { status: 'ok' } });
      } finally {
        await server.stop();
        await link.close();
      }
    });

    it('check says whether the shared store answers, without writing to it, and never shows its password', async () => {
      const fresh = await pg.createDatabase('checked');
      // Asynchronous: the XMS emulator answers from this very process while check runs.
      const check = (storeUrl: string) =>
        new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
          execFile(
            process.execPath,
            [BIN, 'check', '--config', configFor('server-check', storeUrl)],
            { encoding: 'utf8', cwd: REPO_ROOT, env: { ...process.env, XDG_DATA_HOME: join(root, 'check') } },
            (error, stdout, stderr) => resolve({ status: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
          );
        });
      const up = await check(fresh);
      expect(up.stdout).toMatch(/^store\tPostgreSQL \S+ on 127\.0\.0\.1:\d+\treachable$/m);
      expect(up.status, up.stdout + up.stderr).toBe(0);
      const tables = spawnSync(
        process.execPath,
        [
          '-e',
          `const pg=require('pg');const c=new pg.Client(${JSON.stringify(fresh)});c.connect().then(()=>c.query("select count(*) from information_schema.tables where table_schema='public'")).then(r=>{console.log(r.rows[0].count);return c.end()})`,
        ],
        { encoding: 'utf8', cwd: REPO_ROOT },
      );
      expect(tables.stdout.trim()).toBe('0');
      const down = await check(pg.urlWith(fresh, { port: 1 }));
      expect(down.status).toBe(1);
      expect(down.stdout).toMatch(/^store\tPostgreSQL \S+ on 127\.0\.0\.1:1\tnot reachable: /m);
      expect(down.stdout + down.stderr).not.toContain(decodeURIComponent(new URL(url).password));
    });

    it('completes 100 concurrent creates on one server (no operation waits for a second database connection while holding one)', async () => {
      const big = await new XmsEmulator({ password: PASSWORD, physicalGb: 500, usedGb: 0 }).start();
      try {
        const server = await start('server-burst', await pg.createDatabase('burst'), {
          backends: [big.cinderBackend('big', { max_over_subscription_ratio: 1, reserved_percentage: 0 })],
        });
        data(await server.call('get_stats', { backend: 'big' }, 30_000));
        const started = Date.now();
        const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => server.call('create_volume', { backend: 'big', size: 1, name: `burst-${i}` }, 120_000)));
        const took = Date.now() - started;
        const failed = answers.filter((answer) => answer.result?.isError || answer.error).map((answer) => toolText(answer) ?? JSON.stringify(answer.error));
        expect(failed).toEqual([]);
        console.log(`100 concurrent create_volume on one server over PostgreSQL: ${took} ms`);
        expect([...big.volumes.values()]).toHaveLength(100);
        const deletes = await Promise.all(answers.map((answer) => server.call('delete_volume', { volume_id: data(answer).id }, 120_000)));
        expect(deletes.filter((answer) => answer.result?.isError).map(toolText)).toEqual([]);
        expect([...big.volumes.values()]).toHaveLength(0);
        await server.close();
      } finally {
        await big.cleanup();
      }
    });

    it("takes a killed server's identity back at once though its process is still a zombie (default 30 s lease), and still refuses a live twin", async () => {
      const host = 'server-zombie';
      const url = await pg.createDatabase('zombie'); // its own store, this test's alone
      const config = configFor(host, url, { global: { lease_seconds: 30 } });
      const env: Record<string, string> = {};
      for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('CINDERLIB_MCP_')) env[key] = value;
      Object.assign(env, { XDG_DATA_HOME: join(root, host), CINDERLIB_MCP_LOG_LEVEL: 'warn' });
      // perl forks the server and never reaps it: once killed, the server stays a zombie while perl lives.
      const parent: ChildProcess = spawn(
        'perl',
        ['-e', 'my $pid = fork(); die "fork: $!" unless defined $pid; if ($pid == 0) { exec(@ARGV) or exit 127 } sleep 600;', process.execPath, SERVER_BIN, '--config', config],
        {
          cwd: REPO_ROOT,
          env,
          stdio: ['pipe', 'ignore', 'ignore'], // stdin stays open: the stdio server serves until it ends
        },
      );
      // The server opens its store once a client has initialized (its cold start answers first).
      const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'zombie-test', version: '1' } } };
      parent.stdin!.write(`${JSON.stringify(initialize)}\n${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
      try {
        // The server's pid, from the description it registered under.
        let pid = 0;
        const deadline = Date.now() + 30_000;
        while (!pid && Date.now() < deadline) {
          const rows = await sql(url, 'SELECT description FROM servers WHERE server_id = $1', [host]).catch(() => []); // no schema until the server made it
          const match = rows[0] ? /^pid (\d+) on /.exec(rows[0].description as string) : null;
          if (match && Number(match[1]) !== parent.pid) pid = Number(match[1]);
          else await sleep(100);
        }
        expect(pid).toBeGreaterThan(0);
        process.kill(pid, 'SIGKILL');
        const state = () => (existsSync(`/proc/${pid}/stat`) ? /^\d+ \(.*\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1] : undefined);
        while (state() !== 'Z' && Date.now() < deadline) await sleep(20);
        expect(state()).toBe('Z'); // dead, unreaped: kill(pid, 0) still succeeds on it
        const killedAt = Date.now();
        const restarted = await start(host, url, { global: { lease_seconds: 30 } });
        expect(data(await restarted.call('list_backends', {})).backends).toHaveLength(1);
        const delay = Date.now() - killedAt;
        console.log(`restart after kill -9 (old process a zombie): serving after ${delay} ms`);
        expect(delay).toBeLessThan(10_000); // the lease is 30 s: the identity came back with the session, not the lease
        expect(state()).toBe('Z');
        // A live twin is still refused, naming the holder.
        const twin = new RawMcpServer(configFor(host, url, { global: { lease_seconds: 30 } }), { XDG_DATA_HOME: join(root, `${host}-twin`) });
        servers.push(twin);
        await twin.initialize().catch(() => undefined);
        expect(await twin.waitForExit(30_000)).toBe(1);
        expect(twin.stderr).toMatch(new RegExp(`another live server with identity ${host} \\(pid ${restarted.pid} on `));
        await restarted.close();
      } finally {
        parent.kill('SIGKILL');
      }
    });

    it('stops an operation whose cluster lock session is terminated mid array call before its next array call, and leaves it as a crash would', async () => {
      const own = await pg.createDatabase('dropped');
      const server = await start('server-dropped', own);
      const source = data(await server.call('create_volume', { backend: 'xtremio', size: 1, name: 'dropped-source' }));
      // The clone is a slow XMS snapshot; a larger clone is then extended (PUT /volumes): the next array call.
      xms.slowDown({ method: 'POST', pathIncludes: '/snapshots', ms: 2_000 });
      const seen = xms.requests.length;
      const id = server.callTool('create_volume', { backend: 'xtremio', source_volume_id: source.id, size: 2, name: 'dropped-clone' });
      await server.until(() => xms.requests.slice(seen).some((line) => line.startsWith('POST ') && line.includes('/snapshots')), 20_000, 'the clone reaching the array');
      const terminated = await sql(
        own,
        "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cinderlib-mcp locks'",
      );
      expect(terminated).toEqual([{ done: true }]);
      const answer = await server.answer(id, 30_000);
      expect(toolText(answer)).toMatch(/^BACKEND_UNAVAILABLE: .*was lost .*stopped before its next array call.*kept in status "error"/);
      // The clone itself finished (the driver's one call, its rename included); the extend never went out.
      expect(xms.requests.slice(seen).filter((line) => line.startsWith('PUT ') && line.includes('/volumes'))).toEqual([]);
      const clone = data(await server.call('list_volumes', { backend: 'xtremio' })).volumes.find((v: { name: string }) => v.name === 'dropped-clone');
      expect(clone).toMatchObject({ status: 'error' });
      expect(server.stderr).toMatch(/identity server-dropped and its cluster-wide locks .* dropped/);
      // The server takes its identity back and serves mutations again: both volumes delete.
      const deadline = Date.now() + 15_000;
      for (const volume of [clone, source]) {
        let deleted = await server.call('delete_volume', { volume_id: volume.id });
        while (deleted.result?.isError && /^BACKEND_UNAVAILABLE: /.test(toolText(deleted) ?? '') && Date.now() < deadline) {
          await sleep(250);
          deleted = await server.call('delete_volume', { volume_id: volume.id });
        }
        expect(data(deleted).deleted).toBe(true);
      }
      expect([...xms.volumes.values()].filter((v) => v.name === clone.id || v.name === source.id)).toEqual([]);
      await server.close();
    });

    it('shares the audit log between servers', async () => {
      const b = servers[1];
      data(await b.call('create_volume', { backend: 'xtremio', size: 1, name: 'audited' }));
      const audit = spawnSync(process.execPath, [BIN, 'audit', '--config', configFor('server-b')], { encoding: 'utf8', cwd: REPO_ROOT });
      expect(audit.status, audit.stderr).toBe(0);
      const records = audit.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line));
      const servedBy = new Set(records.map((record) => record.server));
      expect(servedBy).toEqual(new Set(['server-a', 'server-b']));
    });
  });
}
