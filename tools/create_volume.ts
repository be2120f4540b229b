import { z } from 'zod';
import { defineTool } from '../src/tool.js';
import { toVolumeView } from '../src/volume.js';
import { backendArgument, sizeArgument, volumeSchema } from './schemas.js';

export default defineTool({
  name: 'create_volume',
  title: 'Create a volume',
  description:
    'Creates a block volume of "size" GiB on a backend (see list_backends) and returns it with status "available". Sizes the pool cannot hold are refused before the array is touched (get_stats shows the room). name and description are free text kept in the metadata store only; the array object is named after the volume id. Each call creates a new volume.',
  input: z
    .object({
      backend: backendArgument,
      size: sizeArgument('size').describe('Size in GiB (whole number, 1 or more).'),
      name: z.string({ error: 'name must be a string' }).max(255, { error: 'name must be at most 255 characters' }).optional().describe('Display name (free text, up to 255 characters).'),
      description: z
        .string({ error: 'description must be a string' })
        .max(4096, { error: 'description must be at most 4096 characters' })
        .optional()
        .describe('Free text description.'),
      pool_name: z.string({ error: 'pool_name must be a string from pool_names' }).min(1).optional().describe('Pool to use (from pool_names); default the backend\'s first pool.'),
      bootable: z.boolean({ error: 'bootable must be true or false' }).optional().describe('Mark the volume bootable (metadata only).'),
    })
    .strict(),
  output: volumeSchema,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler({ backend, ...request }, registry) {
    return toVolumeView(await registry.createVolume(backend, request));
  },
});
