import { z } from 'zod';
import { READS_ARRAYS, defineTool } from './define.js';
import { backendArgument } from './schemas.js';

/** A GiB figure, or one of the markers Cinder drivers report when they cannot give one. */
const capacityGb = (what: string) =>
  z.union([z.number(), z.enum(['unknown', 'infinite'])]).describe(`${what} in GiB, or the string "unknown" (the array did not say) or "infinite" (no limit), as Cinder reports them.`);

const poolSchema = z
  .object({
    pool_name: z.string().describe('Pool name; pass it as pool_name to create_volume.'),
    total_capacity_gb: capacityGb('Total capacity'),
    free_capacity_gb: capacityGb('Free physical capacity'),
    provisioned_capacity_gb: z.number().optional().describe('GiB promised to volumes (for thin pools, more than is written).'),
    reserved_percentage: z.number().describe('Percent of total capacity kept free, never given to volumes.'),
    max_over_subscription_ratio: z.union([z.number(), z.string()]).describe('How many times total capacity thin volumes may promise (a number, or a string such as "auto" or "20.0").'),
    thin_provisioning_support: z.boolean().describe('Volumes are thin: they take space as data is written.'),
    thick_provisioning_support: z.boolean().describe('Volumes are thick: they take their whole size at creation.'),
  })
  .loose()
  .describe('One pool; drivers add other Cinder stats keys.');

export default defineTool({
  name: 'get_stats',
  toolset: 'backends',
  title: 'Get backend capacity and capabilities',
  description:
    'Returns the Cinder stats of a backend: vendor_name, driver_version, storage_protocol and, per pool, total_capacity_gb, free_capacity_gb, provisioned_capacity_gb (GiB), reserved_percentage, max_over_subscription_ratio and thin/thick provisioning support. total_capacity_gb and free_capacity_gb are numbers of GiB, or the strings "unknown" or "infinite" when the array gives no figure. Answers from a cache (the first call asks the array); pass refresh: true to ask the array again. Use it before create_volume to see how much room a pool has.',
  input: z
    .object({
      backend: backendArgument,
      refresh: z.boolean({ error: 'refresh must be true or false' }).optional().describe('true asks the array again instead of the cache.'),
    })
    .strict(),
  output: z.object({
    backend: z.string().describe('The backend asked about.'),
    stats: z
      .object({
        driver_version: z.string().describe('Version of the driver.'),
        storage_protocol: z.string().describe('How volumes would be attached (iSCSI, FC, file, ...).'),
        vendor_name: z.string().describe('Array vendor.'),
        volume_backend_name: z.string().describe('The backend name.'),
        pools: z.array(poolSchema).describe('Capacity per pool.'),
      })
      .loose()
      .describe('The Cinder stats dict (get_volume_stats); drivers add other keys.'),
  }),
  annotations: READS_ARRAYS,
  async handler({ backend, refresh }, registry) {
    const stats = await registry.get(backend).stats(refresh ?? false);
    return { backend, stats };
  },
});
