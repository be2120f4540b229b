import { z } from 'zod';
import { SNAPSHOT_STATUSES, toSnapshotView } from '../src/model/snapshot.js';
import { READS_METADATA_STORE, defineTool } from './define.js';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, backendArgument, cursorArgument, limitArgument, nameFilterArgument, snapshotSchema, volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'list_snapshots',
  title: 'List snapshots',
  description: `Lists snapshots taken through this server (from its metadata store, not from the array), oldest first, at most "limit" per call (default ${DEFAULT_PAGE_SIZE}, at most ${MAX_PAGE_SIZE}). Filter by backend, volume_id, status and/or name. When next_cursor is present, call again with cursor set to it (and the same filters) for the next page.`,
  input: z
    .object({
      backend: backendArgument.optional(),
      volume_id: volumeIdArgument.optional().describe('Only snapshots of this volume.'),
      status: z
        .enum(SNAPSHOT_STATUSES, { error: `status must be one of ${SNAPSHOT_STATUSES.join(', ')}` })
        .optional()
        .describe('Only snapshots in this status.'),
      name: nameFilterArgument,
      limit: limitArgument.optional(),
      cursor: cursorArgument.optional(),
    })
    .strict(),
  output: z.object({
    snapshots: z.array(snapshotSchema).describe('At most "limit" snapshots, oldest first.'),
    next_cursor: z.string().optional().describe('Pass as cursor to get the next page; absent on the last page.'),
  }),
  annotations: READS_METADATA_STORE,
  async handler({ backend, volume_id, status, name, limit, cursor }, registry) {
    const page = await registry.listSnapshots({ backend, volume_id, status, name, cursor, limit: limit ?? DEFAULT_PAGE_SIZE });
    return {
      snapshots: page.snapshots.map(toSnapshotView),
      ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}),
    };
  },
});
