import { z } from 'zod';
import { SNAPSHOT_STATUSES, toSnapshotView } from '../src/model/snapshot.js';
import { READS_METADATA_STORE, defineTool } from './define.js';
import { DEFAULT_PAGE_SIZE, backendArgument, cursorArgument, limitArgument, nameFilterArgument, nextCursorField, snapshotSchema, volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'list_snapshots',
  toolset: 'snapshots',
  title: 'List snapshots',
  description: 'Snapshots taken through this server, oldest first.',
  input: z
    .object({
      backend: backendArgument.optional(),
      volume_id: volumeIdArgument.optional(),
      status: z
        .enum(SNAPSHOT_STATUSES, { error: `status must be one of ${SNAPSHOT_STATUSES.join(', ')}` })
        .optional()
        .describe('Filter.'),
      name: nameFilterArgument,
      limit: limitArgument.optional(),
      cursor: cursorArgument.optional(),
    })
    .strict(),
  output: z.object({
    snapshots: z.array(snapshotSchema),
    next_cursor: nextCursorField,
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
