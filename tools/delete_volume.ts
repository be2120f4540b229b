import { z } from 'zod';
import { defineTool } from './define.js';
import { isDryRun } from '../src/core/dry-run.js';
import { dryRunArgument, orDryRun, volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'delete_volume',
  title: 'Delete a volume',
  description:
    'Deletes a volume and all its data from the array, then forgets it. Works on "available" volumes and on volumes in "error" (e.g. a failed create). A volume with snapshots is refused with IN_USE naming them, unless cascade is true, which deletes its snapshots first (Cinder\'s cascade). This cannot be undone. Calling it again for the same volume answers NOT_FOUND: after a delete_volume, NOT_FOUND for that volume_id means the volume is gone.',
  input: z
    .object({
      volume_id: volumeIdArgument,
      cascade: z.boolean({ error: 'cascade must be true or false' }).optional().describe("Also delete the volume's snapshots (first). Default false."),
      dry_run: dryRunArgument,
    })
    .strict(),
  output: orDryRun(
    z.object({
      volume_id: z.string().describe("The deleted volume's id."),
      deleted: z.literal(true).describe('Always true: the array no longer holds the volume and the metadata store forgot it.'),
      snapshots_deleted: z.array(z.string()).optional().describe('With cascade: the ids of the snapshots deleted with it (possibly none).'),
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
