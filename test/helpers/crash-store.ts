import Database from 'better-sqlite3';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { toolText, type RawAnswer, type RawMcpServer } from './raw-server.js';

/**
 * What the kill -9 tests (test/e2e/crash-*.test.ts) read between two servers: the image files in
 * volumes_dir, the SQLite store's tombstones (read-only, while no server runs), and every page of a
 * list tool through a running server.
 */

export const UUID_PATTERN = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

/** The files of `dir` whose names start with `prefix` (e.g. `volume-`), name → size in bytes. */
export function listImageFiles(dir: string, prefix: string): Map<string, number> {
  const files = new Map<string, number>();
  if (!existsSync(dir)) return files; // before the first server made it
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(prefix)) continue;
    try {
      files.set(name, statSync(join(dir, name)).size);
    } catch {
      // gone between readdir and stat: nobody runs here now, so this does not happen
    }
  }
  return files;
}

/** The ids of volumes and snapshots the SQLite store keeps tombstones for (empty before the store or its table exists). */
export function readTombstones(sqlitePath: string): Set<string> {
  if (!existsSync(sqlitePath)) return new Set();
  const db = new Database(sqlitePath, { readonly: true, fileMustExist: true });
  try {
    const hasTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tombstones'").get();
    if (!hasTable) return new Set();
    // The id column was volume_id, and is object_id since snapshots get tombstones too: read either.
    const columns = new Set((db.prepare('PRAGMA table_info(tombstones)').all() as Array<{ name: string }>).map((column) => column.name));
    const idColumn = columns.has('object_id') ? 'object_id' : 'volume_id';
    return new Set((db.prepare(`SELECT ${idColumn} AS id FROM tombstones`).all() as Array<{ id: string }>).map((row) => row.id));
  } finally {
    db.close();
  }
}

/**
 * Every item of a paged list tool (list_volumes, list_snapshots): `key` is the array in its
 * structuredContent; pages of 1,000 until next_cursor is absent (at most 100 pages).
 */
export async function listAllPages<T>(server: RawMcpServer, tool: string, key: string, timeoutMs: number, filters: Record<string, unknown> = {}): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 100; page++) {
    const answer = await server.call(tool, { ...filters, limit: 1000, ...(cursor ? { cursor } : {}) }, timeoutMs);
    const data = answer.result?.structuredContent;
    if (answer.error || answer.result?.isError || !data) throw new Error(`${tool} failed: ${JSON.stringify(answer)}`);
    items.push(...(data[key] as T[]));
    cursor = data.next_cursor;
    if (!cursor) return items;
  }
  throw new Error(`${tool}: more than 100 pages`);
}

/** The contract code of a refused tool call (the text's `CODE:` prefix), or `jsonrpc <code>`. */
export function errorCode(answer: RawAnswer): string {
  if (answer.error) return `jsonrpc ${answer.error.code}`;
  return /^([A-Z_]+):/.exec(toolText(answer) ?? '')?.[1] ?? 'no code';
}
