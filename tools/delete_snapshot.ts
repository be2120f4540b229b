import { z } from 'zod';
import { defineTool } from './define.js';
import { isDryRun } from '../src/core/dry-run.js';
import { dryRunArgument, orDryRun, snapshotIdArgument } from './schemas.js';

export default defineTool({
  name: 'delete_snapshot',
  toolset: 'snapshots',
  title: 'Delete a snapshot',
  description: 'Deletes a snapshot; IN_USE while volumes depend on it.',
  input: z.object({ snapshot_id: snapshotIdArgument, dry_run: dryRunArgument }).strict(),
  output: orDryRun(
    z.object({
      snapshot_id: z.string(),
      deleted: z.literal(true),
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
