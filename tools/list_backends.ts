import { z } from 'zod';
import { describeError } from '../src/errors.js';
import { READ_ONLY_TOOL, defineTool } from '../src/tool.js';

export default defineTool({
  name: 'list_backends',
  title: 'List storage backends',
  description:
    'Lists the configured storage backends (arrays): id (the volume_backend_name other tools take as "backend"), driver, whether it initialized, its pool names, and the reason when it did not. Call this first; then get_stats for capacity or list_volumes for volumes.',
  input: z.object({}).strict(),
  output: z.object({
    backends: z.array(
      z.object({
        id: z.string(),
        volume_driver: z.string(),
        initialized: z.boolean(),
        config: z.record(z.string(), z.unknown()),
        pool_names: z.array(z.string()),
        error: z.string().optional(),
      }),
    ),
  }),
  annotations: READ_ONLY_TOOL,
  async handler(_args, registry) {
    await registry.settled();
    const backends = await Promise.all(
      registry.list().map(async (backend) => {
        const entry = {
          id: backend.id,
          volume_driver: backend.volumeDriver,
          initialized: backend.initialized,
          config: backend.config(),
          pool_names: [] as string[],
          ...(backend.error ? { error: backend.error } : {}),
        };
        if (backend.initialized) {
          try {
            entry.pool_names = await backend.poolNames();
          } catch (error) {
            return { ...entry, error: `stats unavailable: ${describeError(error)}` };
          }
        }
        return entry;
      }),
    );
    return { backends };
  },
});
