import { z } from 'zod';
import { toSnapshotView } from '../src/model/snapshot.js';
import { defineTool } from './define.js';
import { shown } from '../src/core/dry-run.js';
import { descriptionArgument, dryRunArgument, nameArgument, orDryRun, requestIdArgument, snapshotSchema, volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'create_snapshot',
  toolset: 'snapshots',
  title: 'Snapshot a volume',
  description: 'Snapshots an "available" volume: a restore point for create_volume with snapshot_id.',
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
  auditedWithOutcome: true,
  async handler(args, registry) {
    const { volume_id, dry_run, ...input } = args;
    return shown(await registry.createSnapshot(volume_id, input, args, dry_run), toSnapshotView);
  },
});
