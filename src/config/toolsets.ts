/**
 * Toolsets (contract section 14), as github-mcp-server has them: groups of tools a server offers,
 * chosen with `global.toolsets`, `CINDERLIB_MCP_TOOLSETS` or `--toolsets a,b`. `backends` is always
 * on; `all` enables every toolset and `default` the default ones (so `default,discovery` adds one).
 *
 * Each tool declares its toolset in its own definition (tools/define.ts); the lists below name the
 * tools the contract puts in each toolset, for the help texts and a test that checks the two agree.
 * A name listed here and defined by no tool is simply absent until a tool defines it.
 */

import { ConfigError } from './errors.js';

export const TOOLSET_NAMES = ['backends', 'volumes', 'snapshots', 'connections', 'discovery', 'adoption'] as const;
export type ToolsetName = (typeof TOOLSET_NAMES)[number];

export interface ToolsetInfo {
  /** What the toolset is for, in a few words (instructions, --help, README). */
  description: string;
  /** The tools the contract puts in it. */
  tools: readonly string[];
}

export const TOOLSETS: Readonly<Record<ToolsetName, ToolsetInfo>> = {
  backends: { description: 'backends, capacity and pools (always on)', tools: ['list_backends', 'get_stats', 'pool_names'] },
  volumes: {
    description: 'list, create, change and delete volumes',
    tools: ['list_volumes', 'get_volume', 'create_volume', 'extend_volume', 'update_volume', 'delete_volume'],
  },
  snapshots: { description: 'snapshots and reverts', tools: ['list_snapshots', 'get_snapshot', 'create_snapshot', 'delete_snapshot', 'revert_to_snapshot'] },
  connections: {
    description: 'export volumes to hosts and attach them here',
    tools: ['validate_connector', 'connect_volume', 'list_connections', 'disconnect_volume', 'attach_volume', 'detach_volume'],
  },
  discovery: { description: 'the drivers this server runs and their options', tools: ['list_supported_drivers'] },
  adoption: { description: 'adopt or forget array volumes no record knows', tools: ['list_unmanaged', 'manage_volume', 'unmanage_volume'] },
};

export const ALWAYS_ON: readonly ToolsetName[] = ['backends'];
export const DEFAULT_TOOLSETS: readonly ToolsetName[] = ['backends', 'volumes', 'snapshots', 'connections'];
/** Keywords accepted besides the toolset names. */
export const TOOLSET_KEYWORDS = ['all', 'default'] as const;

export function isToolsetName(name: string): name is ToolsetName {
  return (TOOLSET_NAMES as readonly string[]).includes(name);
}

/** The toolset the contract puts a tool in, or undefined for a name it does not know. */
export function toolsetOfName(tool: string): ToolsetName | undefined {
  return TOOLSET_NAMES.find((name) => TOOLSETS[name].tools.includes(tool));
}

/**
 * The toolsets a list of names enables, in table order: `all`, `default` and the names expanded,
 * `backends` always added. A string is split on commas; blanks are ignored. An unknown name is a
 * ConfigError naming `where` and what is accepted.
 */
export function resolveToolsets(requested: string | readonly string[], where: string): ToolsetName[] {
  const names = (typeof requested === 'string' ? requested.split(',') : requested).map((name) => name.trim().toLowerCase()).filter((name) => name !== '');
  const enabled = new Set<ToolsetName>(ALWAYS_ON);
  for (const name of names) {
    if (name === 'all') TOOLSET_NAMES.forEach((toolset) => enabled.add(toolset));
    else if (name === 'default') DEFAULT_TOOLSETS.forEach((toolset) => enabled.add(toolset));
    else if (isToolsetName(name)) enabled.add(name);
    else throw new ConfigError(`${where}: unknown toolset "${name}"; toolsets are ${[...TOOLSET_NAMES, ...TOOLSET_KEYWORDS].join(', ')}`);
  }
  if (names.length === 0) DEFAULT_TOOLSETS.forEach((toolset) => enabled.add(toolset));
  return TOOLSET_NAMES.filter((name) => enabled.has(name));
}
