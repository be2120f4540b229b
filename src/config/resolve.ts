import { defaultMetadataPath, defaultVolumesDir } from '../base/paths.js';
import type { SecretRegistry } from '../base/secrets.js';
import { ConfigError } from './errors.js';
import { DEFAULT_LEASE_SECONDS } from './defaults.js';
import type { LoadedConfig } from './load.js';
import { DEFAULT_TOOLSETS, resolveToolsets } from './toolsets.js';

export interface ResolveOverrides {
  /** `--toolsets a,b` from the command line: wins over CINDERLIB_MCP_TOOLSETS and global.toolsets. */
  toolsets?: string;
}

/** The embedded default (contract section 3): one `file` backend named "default". */
export function embeddedDefaultConfig(env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  return {
    source: 'embedded default',
    global: {
      persistence: { storage: 'db', path: defaultMetadataPath(env) },
      outputAllBackendInfo: false,
      readOnly: false,
      toolsets: [...DEFAULT_TOOLSETS],
      rootHelper: 'sudo -n',
      leaseSeconds: DEFAULT_LEASE_SECONDS,
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
 * Toolsets: --toolsets, then CINDERLIB_MCP_TOOLSETS, then global.toolsets, then the default ones.
 */
export async function resolveConfig(
  configPath: string | undefined,
  secrets: SecretRegistry,
  env: NodeJS.ProcessEnv = process.env,
  overrides: ResolveOverrides = {},
): Promise<LoadedConfig> {
  const path = nonEmpty(configPath) ?? nonEmpty(env.CINDERLIB_MCP_CONFIG);
  let config: LoadedConfig;
  try {
    // The loader (zod, yaml) loads only for a config file: the embedded default starts without it.
    config = path ? await (await import('./load.js')).readConfigFile(path, { env, secrets }) : embeddedDefaultConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return unusableConfig(path ?? 'embedded default', error.message, env);
  }
  const forced = nonEmpty(env.CINDERLIB_MCP_READ_ONLY)?.toLowerCase();
  if (forced !== undefined) {
    if (['true', '1', 'yes', 'on'].includes(forced)) config.global.readOnly = true;
    else if (!['false', '0', 'no', 'off'].includes(forced)) {
      return unusableConfig(config.source, `CINDERLIB_MCP_READ_ONLY must be true or false, got "${forced}"`, env);
    }
  }
  const toolsets = nonEmpty(overrides.toolsets) ?? nonEmpty(env.CINDERLIB_MCP_TOOLSETS);
  if (toolsets !== undefined) {
    const where = nonEmpty(overrides.toolsets) !== undefined ? '--toolsets' : 'CINDERLIB_MCP_TOOLSETS';
    try {
      config.global.toolsets = resolveToolsets(toolsets, where);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      return unusableConfig(config.source, error.message, env);
    }
  }
  return config;
}

/**
 * A config that cannot be used as a whole. The server still starts (so a desktop user sees why
 * in the client, not on a stderr nobody reads) with no backend and no metadata store: every tool
 * but list_backends answers with the error, so nothing can be changed either.
 */
function unusableConfig(source: string, error: string, env: NodeJS.ProcessEnv): LoadedConfig {
  const fallback = embeddedDefaultConfig(env);
  return { source, error, global: { ...fallback.global, persistence: { storage: 'memory' } }, backends: [], warnings: [] };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value !== undefined && value.trim() !== '' ? value : undefined;
}
