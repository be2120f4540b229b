import { z } from 'zod';
import { toSnapshotView } from '../src/model/snapshot.js';
import { READS_METADATA_STORE, defineTool } from './define.js';
import { snapshotIdArgument, snapshotSchema } from './schemas.js';

export default defineTool({
  name: 'get_snapshot',
  toolset: 'snapshots',
  title: 'Get a snapshot',
  description: 'One snapshot by id, from the metadata store.',
  input: z.object({ snapshot_id: snapshotIdArgument }).strict(),
  output: snapshotSchema,
  annotations: READS_METADATA_STORE,
  async handler({ snapshot_id }, registry) {
    return toSnapshotView(await registry.getSnapshot(snapshot_id));
  },
});
