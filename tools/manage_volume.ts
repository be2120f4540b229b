import { z } from 'zod';
import { defineTool } from './define.js';
import { shown } from '../src/core/dry-run.js';
import { toVolumeView } from '../src/model/volume.js';
import { backendArgument, dryRunArgument, nameArgument, orDryRun, volumeSchema } from './schemas.js';

export default defineTool({
  name: 'manage_volume',
  toolset: 'adoption',
  title: 'Adopt an array volume',
  description:
    "Adopts an array volume from list_unmanaged as a volume of this server (Cinder's manage_existing), renamed to this driver's naming where Cinder's driver renames; its data is kept.",
  input: z
    .object({
      backend: backendArgument,
      reference: z
        .object({ 'source-name': z.string({ error: 'reference.source-name must be a name from list_unmanaged' }).min(1).describe('Its name on the array.') })
        .strict()
        .describe('A reference from list_unmanaged.'),
      name: nameArgument.optional().describe('Display name (default: the array name).'),
      dry_run: dryRunArgument,
    })
    .strict(),
  output: orDryRun(volumeSchema),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  auditedWithOutcome: true,
  async handler({ backend, reference, name, dry_run }, registry) {
    return shown(await registry.manageVolume(backend, reference['source-name'], name, dry_run), toVolumeView);
  },
});
