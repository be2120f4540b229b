/**
 * A lock held for the life of the process, named after what it guards (a metadata store file, a
 * volumes folder), that a second holder is refused with a message naming the first.
 *
 * The kernel does the locking: SQLite's exclusive locking mode keeps a POSIX lock on the lock
 * file, which the kernel releases when the holder exits, even on kill -9, so a crash never leaves
 * a stale lock behind. A side file says who holds it, for the refusal message only.
 */

import { errorCode } from './errors.js';
import Database from 'better-sqlite3';
import { hostname } from 'node:os';
import { readFile, writeFile } from 'node:fs/promises';
import { privateFile } from './private-files.js';

export interface HeldLock {
  release(): void;
}

export class LockHeldError extends Error {
  constructor(
    readonly lockPath: string,
    readonly holder: string,
  ) {
    super(`${lockPath} is held by ${holder}`);
    this.name = 'LockHeldError';
  }
}

/** Locks held by this process, by path: a second holder in the same process is refused too. */
const heldHere = new Map<string, string>();

export async function acquireProcessLock(lockPath: string, purpose: string): Promise<HeldLock> {
  const mine = heldHere.get(lockPath);
  if (mine !== undefined) throw new LockHeldError(lockPath, `this server (${mine})`);
  privateFile(lockPath);
  const db = new Database(lockPath, { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    // The first write takes the exclusive lock; exclusive mode keeps it until the connection closes.
    db.exec('CREATE TABLE IF NOT EXISTS lock (purpose TEXT); BEGIN EXCLUSIVE; COMMIT;');
  } catch (error) {
    db.close();
    if (errorCode(error) === 'SQLITE_BUSY') throw new LockHeldError(lockPath, await describeHolder(lockPath));
    throw error;
  }
  heldHere.set(lockPath, purpose);
  const holder = `cinderlib-mcp pid ${process.pid} on ${hostname()} since ${new Date().toISOString()} (${purpose})`;
  await writeFile(`${lockPath}.holder`, holder + '\n', { mode: 0o600 }).catch(() => undefined);
  return {
    release() {
      if (heldHere.get(lockPath) !== purpose) return;
      heldHere.delete(lockPath);
      db.close();
    },
  };
}

async function describeHolder(lockPath: string): Promise<string> {
  const text = await readFile(`${lockPath}.holder`, 'utf8').catch(() => '');
  return text.trim() || 'another process';
}
