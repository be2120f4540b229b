import { z } from 'zod';
import { READS_ARRAYS, defineTool } from './define.js';
import { backendArgument } from './schemas.js';

export default defineTool({
  name: 'pool_names',
  toolset: 'backends',
  title: 'List pools',
  description: "A backend's pools; the first is create_volume's default.",
  input: z.object({ backend: backendArgument }).strict(),
  output: z.object({
    backend: z.string(),
    pool_names: z.array(z.string()),
  }),
  annotations: READS_ARRAYS,
  async handler({ backend }, registry) {
    const target = registry.get(backend);
    await target.stats(false); // fails with the reason when the backend is not serving
    return { backend, pool_names: await target.poolNames() };
  },
});
