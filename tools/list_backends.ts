import { z } from 'zod';
import { READS_ARRAYS, defineTool } from './define.js';

export default defineTool({
  name: 'list_backends',
  toolset: 'backends',
  title: 'List storage backends',
  description:
    'Lists the configured storage backends (arrays): id (the volume_backend_name other tools take as "backend"), driver, whether it initialized, its pool names, and the reason when it did not. Answers at once from what is known, never waiting for an array: a backend still starting shows initializing: true, a failed one its reason and next_retry_at. Call this first; then get_stats for capacity or list_volumes for volumes.',
  input: z.object({}).strict(),
  output: z.object({
    backends: z
      .array(
        z.object({
          id: z.string().describe('volume_backend_name: pass it as "backend" to the other tools.'),
          volume_driver: z.string().describe('The driver the backend uses, as configured in volume_driver.'),
          initialized: z.boolean().describe('true when the backend is serving.'),
          config: z.record(z.string(), z.unknown()).describe('volume_backend_name alone, or every option (secrets masked) when output_all_backend_info is on.'),
          pool_names: z.array(z.string()).describe('Pool names as last seen; empty until the backend has answered once.'),
          capabilities: z
            .object({
              snapshots: z.boolean().describe('create_snapshot, delete_snapshot and create_volume with snapshot_id work here.'),
              clones: z.boolean().describe('create_volume with source_volume_id works here.'),
              exports: z.boolean().describe('connect_volume can export volumes to hosts here (a file backend needs target_helper: tgtadm).'),
            })
            .optional()
            .describe('What the driver can do beyond volumes (once initialized); the rest answers UNSUPPORTED.'),
          initializing: z.boolean().optional().describe('true while an initialization attempt is under way.'),
          error: z.string().optional().describe("Why the backend is not serving (the last attempt's reason)."),
          next_retry_at: z.string().optional().describe('When a failed backend is tried again on its next call (ISO 8601); get_stats refresh: true retries at once.'),
        }),
      )
      .describe('Every configured backend, in config order.'),
    config_error: z
      .string()
      .optional()
      .describe(
        'Set when the config file cannot be used at all (unreadable, not valid YAML/JSON, no backends list): then no backend is listed, and other tools answer with this error.',
      ),
  }),
  annotations: READS_ARRAYS, // it starts a backend's (re)initialization and first stats read, which ask the array
  async handler(_args, registry) {
    return { backends: await registry.describeBackends(), ...(registry.configError ? { config_error: registry.configError } : {}) };
  },
});
