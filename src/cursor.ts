import { StorageError } from './errors.js';
import type { VolumeStatus } from './volume.js';

/**
 * Opaque list_volumes cursors: the store position plus the filters they were issued for, so a
 * cursor reused with other filters is refused instead of silently skipping volumes.
 */
interface CursorState {
  after: number;
  backend?: string;
  status?: VolumeStatus;
}

export function encodeCursor(state: CursorState): string {
  return Buffer.from(JSON.stringify({ v: 1, a: state.after, b: state.backend, s: state.status })).toString('base64url');
}

export function decodeCursor(cursor: string, filters: { backend?: string; status?: VolumeStatus }): number {
  let parsed: { v?: unknown; a?: unknown; b?: unknown; s?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (parsed?.v !== 1 || typeof parsed.a !== 'number' || !Number.isInteger(parsed.a) || parsed.a < 0) throw invalid();
  if ((parsed.b ?? undefined) !== filters.backend || (parsed.s ?? undefined) !== filters.status) {
    throw new StorageError(
      'INVALID_ARGUMENT',
      'cursor was issued for other filters (backend/status); repeat the call with the same filters as the call that returned it, or omit cursor to start over',
    );
  }
  return parsed.a;
}

function invalid(): StorageError {
  return new StorageError(
    'INVALID_ARGUMENT',
    'cursor is not one this server issued; pass the next_cursor value from the previous list_volumes answer unchanged, or omit it to start from the first page',
  );
}
