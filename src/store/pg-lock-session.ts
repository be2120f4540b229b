/**
 * One dedicated PostgreSQL session per server holds every session-level advisory lock the server
 * takes (contract section 16): its identity, which dies with the session (a server killed with
 * kill -9, zombie or not, frees it at once), and the cluster-wide locks of its operations under
 * way. Locks are taken with pg_try_advisory_lock and retried, after in-process waiters on the same
 * key queue up, so one connection serves any number of operations: no operation ever waits for a
 * second connection while holding one. When the session drops, every holder is told (its
 * AbortSignal fires) and the identity is taken back on a new session.
 */
import pg from 'pg';
import { StorageError } from '../base/errors.js';
import { KeyedMutex, runHoldingAll } from '../base/locks.js';
import type { HeldLocks } from './store.js';

export interface LockSessionOptions {
  /** pg.Client settings (connection string, timeouts); application_name is set here. */
  client: pg.ClientConfig;
  /** What the store is, for messages; never with a password. */
  description: string;
  /** How long a lock another server holds is waited for before BACKEND_BUSY. */
  lockTimeoutMs: number;
  /** The store's own trouble (unreachable, dropped) as BACKEND_UNAVAILABLE naming it. */
  trouble(what: string, error: unknown): unknown;
  log: { info(message: string): void; warn(message: string): void; error(message: string): void };
}

/** How often the idle session is checked, so that a silently dropped one is noticed. */
const HEARTBEAT_MS = 5_000;
/** Back-off between tries for a lock another server holds. */
const RETRY_MS = [10, 20, 50, 100, 200, 250];
/** Back-off between attempts to open the session again after it dropped. */
const RECONNECT_MS = [100, 250, 500, 1_000, 2_000, 5_000];

const LOCK = 'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked';
const UNLOCK = 'SELECT pg_advisory_unlock(hashtextextended($1, 0))';
const UNLOCK_ALL = 'SELECT pg_advisory_unlock(hashtextextended(key, 0)) FROM unnest($1::text[]) AS key';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class LockSession {
  private client?: pg.Client;
  private connecting?: Promise<pg.Client>;
  /** Bumped each time the session drops: locks taken under an older one are gone. */
  private generation = 0;
  private identity?: { serverId: string; held: boolean };
  private readonly holders = new Set<AbortController>();
  /** Session-level advisory locks are re-entrant within a session: this process's holders of one key queue here first. */
  private readonly local = new KeyedMutex();
  private heartbeat?: NodeJS.Timeout;
  private reacquiring = false;
  private closed = false;
  /** Statements on the session, one at a time (node-postgres wants no overlapping queries on a client). */
  private turn: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: LockSessionOptions) {}

  /**
   * Takes the identity lock of `serverId`, trying for up to `graceMs` (a predecessor killed a moment
   * ago may not have been noticed by PostgreSQL yet). False when another live session holds it.
   */
  async claimIdentity(serverId: string, graceMs: number): Promise<boolean> {
    const deadline = Date.now() + graceMs;
    for (let attempt = 0; ; attempt++) {
      const client = await this.connection(`register server ${serverId}`);
      if (await this.tryLock(client, identityKey(serverId), `register server ${serverId}`)) {
        this.identity = { serverId, held: true };
        return true;
      }
      if (Date.now() >= deadline) return false;
      await sleep(Math.min(200, RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)]));
    }
  }

  /** Gives the identity up (a clean stop). */
  async releaseIdentity(serverId: string): Promise<void> {
    const identity = this.identity;
    this.identity = undefined;
    if (identity?.serverId !== serverId || !identity.held || !this.client) return;
    await this.query(this.client, UNLOCK, [identityKey(serverId)]).catch(() => undefined);
  }

  /**
   * Runs `task` holding every key, in a fixed order; see SharedCoordination.holdKeys. With `fresh`
   * (keys no other server can know yet: a new object's id), the task starts at once while the keys
   * are taken beside it, and `held.acquired` says when they are.
   */
  hold<T>(keys: readonly string[], task: (held: HeldLocks) => Promise<T>, fresh = false): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    return runHoldingAll(this.local, sorted, async () => {
      const what = `lock ${sorted.join(', ')}`;
      if (this.identity && !this.identity.held) {
        throw new StorageError(
          'BACKEND_UNAVAILABLE',
          `cannot ${what}: this server lost its database session in ${this.options.description} and has not yet taken its identity ${this.identity.serverId} back; retry in a moment`,
        );
      }
      const controller = new AbortController();
      const taken: string[] = [];
      let client: pg.Client | undefined;
      let generation = this.generation;
      const acquire = async () => {
        client = await this.connection(what);
        generation = this.generation;
        for (const key of sorted) {
          await this.lockWaiting(client, key, generation);
          taken.push(key);
        }
      };
      this.holders.add(controller);
      const acquired = fresh ? acquire() : Promise.resolve();
      acquired.catch(() => undefined); // observed by the task (held.acquired), or below
      try {
        if (!fresh) await acquire();
        const held: HeldLocks = {
          signal: controller.signal,
          acquired,
          check: () => {
            if (controller.signal.aborted) throw controller.signal.reason;
          },
        };
        return await task(held);
      } finally {
        this.holders.delete(controller);
        await acquired.catch(() => undefined);
        if (client && this.generation === generation && taken.length > 0) {
          // Not waited for, and sent after the operation's answer has gone out (the next turn of the
          // event loop). A lock of these keys this process takes meanwhile is counted on the same
          // session (its locks are re-entrant), so the unlock never frees another holder's.
          // Cannot unlock: the session is in trouble; dropping it frees every lock it held.
          const session = client;
          setImmediate(() => {
            void this.query(session, UNLOCK_ALL, [taken]).catch((error: unknown) => this.drop(session, `unlocking ${taken.join(', ')} failed: ${reasonOf(error)}`));
          });
        }
      }
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeat);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  /** Waits its turn for `key` behind another server, up to lockTimeoutMs. */
  private async lockWaiting(client: pg.Client, key: string, generation: number): Promise<void> {
    const deadline = Date.now() + this.options.lockTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      if (this.generation !== generation) throw this.lostError(`lock ${key}`);
      if (await this.tryLock(client, key, `lock ${key}`)) return;
      if (Date.now() >= deadline) {
        throw new StorageError(
          'BACKEND_BUSY',
          `${key} is busy: another server is operating on it (waited ${Math.round(this.options.lockTimeoutMs / 1000)} s for its lock in ${this.options.description}); retry when that operation has finished`,
        );
      }
      const pause = RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)];
      await sleep(pause / 2 + Math.random() * pause); // jittered: two servers waiting do not retry in step
    }
  }

  private async tryLock(client: pg.Client, key: string, what: string): Promise<boolean> {
    try {
      return (await this.query<{ locked: boolean }>(client, LOCK, [key])).rows[0].locked === true;
    } catch (error) {
      throw this.options.trouble(what, error);
    }
  }

  private query<R extends pg.QueryResultRow>(client: pg.Client, sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    const result = this.turn.then(() => client.query<R>(sql, params));
    this.turn = result.catch(() => undefined);
    return result;
  }

  /** The live session, opened when there is none. */
  private async connection(what: string): Promise<pg.Client> {
    if (this.closed) throw this.options.trouble(what, new Error('Client was closed'));
    if (this.client) return this.client;
    this.connecting ??= this.open().finally(() => (this.connecting = undefined));
    try {
      return await this.connecting;
    } catch (error) {
      throw this.options.trouble(what, error);
    }
  }

  private async open(): Promise<pg.Client> {
    const client = new pg.Client({ ...this.options.client, application_name: 'cinderlib-mcp locks' });
    client.on('error', (error: Error) => this.drop(client, reasonOf(error)));
    client.on('end', () => this.drop(client, 'the connection ended'));
    await client.connect();
    if (this.closed) {
      await client.end().catch(() => undefined);
      throw new Error('Client was closed');
    }
    this.client = client;
    this.heartbeat ??= setInterval(() => void this.beat(), HEARTBEAT_MS).unref();
    return client;
  }

  /** An idle session that the network dropped silently is noticed here (the query times out). */
  private async beat(): Promise<void> {
    const client = this.client;
    if (!client) return;
    await this.query(client, 'SELECT 1').catch((error: unknown) => this.drop(client, reasonOf(error)));
  }

  /** The session is gone: every lock it held with it. Holders are told; the identity is taken back. */
  private drop(client: pg.Client, reason: string): void {
    if (this.client !== client) return;
    this.client = undefined;
    this.generation++;
    void client.end().catch(() => undefined);
    if (this.closed) return;
    const lost = this.lostError('hold cluster-wide locks', reason);
    for (const holder of this.holders) holder.abort(lost);
    this.holders.clear();
    if (this.identity) {
      this.identity.held = false;
      this.options.log.warn(
        `the database session holding this server's identity ${this.identity.serverId} and its cluster-wide locks in ${this.options.description} dropped (${reason}); operations under way stop before their next array call; taking the identity back`,
      );
      void this.reacquire();
    }
  }

  /** Opens a new session and takes the identity back; mutations are refused until it is. */
  private async reacquire(): Promise<void> {
    if (this.reacquiring) return;
    this.reacquiring = true;
    try {
      for (let attempt = 0; !this.closed && this.identity && !this.identity.held; attempt++) {
        await sleep(RECONNECT_MS[Math.min(attempt, RECONNECT_MS.length - 1)]);
        const identity = this.identity;
        if (this.closed || !identity) return;
        try {
          const client = await this.connection(`register server ${identity.serverId}`);
          if (await this.tryLock(client, identityKey(identity.serverId), `register server ${identity.serverId}`)) {
            identity.held = true;
            this.options.log.info(`took identity ${identity.serverId} back in ${this.options.description}; serving mutations again`);
          } else if (attempt % 10 === 0) {
            this.options.log.error(
              `identity ${identity.serverId} is held by another live server's session in ${this.options.description}; this server refuses mutations until it gets it back (give each server its own global.host)`,
            );
          }
        } catch (error) {
          if (attempt % 10 === 0) this.options.log.warn(`taking identity ${identity.serverId} back: ${error instanceof Error ? error.message : String(error)}; trying again`);
        }
      }
    } finally {
      this.reacquiring = false;
    }
  }

  private lostError(what: string, reason = 'the connection dropped'): StorageError {
    return new StorageError(
      'BACKEND_UNAVAILABLE',
      `cannot ${what}: this server's database session in ${this.options.description}, which held its cluster-wide locks, was lost (${reason}); the operation was stopped before its next array call. Call get_volume to see its state, and retry`,
    );
  }
}

const identityKey = (serverId: string) => `server:${serverId}`;

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
