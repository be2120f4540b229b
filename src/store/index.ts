import type { PersistenceConfig } from '../config/load.js';
import { StorageError } from '../base/errors.js';
import { LockHeldError, acquireProcessLock } from '../base/process-lock.js';
import { privateFile } from '../base/private-files.js';
import { MemoryVolumeStore } from './memory.js';
import type { PostgresOpenOptions } from './postgres.js';
import { secrets as processSecrets } from '../base/secrets.js';
import { SqliteVolumeStore } from './sqlite.js';
import type { VolumeStore } from './store.js';

export type { VolumeStore } from './store.js';

/**
 * Opens the configured store for a serving process. A SQLite file serves one server: a second
 * server on the same file would mark the first one's operations as crashed and delete records
 * under it, so it is refused, naming the server that holds the file.
 */
export async function openVolumeStore(config: PersistenceConfig, options: PostgresOpenOptions = {}): Promise<VolumeStore> {
  if (config.storage === 'memory') return new MemoryVolumeStore();
  // PostgreSQL is for several servers: no process lock; servers coordinate through the store (its `shared`).
  if (config.engine === 'postgresql') {
    const { PostgresVolumeStore } = await import('./postgres.js');
    return PostgresVolumeStore.open(config.url, { secrets: processSecrets, ...options });
  }
  privateFile(config.path, ['-wal', '-shm']);
  let lock;
  try {
    lock = await acquireProcessLock(`${config.path}.lock`, `metadata store ${config.path}`);
  } catch (error) {
    if (!(error instanceof LockHeldError)) throw error;
    throw new StorageError(
      'BACKEND_UNAVAILABLE',
      `the metadata store ${config.path} is in use by ${error.holder}; a SQLite store serves one server at a time: stop the other server, or give this one its own persistence_config connection`,
    );
  }
  try {
    return new SqliteVolumeStore(config.path, lock);
  } catch (error) {
    lock.release();
    throw error;
  }
}

/**
 * Opens the store for a command that only reads (`cinderlib-mcp dump`): as a server would when
 * none runs, else read-only beside the server that holds it (SQLite lets readers in while one
 * process writes).
 */
export async function openVolumeStoreForReading(config: PersistenceConfig): Promise<VolumeStore> {
  if (config.storage === 'memory') return new MemoryVolumeStore();
  if (config.engine === 'postgresql') return openVolumeStore(config); // readers and servers share it freely
  const { existsSync } = await import('node:fs');
  if (!existsSync(config.path)) return new MemoryVolumeStore(); // nothing stored yet: an empty store says so
  try {
    return await openVolumeStore(config);
  } catch (error) {
    if (!(error instanceof StorageError) || !/is in use by/.test(error.message)) throw error;
    return new SqliteVolumeStore(config.path, undefined, { readOnly: true });
  }
}
