import { z } from 'zod';
import { defineTool } from './define.js';
import { isDryRun } from '../src/core/dry-run.js';
import { connectionIdArgument, dryRunArgument, orDryRun } from './schemas.js';

export default defineTool({
  name: 'disconnect_volume',
  toolset: 'connections',
  title: 'Disconnect a volume from a host',
  description: 'Removes a connection: the host loses the volume. One attached here needs detach_volume or force: true (which also drops a connection the array will not end).',
  input: z
    .object({
      connection_id: connectionIdArgument,
      force: z.boolean({ error: 'force must be true or false' }).optional().describe('Drop it even when the array refuses or it is attached here.'),
      dry_run: dryRunArgument,
    })
    .strict(),
  output: orDryRun(
    z.object({
      connection_id: z.string(),
      disconnected: z.literal(true),
    }),
  ),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
  async handler({ connection_id, force, dry_run }, registry) {
    const result = await registry.disconnectVolume(connection_id, force ?? false, dry_run);
    if (isDryRun(result)) return result;
    return { connection_id, disconnected: true as const };
  },
});
