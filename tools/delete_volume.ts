import { z } from 'zod';
import { defineTool } from './define.js';
import { isDryRun } from '../src/core/dry-run.js';
import { dryRunArgument, orDryRun, volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'delete_volume',
  toolset: 'volumes',
  title: 'Delete a volume',
  description: 'Deletes a volume and its data; one with snapshots needs cascade: true. Cannot be undone.',
  input: z
    .object({
      volume_id: volumeIdArgument,
      cascade: z.boolean({ error: 'cascade must be true or false' }).optional().describe('Delete its snapshots first.'),
      dry_run: dryRunArgument,
    })
    .strict(),
  output: orDryRun(
    z.object({
      volume_id: z.string(),
      deleted: z.literal(true),
      snapshots_deleted: z.array(z.string()).optional().describe('With cascade: the snapshots deleted.'),
    }),
  ),
  // Not idempotent: a second call answers NOT_FOUND, not the first call's success.
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
  async handler({ volume_id, cascade, dry_run }, registry) {
    const result = await registry.deleteVolume(volume_id, cascade ?? false, dry_run);
    if (isDryRun(result)) return result;
    const { snapshotsDeleted } = result;
    return { volume_id, deleted: true as const, ...(cascade ? { snapshots_deleted: snapshotsDeleted } : {}) };
  },
});
