import { z } from 'zod';
import { defineTool } from './define.js';
import { dryRunArgument, orDryRun, volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'unmanage_volume',
  toolset: 'adoption',
  title: 'Forget a volume',
  description: "Forgets a volume without touching the array (Cinder's unmanage): its data stays there, and list_unmanaged shows it again.",
  input: z.object({ volume_id: volumeIdArgument, dry_run: dryRunArgument }).strict(),
  output: orDryRun(
    z.object({
      volume_id: z.string().describe("The forgotten volume's id."),
      unmanaged: z.literal(true).describe('Always true: the record is gone, the array volume is not.'),
    }),
  ),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  async handler({ volume_id, dry_run }, registry) {
    return registry.unmanageVolume(volume_id, dry_run);
  },
});
