import { z } from 'zod';
import { READS_METADATA_STORE, defineTool } from './define.js';
import { toVolumeView } from '../src/model/volume.js';
import { volumeIdArgument, volumeSchema } from './schemas.js';

export default defineTool({
  name: 'get_volume',
  toolset: 'volumes',
  title: 'Get a volume',
  description: 'One volume by id, from the metadata store.',
  input: z.object({ volume_id: volumeIdArgument }).strict(),
  output: volumeSchema,
  annotations: READS_METADATA_STORE,
  async handler({ volume_id }, registry) {
    return toVolumeView(await registry.getVolume(volume_id));
  },
});
