import { z } from 'zod';
import { defineTool } from './define.js';
import { shown } from '../src/core/dry-run.js';
import { toVolumeView } from '../src/model/volume.js';
import { dryRunArgument, orDryRun, snapshotIdArgument, volumeIdArgument, volumeSchema } from './schemas.js';

export default defineTool({
  name: 'revert_to_snapshot',
  toolset: 'snapshots',
  title: 'Revert a volume to a snapshot',
  description: "Puts an \"available\" volume's data back to its snapshot's (Cinder's revert): later writes are lost; its size stays.",
  input: z.object({ volume_id: volumeIdArgument, snapshot_id: snapshotIdArgument, dry_run: dryRunArgument }).strict(),
  output: orDryRun(volumeSchema),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
  auditedWithOutcome: true,
  async handler({ volume_id, snapshot_id, dry_run }, registry) {
    return shown(await registry.revertToSnapshot(volume_id, snapshot_id, dry_run), toVolumeView);
  },
});
