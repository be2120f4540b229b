import type { PersistenceConfig } from '../config/load.js';
import { MemoryVolumeStore } from './memory.js';
import { SqliteVolumeStore } from './sqlite.js';
import type { VolumeStore } from './store.js';

export type { VolumeStore } from './store.js';

export function openVolumeStore(config: PersistenceConfig): VolumeStore {
  return config.storage === 'memory' ? new MemoryVolumeStore() : new SqliteVolumeStore(config.path);
}
