import { z } from 'zod';
import { OPTION_KEYS, listSupportedDrivers } from '../src/core/driver-listing.js';
import { READS_METADATA_STORE, defineTool } from './define.js';

/**
 * One driver class: Cinder's DriverInfo fields. The options are oslo.config Opts as cinderlib lists
 * them (OPTION_KEYS); the schema names them in a sentence rather than field by field: at 17
 * attributes in two versions that would be the biggest schema of all, for an answer agents read
 * rarely (tools/list is in every conversation's context).
 */
const driverInfo = z.object({
  version: z.string(),
  class_name: z.string(),
  supported: z.boolean(),
  ci_wiki_name: z.string().nullable(),
  driver_options: z.array(z.object({ name: z.string() }).loose()).describe(`oslo.config options: ${OPTION_KEYS.join(', ')}; all strings in output_version 1.`),
  class_fqn: z.string().describe('Give it as volume_driver.'),
  desc: z.string(),
});

export default defineTool({
  name: 'list_supported_drivers',
  toolset: 'discovery',
  title: 'List supported drivers',
  description: "cinderlib's list_supported_drivers: the volume_drivers this server runs, keyed by class name, with their options.",
  input: z
    .object({
      output_version: z
        .union([z.literal(1), z.literal(2)], { error: 'output_version must be 1 (option attributes as strings) or 2 (typed)' })
        .default(1)
        .describe('1: option attributes as strings (cinderlib); 2: typed.'),
    })
    .strict(),
  output: z.object({}).catchall(driverInfo).describe('Keyed by class name.'),
  annotations: READS_METADATA_STORE,
  async handler({ output_version }) {
    // Option interfaces have no index signature; the loose option schema takes them as they are.
    return (await listSupportedDrivers(output_version)) as unknown as Record<string, z.input<typeof driverInfo>>;
  },
});
