import { z } from 'zod';
import { READS_METADATA_STORE, defineTool } from './define.js';
import { VOLUME_STATUSES, toVolumeView } from '../src/model/volume.js';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, backendArgument, cursorArgument, limitArgument, nameFilterArgument, volumeSchema } from './schemas.js';

export default defineTool({
  name: 'list_volumes',
  title: 'List volumes',
  description: `Lists volumes created through this server (from its metadata store, not from the array), oldest first, at most "limit" per call (default ${DEFAULT_PAGE_SIZE}, at most ${MAX_PAGE_SIZE}). Filter by backend, status and/or name. When next_cursor is present, call again with cursor set to it (and the same filters) for the next page.`,
  input: z
    .object({
      backend: backendArgument.optional(),
      status: z
        .enum(VOLUME_STATUSES, { error: `status must be one of ${VOLUME_STATUSES.join(', ')}` })
        .optional()
        .describe('Only volumes in this status.'),
      name: nameFilterArgument,
      limit: limitArgument.optional(),
      cursor: cursorArgument.optional(),
    })
    .strict(),
  output: z.object({
    volumes: z.array(volumeSchema).describe('At most "limit" volumes, oldest first.'),
    next_cursor: z.string().optional().describe('Pass as cursor to get the next page; absent on the last page.'),
  }),
  annotations: READS_METADATA_STORE,
  async handler({ backend, status, name, limit, cursor }, registry) {
    const page = await registry.listVolumes({ backend, status, name, cursor, limit: limit ?? DEFAULT_PAGE_SIZE });
    return {
      volumes: page.volumes.map(toVolumeView),
      ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}),
    };
  },
});
