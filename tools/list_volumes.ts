import { z } from 'zod';
import { READS_METADATA_STORE, defineTool } from '../src/tool.js';
import { VOLUME_STATUSES, toVolumeView } from '../src/volume.js';
import { backendArgument, volumeSchema } from './schemas.js';

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export default defineTool({
  name: 'list_volumes',
  title: 'List volumes',
  description:
    `Lists volumes created through this server (from its metadata store, not from the array), oldest first, at most "limit" per call (default ${DEFAULT_PAGE_SIZE}, at most ${MAX_PAGE_SIZE}). Filter by backend and/or status. When next_cursor is present, call again with cursor set to it (and the same filters) for the next page.`,
  input: z
    .object({
      backend: backendArgument.optional(),
      status: z
        .enum(VOLUME_STATUSES, { error: `status must be one of ${VOLUME_STATUSES.join(', ')}` })
        .optional()
        .describe('Only volumes in this status.'),
      limit: z
        .number({ error: `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}` })
        .int({ error: `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}` })
        .min(1, { error: `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}` })
        .max(MAX_PAGE_SIZE, { error: `limit must be at most ${MAX_PAGE_SIZE}; page through with cursor for more` })
        .optional()
        .describe(`Page size (default ${DEFAULT_PAGE_SIZE}, at most ${MAX_PAGE_SIZE}).`),
      cursor: z.string({ error: 'cursor must be the next_cursor string of a previous answer' }).optional().describe('next_cursor from the previous page.'),
    })
    .strict(),
  output: z.object({
    volumes: z.array(volumeSchema).describe('At most "limit" volumes, oldest first.'),
    next_cursor: z.string().optional().describe('Pass as cursor to get the next page; absent on the last page.'),
  }),
  annotations: READS_METADATA_STORE,
  async handler({ backend, status, limit, cursor }, registry) {
    const page = await registry.listVolumes({ backend, status, cursor, limit: limit ?? DEFAULT_PAGE_SIZE });
    return {
      volumes: page.volumes.map(toVolumeView),
      ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}),
    };
  },
});
