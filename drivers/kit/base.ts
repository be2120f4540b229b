/**
 * What drivers use of the server's base layer (errors, host paths, the process lock, file checks),
 * re-exported so that a driver imports the kit and its own folder, nothing else.
 */
export { StorageError, isStorageError, type ErrorCode } from '../../src/base/errors.js';
export { defaultVolumesDir } from '../../src/base/paths.js';
export { LockHeldError, acquireProcessLock, type HeldLock } from '../../src/base/process-lock.js';
export { isRegularFile } from '../../src/base/regular-file.js';
