import { z } from 'zod';
import { toConnectionView } from '../src/model/connection.js';
import { defineTool } from './define.js';
import { connectionSchema, volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'attach_volume',
  toolset: 'connections',
  title: 'Attach a volume here',
  description: "Attaches a volume on this server's host; the answer's device.path is the block device.",
  input: z.object({ volume_id: volumeIdArgument }).strict(),
  output: connectionSchema,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler({ volume_id }, registry) {
    return toConnectionView(await registry.attachVolume(volume_id), (value) => registry.mask(value));
  },
});
