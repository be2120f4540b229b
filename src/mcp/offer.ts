/**
 * What a session offers: the tools of the enabled toolsets, less the mutating ones in read-only
 * mode (a filter over the same list), and the instructions sent at `initialize`, generated from
 * that offer. Loaded before the MCP SDK and zod (src/mcp/startup-answers.ts): plain data only.
 */

import { TOOLSETS, TOOLSET_NAMES, type ToolsetName } from '../config/toolsets.js';

export interface Offer {
  /** Enabled toolsets (GlobalOptions.toolsets). */
  toolsets: readonly ToolsetName[];
  readOnly: boolean;
}

/** What the filter needs of a tool: its name, toolset and whether it only reads. */
export interface OfferedToolInfo {
  name: string;
  toolset: ToolsetName;
  readOnly: boolean;
}

export function isOffered(tool: OfferedToolInfo, offer: Offer): boolean {
  return offer.toolsets.includes(tool.toolset) && (!offer.readOnly || tool.readOnly);
}

/** How to turn a toolset on, for the instructions and the answer to a call of a tool not offered. */
export function howToEnable(toolsets: readonly ToolsetName[]): string {
  const list = ['default', ...toolsets].join(',');
  return `start the server with --toolsets ${list} (or set CINDERLIB_MCP_TOOLSETS=${list}, or global.toolsets in the config)`;
}

/** The error text for a call of a tool whose toolset is not enabled: as for an unknown tool, plus where it is. */
export function notOfferedText(name: string, toolset: ToolsetName, offered: readonly string[]): string {
  return `there is no tool "${name}" in this session: it is in the "${toolset}" toolset, which is not enabled; ${howToEnable([toolset])}. Available tools: ${offered.join(', ')}`;
}

/**
 * The instructions sent at `initialize`: what the server does, where to start, the toolsets
 * offered, the defined tools of the others and how to enable them, and read-only mode.
 */
export function instructionsFor(tools: readonly OfferedToolInfo[], offer: Offer, promptNames: readonly string[] = []): string {
  const offered = new Set(tools.filter((tool) => isOffered(tool, offer)).map((tool) => tool.name));
  const parts = [
    'Block storage through Cinder-compatible drivers (cinderlib). Sizes are GiB. Start with list_backends, then get_stats for the room a pool has.',
    `Toolsets offered: ${offer.toolsets.join(', ')}.`,
  ];
  const others = TOOLSET_NAMES.filter((name) => !offer.toolsets.includes(name))
    .map((name) => ({ name, tools: tools.filter((tool) => tool.toolset === name).map((tool) => tool.name) }))
    .filter((toolset) => toolset.tools.length > 0);
  if (others.length > 0) {
    parts.push(
      `Not offered: ${others.map((toolset) => `${toolset.name} (${TOOLSETS[toolset.name].description}: ${toolset.tools.join(', ')})`).join('; ')}; to offer them, ${howToEnable(others.map((toolset) => toolset.name))}.`,
    );
  }
  if (offer.readOnly) parts.push('Read-only: the tools that change anything are not offered (global read_only or CINDERLIB_MCP_READ_ONLY).');
  if (offered.has('create_volume') || offered.has('create_snapshot') || offered.has('connect_volume')) {
    parts.push("Pass request_id to make a create or connect safe to retry (a repeat within 24 h answers the first call's object).");
  }
  if (!offer.readOnly) {
    parts.push('Every tool that changes something takes dry_run: true: the same checks, nothing changed, the answer {dry_run: true, would: ...} says what the call would do.');
  }
  if (promptNames.length > 0) parts.push(`Prompts for common workflows: ${promptNames.join(', ')}.`);
  parts.push(
    'Every backend, volume, snapshot and connection is also a resource (cinderlib://volumes/{id}, ...) holding its cinderlib JSON. ' +
      'Errors start with a code (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, OUT_OF_CAPACITY, BACKEND_UNAVAILABLE, BACKEND_BUSY, READ_ONLY, IN_USE, UNSUPPORTED, INTERNAL).',
  );
  return parts.join(' ');
}
