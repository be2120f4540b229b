import { z } from 'zod';
import { OPTION_KEYS, listSupportedDrivers } from '../src/core/driver-listing.js';
import { READS_METADATA_STORE, defineTool } from './define.js';

/** What each oslo.config Opt attribute says, for both output versions. */
const OPTION_ATTRIBUTES: Record<(typeof OPTION_KEYS)[number], string> = {
  name: 'The option name, as the backend config spells it.',
  type: 'The oslo.config type.',
  dest: 'The attribute the option is read into (the name).',
  short: 'Command-line short form: none.',
  default: 'The default (none for secrets, never shown).',
  sample_default: 'How a default that depends on the machine reads in documentation.',
  positional: 'Command-line positional: false.',
  metavar: 'Command-line metavar: none.',
  help: 'What the option does.',
  secret: 'Whether the value is a secret (masked in every answer and log).',
  required: 'Whether the backend config must set it.',
  deprecated_for_removal: 'Whether the option is deprecated.',
  deprecated_reason: 'Why it is deprecated: none.',
  deprecated_since: 'The release it was deprecated in: none.',
  deprecated_opts: 'Older names of the option: none.',
  mutable: 'Whether a reload applies it: false.',
  advanced: 'Whether it is an advanced option: false.',
};

const stringOption = z
  .object(Object.fromEntries(OPTION_KEYS.map((key) => [key, z.string().describe(OPTION_ATTRIBUTES[key])])) as Record<(typeof OPTION_KEYS)[number], z.ZodString>)
  .describe("Output version 1: every attribute as Python's str() writes it ('None', 'False', '20.0', the type as 'Integer(min=0, max=100)').");

const typedOption = z
  .object({
    name: z.string().describe(OPTION_ATTRIBUTES.name),
    type: z
      .object({
        type_name: z.string().describe("oslo.config's type name: 'string value', 'integer value', 'floating point value', 'boolean value'."),
        type_class: z.string().describe("The type as oslo.config writes it, e.g. 'String', 'Integer(min=1, max=65535)', \"String(choices=['on', 'off'])\"."),
      })
      .loose()
      .describe("The oslo.config type's attributes: strings have choices (a dict of the allowed values), regex, max_length; numbers min, max, num_type."),
    dest: z.string().describe(OPTION_ATTRIBUTES.dest),
    short: z.null().describe(OPTION_ATTRIBUTES.short),
    default: z.union([z.string(), z.number(), z.boolean(), z.array(z.string()), z.null()]).describe(OPTION_ATTRIBUTES.default),
    sample_default: z.string().nullable().describe(OPTION_ATTRIBUTES.sample_default),
    positional: z.boolean().describe(OPTION_ATTRIBUTES.positional),
    metavar: z.null().describe(OPTION_ATTRIBUTES.metavar),
    help: z.string().describe(OPTION_ATTRIBUTES.help),
    secret: z.boolean().describe(OPTION_ATTRIBUTES.secret),
    required: z.boolean().describe(OPTION_ATTRIBUTES.required),
    deprecated_for_removal: z.boolean().describe(OPTION_ATTRIBUTES.deprecated_for_removal),
    deprecated_reason: z.string().nullable().describe(OPTION_ATTRIBUTES.deprecated_reason),
    deprecated_since: z.string().nullable().describe(OPTION_ATTRIBUTES.deprecated_since),
    deprecated_opts: z.array(z.unknown()).describe(OPTION_ATTRIBUTES.deprecated_opts),
    mutable: z.boolean().describe(OPTION_ATTRIBUTES.mutable),
    advanced: z.boolean().describe(OPTION_ATTRIBUTES.advanced),
  })
  .describe('Output version 2: the attributes with their types.');

const driverInfo = z
  .object({
    version: z.string().describe("The driver's own version."),
    class_name: z.string().describe('The class name, the key of this entry.'),
    supported: z.boolean().describe("Whether the driver is supported: all of this server's are."),
    ci_wiki_name: z.string().nullable().describe("Cinder's third-party CI name for the driver: none runs this server's drivers."),
    driver_options: z.array(z.union([stringOption, typedOption])).describe('Every option the driver reads from a backend config.'),
    class_fqn: z.string().describe("The class path to give as volume_driver: Cinder's own for Cinder's drivers."),
    desc: z.string().describe('What the driver does.'),
  })
  .describe("One driver class: Cinder's DriverInfo fields.");

export default defineTool({
  name: 'list_supported_drivers',
  toolset: 'discovery',
  title: 'List supported drivers and their options',
  description:
    "cinderlib's list_supported_drivers: every volume_driver this server can run, keyed by class name, with its version, class path and every option a backend config may set (type, default, help, whether required or secret; secrets' defaults are never shown). output_version 1 (the default) gives each option attribute as a string, 2 keeps their types. Answers from the server's own driver definitions; no array is asked.",
  input: z
    .object({
      output_version: z
        .union([z.literal(1), z.literal(2)], { error: 'output_version must be 1 (option attributes as strings) or 2 (typed)' })
        .default(1)
        .describe("1 (default): option attributes as strings, as cinderlib's original output; 2: attributes keep their types and `type` is a dict."),
    })
    .strict(),
  output: z.object({}).catchall(driverInfo).describe("A dict keyed by driver class name, as cinderlib's list_supported_drivers returns."),
  annotations: READS_METADATA_STORE,
  async handler({ output_version }) {
    return listSupportedDrivers(output_version);
  },
});
