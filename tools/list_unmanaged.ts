import { z } from 'zod';
import { READS_ARRAYS, defineTool } from './define.js';
import { DEFAULT_PAGE_SIZE, backendArgument, cursorArgument, limitArgument } from './schemas.js';

export default defineTool({
  name: 'list_unmanaged',
  toolset: 'adoption',
  title: 'List volumes no record knows',
  description: "Lists the backend's array volumes that this server has no record of (Cinder's get_manageable_volumes), by name; manage_volume adopts the safe ones.",
  input: z.object({ backend: backendArgument, limit: limitArgument.optional(), cursor: cursorArgument.optional() }).strict(),
  output: z.object({
    volumes: z
      .array(
        z.object({
          reference: z.object({ 'source-name': z.string().describe('Its name on the array.') }).describe('Pass to manage_volume.'),
          size: z.number().int().describe('GiB, rounded up.'),
          safe_to_manage: z.boolean().describe('False when in use or already managed.'),
          reason_not_safe: z.string().nullable().describe('Why not, when not safe.'),
        }),
      )
      .describe('Sorted by name.'),
    next_cursor: z.string().optional().describe('Pass as cursor for the next page.'),
  }),
  annotations: READS_ARRAYS,
  async handler({ backend, limit, cursor }, registry) {
    const page = await registry.listUnmanaged(backend, limit ?? DEFAULT_PAGE_SIZE, cursor);
    return { volumes: page.volumes, ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}) };
  },
});
