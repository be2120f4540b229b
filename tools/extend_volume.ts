import { z } from 'zod';
import { defineTool } from './define.js';
import { toVolumeView } from '../src/model/volume.js';
import { shown } from '../src/core/dry-run.js';
import { dryRunArgument, orDryRun, sizeArgument, volumeIdArgument, volumeSchema } from './schemas.js';

export default defineTool({
  name: 'extend_volume',
  toolset: 'volumes',
  title: 'Extend a volume',
  description: 'Grows an "available" volume to new_size GiB.',
  input: z
    .object({
      volume_id: volumeIdArgument,
      new_size: sizeArgument('new_size').describe('New total size in GiB.'),
      dry_run: dryRunArgument,
    })
    .strict(),
  output: orDryRun(volumeSchema),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  auditedWithOutcome: true,
  async handler({ volume_id, new_size, dry_run }, registry) {
    return shown(await registry.extendVolume(volume_id, new_size, dry_run), toVolumeView);
  },
});
