import { z } from 'zod';
import { toSnapshotView } from '../src/model/snapshot.js';
import { READS_METADATA_STORE, defineTool } from './define.js';
import { snapshotIdArgument, snapshotSchema } from './schemas.js';

export default defineTool({
  name: 'get_snapshot',
  toolset: 'snapshots',
  title: 'Get a snapshot',
  description:
    'Returns one snapshot by id from the metadata store (the array is not asked): its volume, name, volume_size (GiB), status (creating, available, deleting, error), backend and creation time; status_reason explains an error.',
  input: z.object({ snapshot_id: snapshotIdArgument }).strict(),
  output: snapshotSchema,
  annotations: READS_METADATA_STORE,
  async handler({ snapshot_id }, registry) {
    return toSnapshotView(await registry.getSnapshot(snapshot_id));
  },
});
