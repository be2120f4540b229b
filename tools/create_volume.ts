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
  title: 'Create a volume',
  description:
    'Creates a block volume of "size" GiB on a backend (see list_backends) and returns it with status "available". With snapshot_id it holds that snapshot\'s data; with source_volume_id it is a clone of that volume (its data at the moment of the call): then backend may be omitted (it is the source\'s), size defaults to the source\'s and may be larger, never smaller. Sizes the pool cannot hold are refused before the array is touched (get_stats shows the room). name and description are free text kept in the metadata store only (a copy takes name, description and bootable from its source volume unless given, as cinderlib does); the array object is named after the volume id. Each call creates a new volume, unless it repeats a request_id.',
  input: z
    .object({
      backend: backendArgument.optional().describe('Backend name (volume_backend_name) from list_backends; required unless snapshot_id or source_volume_id is given.'),
      size: sizeArgument('size').optional().describe('Size in GiB (whole number, 1 or more); required unless copying from a snapshot or volume, whose size is the default.'),
      snapshot_id: snapshotIdArgument.optional().describe('Make the volume from this snapshot (its data, on its backend).'),
      source_volume_id: volumeIdArgument.optional().describe('Make the volume a clone of this volume (its data now, on its backend).'),
      name: nameArgument.optional(),
      description: descriptionArgument.optional(),
      pool_name: z.string({ error: 'pool_name must be a string from pool_names' }).min(1).optional().describe("Pool to use (from pool_names); default the backend's first pool."),
      bootable: z.boolean({ error: 'bootable must be true or false' }).optional().describe('Mark the volume bootable (metadata only).'),
      request_id: requestIdArgument.optional(),
      dry_run: dryRunArgument,
    })
    .strict(),
  output: orDryRun(volumeSchema),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler(args, registry) {
    const { backend, dry_run, ...input } = args;
    return shown(await registry.createVolume(backend, input, args, dry_run), toVolumeView);
  },
});
