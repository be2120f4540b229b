import { z } from 'zod';
import { READ_ONLY_TOOL, defineTool } from '../src/tool.js';
import { backendArgument } from './schemas.js';

export default defineTool({
  name: 'pool_names',
  title: 'List pools of a backend',
  description:
    'Lists the pool names of a backend; pass one as pool_name to create_volume to choose where a volume goes (by default the first pool). Backends that are not pool-aware have one pool named after the backend.',
  input: z.object({ backend: backendArgument }).strict(),
  output: z.object({ backend: z.string(), pool_names: z.array(z.string()) }),
  annotations: READ_ONLY_TOOL,
  async handler({ backend }, registry) {
    const target = registry.get(backend);
    await target.stats(false); // fails with the reason when the backend is not serving
    return { backend, pool_names: await target.poolNames() };
  },
});
