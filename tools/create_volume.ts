import { z } from 'zod';
import { defineTool } from './define.js';
import { toVolumeView } from '../src/model/volume.js';
import { shown } from '../src/core/dry-run.js';
import {
  backendArgument,
  descriptionArgument,
  dryRunArgument,
  orDryRun,
  nameArgument,
  requestIdArgument,
  sizeArgument,
  snapshotIdArgument,
  volumeIdArgument,
  volumeSchema,
} from './schemas.js';

export default defineTool({
  name: 'create_volume',
  toolset: 'volumes',
  title: 'Create a volume',
  description:
    "Creates a volume: empty, from snapshot_id, or a clone of source_volume_id (backend and size then default to the source's). Refused before touching the array if the pool lacks room.",
  input: z
    .object({
      backend: backendArgument.optional().describe('volume_backend_name; required unless copying.'),
      size: sizeArgument('size').optional().describe('GiB; required unless copying.'),
      snapshot_id: snapshotIdArgument.optional().describe('Copy this snapshot.'),
      source_volume_id: volumeIdArgument.optional().describe('Clone this volume.'),
      name: nameArgument.optional(),
      description: descriptionArgument.optional(),
      pool_name: z.string({ error: 'pool_name must be a string from pool_names' }).min(1).optional().describe('From pool_names; default the first.'),
      bootable: z.boolean({ error: 'bootable must be true or false' }).optional().describe('Metadata only.'),
      request_id: requestIdArgument.optional(),
      dry_run: dryRunArgument,
    })
    .strict(),
  output: orDryRun(volumeSchema),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  auditedWithOutcome: true,
  async handler(args, registry) {
    const { backend, dry_run, ...input } = args;
    return shown(await registry.createVolume(backend, input, args, dry_run), toVolumeView);
  },
});
