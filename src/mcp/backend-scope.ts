/**
 * Tokens limited to some backends (global.http_tokens[].backends): every call is checked against
 * the backends it touches, named directly (`backend`) or through the object it acts on (a volume,
 * a snapshot, a connection), before it runs. A call on another backend is NOT_FOUND (for this token it is not there: contract section 5's codes), naming the
 * token and what it may use; lists without a backend filter are narrowed to the token's backend
 * when it has one, else must name one; list_backends shows the token's backends only.
 */
import { StorageError, isStorageError } from '../base/errors.js';
import type { BackendRegistry } from '../core/registry.js';

export interface BackendScope {
  /** The token's name, for messages. */
  holder: string;
  backends: readonly string[];
}

const LISTS = new Set(['list_volumes', 'list_snapshots', 'list_connections']);

/** Checks (and for lists, narrows) a call's arguments to `scope`; throws NOT_FOUND otherwise. */
export async function scopeArguments(scope: BackendScope, tool: string, args: Record<string, unknown>, registry: BackendRegistry): Promise<Record<string, unknown>> {
  const allowed = new Set(scope.backends);
  const refuse = (backend: string, what: string) =>
    new StorageError(
      'NOT_FOUND',
      `${tool}: ${what} backend "${backend}", which the token "${scope.holder}" may not use (it may use: ${scope.backends.join(', ')}); a token whose http_tokens entry lists "${backend}" in its backends may call it`,
    );
  if (typeof args.backend === 'string' && !allowed.has(args.backend)) throw refuse(args.backend, 'the call names');
  // The objects a call acts on: an unknown one is left for the tool to answer NOT_FOUND.
  const owners: Array<[string, () => Promise<{ backend: string }>]> = [];
  for (const key of ['volume_id', 'source_volume_id'] as const) {
    const id = args[key];
    if (typeof id === 'string') owners.push([`volume ${id} is on`, () => registry.getVolume(id)]);
  }
  if (typeof args.snapshot_id === 'string') {
    const id = args.snapshot_id;
    owners.push([`snapshot ${id} is on`, () => registry.getSnapshot(id)]);
  }
  if (typeof args.connection_id === 'string') {
    const id = args.connection_id;
    owners.push([`connection ${id} is on`, () => registry.getConnection(id)]);
  }
  for (const [what, find] of owners) {
    let record: { backend: string };
    try {
      record = await find();
    } catch (error) {
      if (isStorageError(error) && error.code === 'NOT_FOUND') continue;
      throw error;
    }
    if (!allowed.has(record.backend)) throw refuse(record.backend, what);
  }
  if (LISTS.has(tool) && args.backend === undefined && args.volume_id === undefined) {
    if (scope.backends.length === 1) return { ...args, backend: scope.backends[0] };
    throw new StorageError('INVALID_ARGUMENT', `${tool}: the token "${scope.holder}" may list only backends ${scope.backends.join(', ')}; pass backend (one of them) or volume_id`);
  }
  return args;
}

/** list_backends' answer, narrowed to the scope's backends. */
export function scopeAnswer(scope: BackendScope, tool: string, data: unknown): unknown {
  if (tool !== 'list_backends' || !data || typeof data !== 'object' || !Array.isArray((data as { backends?: unknown }).backends)) return data;
  const allowed = new Set(scope.backends);
  const listed = data as { backends: Array<{ id?: unknown }> };
  return { ...listed, backends: listed.backends.filter((backend) => typeof backend.id === 'string' && allowed.has(backend.id)) };
}
