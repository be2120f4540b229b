import { z } from 'zod';
import { READ_ONLY_TOOL, defineTool } from '../src/tool.js';
import { backendArgument } from './schemas.js';

const poolSchema = z
  .object({
    pool_name: z.string(),
    total_capacity_gb: z.union([z.number(), z.string()]),
    free_capacity_gb: z.union([z.number(), z.string()]),
  })
  .loose();

export default defineTool({
  name: 'get_stats',
  title: 'Get backend capacity and capabilities',
  description:
    'Returns the Cinder stats of a backend: vendor_name, driver_version, storage_protocol and, per pool, total_capacity_gb, free_capacity_gb, provisioned_capacity_gb (GiB), reserved_percentage, max_over_subscription_ratio and thin/thick provisioning support. Answers from a cache; pass refresh: true to ask the array again. Use it before create_volume to see how much room a pool has.',
  input: z
    .object({
      backend: backendArgument,
      refresh: z.boolean({ error: 'refresh must be true or false' }).optional().describe('true asks the array again instead of the cache.'),
    })
    .strict(),
  output: z.object({
    backend: z.string(),
    stats: z
      .object({
        driver_version: z.string(),
        storage_protocol: z.string(),
        vendor_name: z.string(),
        volume_backend_name: z.string(),
        pools: z.array(poolSchema),
      })
      .loose(),
  }),
  annotations: READ_ONLY_TOOL,
  async handler({ backend, refresh }, registry) {
    const stats = await registry.get(backend).stats(refresh ?? false);
    return { backend, stats };
  },
});
