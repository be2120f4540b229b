import { z } from 'zod';
import { READS_ARRAYS, defineTool } from './define.js';
import { backendArgument } from './schemas.js';

export default defineTool({
  name: 'pool_names',
  toolset: 'backends',
  title: 'List pools of a backend',
  description:
    'Lists the pool names of a backend; pass one as pool_name to create_volume to choose where a volume goes (by default the first pool). Backends that are not pool-aware have one pool named after the backend. Reads them from the cached stats (the first call asks the array).',
  input: z.object({ backend: backendArgument }).strict(),
  output: z.object({
    backend: z.string().describe('The backend asked about.'),
    pool_names: z.array(z.string()).describe('Pool names, the first being the default for create_volume.'),
  }),
  annotations: READS_ARRAYS,
  async handler({ backend }, registry) {
    const target = registry.get(backend);
    await target.stats(false); // fails with the reason when the backend is not serving
    return { backend, pool_names: await target.poolNames() };
  },
});
