import { z } from 'zod';
import { toConnectionView } from '../src/model/connection.js';
import { defineTool } from './define.js';
import { shown } from '../src/core/dry-run.js';
import { connectionSchema, dryRunArgument, orDryRun, volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'attach_volume',
  title: "Attach a volume on the server's host",
  description:
    'Attaches a volume on the host this server runs on (cinderlib\'s vol.attach) and returns the connection with device.path, a block device there: the file driver through a loop device, iSCSI backends through the host\'s open-iscsi initiator. A host that cannot attach (no kernel iSCSI initiator, no root) answers UNSUPPORTED saying why, before touching the array. The volume becomes "in-use"; undo with detach_volume.',
  input: z.object({ volume_id: volumeIdArgument, dry_run: dryRunArgument }).strict(),
  output: orDryRun(connectionSchema),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler({ volume_id, dry_run }, registry) {
    return shown(await registry.attachVolume(volume_id, dry_run), (record) => toConnectionView(record, (value) => registry.mask(value)));
  },
});
