import { defaultMetadataPath, defaultVolumesDir } from '../paths.js';
import type { SecretRegistry } from '../secrets.js';
import { ConfigError } from './errors.js';
import { readConfigFile, type LoadedConfig } from './load.js';

/** The embedded default (contract section 3): one `file` backend named "default". */
export function embeddedDefaultConfig(env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  return {
    source: 'embedded default',
    global: {
      persistence: { storage: 'db', path: defaultMetadataPath(env) },
      outputAllBackendInfo: false,
      readOnly: false,
      rootHelper: 'sudo',
    },
    backends: [
      {
        name: 'default',
        options: { volume_backend_name: 'default', volume_driver: 'file', volumes_dir: defaultVolumesDir(env) },
      },
    ],
    warnings: [],
  };
}

/**
 * Lookup order: --config, then CINDERLIB_MCP_CONFIG, then the embedded default. An empty value
 * counts as unset, so a bundle's blank user_config field falls through to the default.
 * CINDERLIB_MCP_READ_ONLY=true forces read-only mode (the bundle's opt-in switch for writes).
 */
export async function resolveConfig(
  configPath: string | undefined,
  secrets: SecretRegistry,
  env: NodeJS.ProcessEnv = process.env,
): Promise<LoadedConfig> {
  const path = nonEmpty(configPath) ?? nonEmpty(env.CINDERLIB_MCP_CONFIG);
  const config = path ? await readConfigFile(path, { env, secrets }) : embeddedDefaultConfig(env);
  const forced = nonEmpty(env.CINDERLIB_MCP_READ_ONLY)?.toLowerCase();
  if (forced !== undefined) {
    if (['true', '1', 'yes', 'on'].includes(forced)) config.global.readOnly = true;
    else if (!['false', '0', 'no', 'off'].includes(forced)) {
      throw new ConfigError(`CINDERLIB_MCP_READ_ONLY must be true or false, got "${forced}"`);
    }
  }
  return config;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value !== undefined && value.trim() !== '' ? value : undefined;
}
