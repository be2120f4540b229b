import { z } from 'zod';
import { defineTool } from '../src/tool.js';
import { volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'delete_volume',
  title: 'Delete a volume',
  description:
    'Deletes a volume and all its data from the array, then forgets it. Works on "available" volumes and on volumes in "error" (e.g. a failed create). This cannot be undone.',
  input: z.object({ volume_id: volumeIdArgument }).strict(),
  output: z.object({ volume_id: z.string(), deleted: z.literal(true) }),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  async handler({ volume_id }, registry) {
    await registry.deleteVolume(volume_id);
    return { volume_id, deleted: true as const };
  },
});
