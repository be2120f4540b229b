import { z } from 'zod';
import { READS_ARRAYS, defineTool } from './define.js';

export default defineTool({
  name: 'list_backends',
  toolset: 'backends',
  title: 'List backends',
  description: 'Backends: id (the "backend" argument), driver, serving or why not, pools, capabilities. Call it first.',
  input: z.object({}).strict(),
  output: z.object({
    backends: z.array(
      z.object({
        id: z.string(),
        volume_driver: z.string(),
        initialized: z.boolean(),
        config: z.record(z.string(), z.unknown()),
        pool_names: z.array(z.string()),
        capabilities: z.object({ snapshots: z.boolean(), clones: z.boolean(), exports: z.boolean() }).optional(),
        initializing: z.boolean().optional(),
        error: z.string().optional(),
        next_retry_at: z.string().optional().describe('get_stats refresh: true retries now.'),
      }),
    ),
    config_error: z.string().optional().describe('The config is unusable; other tools answer this.'),
  }),
  annotations: READS_ARRAYS, // it starts a backend's (re)initialization and first stats read, which ask the array
  async handler(_args, registry) {
    return { backends: await registry.describeBackends(), ...(registry.configError ? { config_error: registry.configError } : {}) };
  },
});
