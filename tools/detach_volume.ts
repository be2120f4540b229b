import { z } from 'zod';
import { defineTool } from './define.js';
import { isDryRun } from '../src/core/dry-run.js';
import { connectionIdArgument, dryRunArgument, orDryRun } from './schemas.js';

export default defineTool({
  name: 'detach_volume',
  toolset: 'connections',
  title: 'Detach a volume from here',
  description: 'Detaches a volume attached here (nothing may hold it open) and removes its connection.',
  input: z.object({ connection_id: connectionIdArgument, dry_run: dryRunArgument }).strict(),
  output: orDryRun(
    z.object({
      connection_id: z.string(),
      detached: z.literal(true),
    }),
  ),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
  async handler({ connection_id, dry_run }, registry) {
    const result = await registry.detachVolume(connection_id, dry_run);
    if (isDryRun(result)) return result;
    return { connection_id, detached: true as const };
  },
});
