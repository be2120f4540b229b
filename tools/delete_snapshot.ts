import { z } from 'zod';
import { defineTool } from './define.js';
import { snapshotIdArgument } from './schemas.js';

export default defineTool({
  name: 'delete_snapshot',
  toolset: 'snapshots',
  title: 'Delete a snapshot',
  description: 'Deletes a snapshot; IN_USE while volumes depend on it.',
  input: z.object({ snapshot_id: snapshotIdArgument }).strict(),
  output: z.object({
    snapshot_id: z.string(),
    deleted: z.literal(true),
  }),
  // Not idempotent: a second call answers NOT_FOUND, not the first call's success.
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
  async handler({ snapshot_id }, registry) {
    await registry.deleteSnapshot(snapshot_id);
    return { snapshot_id, deleted: true as const };
  },
});
