import { z } from 'zod';
import { defineTool } from './define.js';
import { shown } from '../src/core/dry-run.js';
import { toVolumeView } from '../src/model/volume.js';
import { descriptionArgument, dryRunArgument, nameArgument, orDryRun, volumeIdArgument, volumeSchema } from './schemas.js';

export default defineTool({
  name: 'update_volume',
  toolset: 'volumes',
  title: 'Rename or describe a volume',
  description: "Changes a volume's name, description or bootable flag (metadata only).",
  input: z
    .object({
      volume_id: volumeIdArgument,
      name: nameArgument.optional(),
      description: descriptionArgument.optional(),
      bootable: z.boolean({ error: 'bootable must be true or false' }).optional().describe('Metadata only.'),
      dry_run: dryRunArgument,
    })
    .strict(),
  output: orDryRun(volumeSchema),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  auditedWithOutcome: true,
  async handler({ volume_id, dry_run, ...changes }, registry) {
    return shown(await registry.updateVolume(volume_id, changes, dry_run), toVolumeView);
  },
});
