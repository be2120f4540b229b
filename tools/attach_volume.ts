import { z } from 'zod';
import { toConnectionView } from '../src/model/connection.js';
import { defineTool } from './define.js';
import { shown } from '../src/core/dry-run.js';
import { connectionSchema, dryRunArgument, orDryRun, volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'attach_volume',
  toolset: 'connections',
  title: 'Attach a volume here',
  description: "Attaches a volume on this server's host; the answer's device.path is the block device.",
  input: z.object({ volume_id: volumeIdArgument, dry_run: dryRunArgument }).strict(),
  output: orDryRun(connectionSchema),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler({ volume_id, dry_run }, registry) {
    return shown(await registry.attachVolume(volume_id, dry_run), (record) => toConnectionView(record, (value) => registry.mask(value)));
  },
});
