import { z } from 'zod';
import { defineTool } from './define.js';
import { connectionIdArgument } from './schemas.js';

export default defineTool({
  name: 'detach_volume',
  toolset: 'connections',
  title: 'Detach a volume from here',
  description: 'Detaches a volume attached here (nothing may hold it open) and removes its connection.',
  input: z.object({ connection_id: connectionIdArgument }).strict(),
  output: z.object({
    connection_id: z.string(),
    detached: z.literal(true),
  }),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
  async handler({ connection_id }, registry) {
    await registry.detachVolume(connection_id);
    return { connection_id, detached: true as const };
  },
});
