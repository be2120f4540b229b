import { z } from 'zod';
import { READS_ARRAYS, defineTool } from './define.js';
import { backendArgument } from './schemas.js';

/** A GiB figure, or one of the markers Cinder drivers report when they cannot give one. */
const capacityGb = z.union([z.number(), z.enum(['unknown', 'infinite'])]);

// The pool fields the description names beyond these are there too (loose: drivers add Cinder's other keys).
const poolSchema = z.object({ pool_name: z.string(), total_capacity_gb: capacityGb, free_capacity_gb: capacityGb }).loose();

export default defineTool({
  name: 'get_stats',
  toolset: 'backends',
  title: 'Backend capacity',
  description: 'Cinder stats of a backend, capacity per pool in GiB. Cached; refresh: true asks the array.',
  input: z
    .object({
      backend: backendArgument,
      refresh: z.boolean({ error: 'refresh must be true or false' }).optional().describe('Ask the array, not the cache.'),
    })
    .strict(),
  output: z.object({
    backend: z.string(),
    stats: z
      .object({ driver_version: z.string(), storage_protocol: z.string(), vendor_name: z.string(), volume_backend_name: z.string(), pools: z.array(poolSchema) })
      .loose()
      .describe('Capacities: GiB, "unknown" or "infinite".'),
  }),
  annotations: READS_ARRAYS,
  async handler({ backend, refresh }, registry) {
    const stats = await registry.get(backend).stats(refresh ?? false);
    return { backend, stats };
  },
});
