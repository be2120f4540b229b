import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/**
 * A real PostgreSQL 15 for the test run. With CINDERLIB_TEST_PG_URL set (a role that may CREATE
 * DATABASE), that server is used; otherwise one is started here: initdb and pg_ctl as the
 * `postgres` user (initdb refuses root) in a scratch directory, listening on a free port of
 * 127.0.0.1 only, password authentication over TCP, stopped and removed afterwards.
 */

export const PG_BIN = '/usr/lib/postgresql/15/bin';

/** The test user's password: every character a URL must percent-encode, so the encoding is exercised. */
export const TEST_PASSWORD = `s3cr/t@p:ss%w0rd#${randomBytes(4).toString('hex')}`;
const TEST_USER = 'cinder_test';

export interface PostgresFixture {
  /** host:port of the server. */
  host: string;
  port: number;
  /** The test user's password (TEST_PASSWORD, or the one in CINDERLIB_TEST_PG_URL). */
  password: string;
  /** A URL of a fresh, empty database, as the test user (password included). */
  createDatabase(prefix?: string): Promise<string>;
  /** The same URL with `password` instead of the right one. */
  urlWith(url: string, changes: { password?: string; port?: number }): string;
  stop(): Promise<void>;
}

/** Why the suite cannot run here, or undefined when it can. */
export function postgresPrerequisites(): string | undefined {
  if (process.env.CINDERLIB_TEST_PG_URL) return undefined;
  if (!existsSync(join(PG_BIN, 'initdb'))) return `needs PostgreSQL 15 (${PG_BIN}/initdb is missing: apt-get install postgresql-15)`;
  if (process.getuid?.() !== 0) return 'needs root (to run initdb and pg_ctl as the postgres user)';
  if (spawnSync('id', ['-u', 'postgres']).status !== 0) return 'needs the postgres system user';
  return undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function withCredentials(base: string, user: string, password: string, database: string): string {
  const url = new URL(base);
  url.username = encodeURIComponent(user);
  url.password = encodeURIComponent(password);
  url.pathname = `/${database}`;
  return url.toString();
}

export async function startPostgres(): Promise<PostgresFixture> {
  const given = process.env.CINDERLIB_TEST_PG_URL;
  let adminUrl: string;
  let stopServer: () => Promise<void> = async () => undefined;
  let userUrlBase: string;
  if (given) {
    adminUrl = given;
    userUrlBase = given; // the given role makes the databases and is the test user
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-pg-'));
    chmodSync(dir, 0o700);
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(dir, uid, gid);
    const superPassword = randomBytes(12).toString('hex');
    const pwfile = join(dir, 'pwfile');
    writeFileSync(pwfile, `${superPassword}\n`, { mode: 0o600 });
    chownSync(pwfile, uid, gid);
    const data = join(dir, 'data');
    const asPostgres = (command: string, args: string[]) =>
      execFileSync('runuser', ['-u', 'postgres', '--', join(PG_BIN, command), ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
    asPostgres('initdb', ['-D', data, '-U', 'postgres', `--pwfile=${pwfile}`, '--auth-local=trust', '--auth-host=scram-sha-256', '--encoding=UTF8', '--locale=C']);
    const port = await freePort();
    asPostgres('pg_ctl', [
      '-D',
      data,
      '-l',
      join(dir, 'server.log'),
      '-w',
      '-t',
      '60',
      '-o',
      `-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories=${dir} -c fsync=off -c max_connections=200`,
      'start',
    ]);
    stopServer = async () => {
      try {
        asPostgres('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    };
    adminUrl = `postgresql://postgres:${superPassword}@127.0.0.1:${port}/postgres`;
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      await admin.query(`CREATE ROLE ${TEST_USER} LOGIN CREATEDB PASSWORD '${TEST_PASSWORD.replace(/'/g, "''")}'`);
    } finally {
      await admin.end();
    }
    userUrlBase = withCredentials(adminUrl, TEST_USER, TEST_PASSWORD, 'postgres');
  }
  const parsed = new URL(adminUrl);
  let counter = 0;
  return {
    host: parsed.hostname,
    port: Number(parsed.port || 5432),
    password: decodeURIComponent(new URL(userUrlBase).password),
    async createDatabase(prefix = 'cinderlib_test') {
      const name = `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`;
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${name}${given ? '' : ` OWNER ${TEST_USER}`}`);
      } finally {
        await admin.end();
      }
      const url = new URL(userUrlBase);
      url.pathname = `/${name}`;
      return url.toString();
    },
    urlWith(url, changes) {
      const out = new URL(url);
      if (changes.password !== undefined) out.password = encodeURIComponent(changes.password);
      if (changes.port !== undefined) out.port = String(changes.port);
      return out.toString();
    },
    stop: stopServer,
  };
}

export { freePort };

/** A TCP relay to PostgreSQL that the test can cut and restore: the store losing its database later. */
export async function relay(targetPort: number): Promise<{ port: number; cut(): Promise<void>; restore(): Promise<void>; close(): Promise<void> }> {
  const port = await freePort();
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server = createServer((client) => {
        const upstream = connect(targetPort, '127.0.0.1');
        for (const socket of [client, upstream]) {
          sockets.add(socket);
          socket.on('error', () => undefined);
          socket.on('close', () => sockets.delete(socket));
        }
        client.pipe(upstream).pipe(client);
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
  const cut = async () => {
    const closing = server;
    server = undefined;
    const closed = new Promise<void>((resolve) => (closing ? closing.close(() => resolve()) : resolve()));
    for (const socket of sockets) socket.destroy();
    await closed;
  };
  await listen();
  return { port, cut, restore: listen, close: cut };
}
