import { homedir } from 'node:os';
import { join } from 'node:path';

/** The data directory of the embedded default: $XDG_DATA_HOME/cinderlib-mcp (contract section 3). */
export function dataDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_DATA_HOME && env.XDG_DATA_HOME.trim() ? env.XDG_DATA_HOME : join(homedir(), '.local', 'share');
  return join(base, 'cinderlib-mcp');
}

export function defaultVolumesDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(dataDir(env), 'volumes');
}

export function defaultMetadataPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(dataDir(env), 'metadata.sqlite');
}
