import { z } from 'zod';
import { READS_METADATA_STORE, defineTool } from './define.js';
import { VOLUME_STATUSES, toVolumeView } from '../src/model/volume.js';
import { DEFAULT_PAGE_SIZE, backendArgument, cursorArgument, limitArgument, nameFilterArgument, nextCursorField, volumeSchema } from './schemas.js';

export default defineTool({
  name: 'list_volumes',
  toolset: 'volumes',
  title: 'List volumes',
  description: 'Volumes made through this server (from its store, not the array), oldest first.',
  input: z
    .object({
      backend: backendArgument.optional(),
      status: z
        .enum(VOLUME_STATUSES, { error: `status must be one of ${VOLUME_STATUSES.join(', ')}` })
        .optional()
        .describe('Filter.'),
      name: nameFilterArgument,
      limit: limitArgument.optional(),
      cursor: cursorArgument.optional(),
    })
    .strict(),
  output: z.object({
    volumes: z.array(volumeSchema),
    next_cursor: nextCursorField,
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
