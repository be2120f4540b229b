import { z } from 'zod';
import { defineTool } from './define.js';
import { isDryRun } from '../src/core/dry-run.js';
import { dryRunArgument, orDryRun, snapshotIdArgument } from './schemas.js';

export default defineTool({
  name: 'delete_snapshot',
  title: 'Delete a snapshot',
  description:
    'Deletes a snapshot from the array, then forgets it. Works on "available" snapshots and on snapshots in "error". Volumes already made from it are not affected where the array keeps them independent; where they still depend on it (thin LVM), the driver refuses with IN_USE naming them. Calling it again answers NOT_FOUND: the snapshot is gone.',
  input: z.object({ snapshot_id: snapshotIdArgument, dry_run: dryRunArgument }).strict(),
  output: orDryRun(
    z.object({
      snapshot_id: z.string().describe("The deleted snapshot's id."),
      deleted: z.literal(true).describe('Always true: the array no longer holds the snapshot and the metadata store forgot it.'),
    }),
  ),
  // Not idempotent: a second call answers NOT_FOUND, not the first call's success.
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
  async handler({ snapshot_id, dry_run }, registry) {
    const result = await registry.deleteSnapshot(snapshot_id, dry_run);
    if (isDryRun(result)) return result;
    return { snapshot_id, deleted: true as const };
  },
});
