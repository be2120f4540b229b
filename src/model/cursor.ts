/**
 * Opaque list cursors: the store position plus the list and the filters they were issued for, so
 * a cursor reused with other filters (or on another list) is refused instead of silently skipping.
 */

import { StorageError } from '../base/errors.js';

export type CursorFilters = Record<string, string | undefined>;

export function encodeCursor(list: string, after: number, filters: CursorFilters): string {
  return Buffer.from(JSON.stringify({ v: 2, l: list, a: after, f: defined(filters) })).toString('base64url');
}

export function decodeCursor(cursor: string, list: string, filters: CursorFilters): number {
  let parsed: { v?: unknown; l?: unknown; a?: unknown; f?: unknown };
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    parsed = typeof value === 'object' && value !== null ? value : {};
  } catch {
    throw invalid(list);
  }
  if (parsed?.v !== 2 || parsed.l !== list || typeof parsed.a !== 'number' || !Number.isInteger(parsed.a) || parsed.a < 0) throw invalid(list);
  if (JSON.stringify(parsed.f ?? {}) !== JSON.stringify(defined(filters))) {
    throw new StorageError(
      'INVALID_ARGUMENT',
      `cursor was issued for other filters (${Object.keys(filters).join('/')}); repeat the call with the same filters as the call that returned it, or omit cursor to start over`,
    );
  }
  return parsed.a;
}

function defined(filters: CursorFilters): CursorFilters {
  return Object.fromEntries(
    Object.entries(filters)
      .filter(([, value]) => value !== undefined)
      .sort(([a], [b]) => a.localeCompare(b)),
  );
}

function invalid(list: string): StorageError {
  return new StorageError(
    'INVALID_ARGUMENT',
    `cursor is not one this server issued for ${list}; pass the next_cursor value from the previous ${list} answer unchanged, or omit it to start from the first page`,
  );
}
