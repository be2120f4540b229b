/**
 * Contract section 11: a file that holds a secret (the metadata store and its -wal/-shm, lock side
 * files, the audit log) is 0600 in a 0700 folder, so no other local user reads CHAP credentials.
 * Folders made here are 0700; a folder that already exists is the administrator's and keeps its
 * mode, while the files in it are still 0600.
 */

import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';

export function privateDirectory(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** Creates `path` empty and 0600 when missing (its folder 0700), or makes an existing one 0600; SQLite gives -wal and -shm the database file's mode. */
export function privateFile(path: string, companions: readonly string[] = []): void {
  privateDirectory(dirname(path));
  for (const file of [path, ...companions.map((suffix) => `${path}${suffix}`)]) {
    if (existsSync(file)) chmodSync(file, 0o600);
    else if (file === path) closeSync(openSync(file, 'a', 0o600));
  }
}
