import { z } from 'zod';
import { toSnapshotView } from '../src/model/snapshot.js';
import { defineTool } from './define.js';
import { shown } from '../src/core/dry-run.js';
import { descriptionArgument, dryRunArgument, nameArgument, orDryRun, requestIdArgument, snapshotSchema, volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'create_snapshot',
  title: 'Snapshot a volume',
  description:
    'Takes a snapshot of an "available" volume (cinderlib\'s vol.create_snapshot) and returns it with status "available": a restore point to make new volumes from (create_volume with snapshot_id), e.g. before a risky change. The snapshot lives on the volume\'s backend; a volume with snapshots cannot be deleted without cascade. Drivers without snapshots answer UNSUPPORTED. Pass request_id to make a retry safe.',
  input: z
    .object({
      volume_id: volumeIdArgument,
      name: nameArgument.optional(),
      description: descriptionArgument.optional(),
      request_id: requestIdArgument.optional(),
      dry_run: dryRunArgument,
    })
    .strict(),
  output: orDryRun(snapshotSchema),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler(args, registry) {
    const { volume_id, dry_run, ...input } = args;
    return shown(await registry.createSnapshot(volume_id, input, args, dry_run), toSnapshotView);
  },
});
