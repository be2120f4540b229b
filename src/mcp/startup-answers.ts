/**
 * The answers a client waits for at start-up (initialize, ping, tools/list, prompts/list), given
 * before the MCP SDK and zod have loaded: they take most of a cold start, and these answers need
 * neither. They come from dist/tool-listing.json, which `npm run build` renders with the SDK
 * itself (tool schemas, and the protocol versions the SDK speaks), so they cannot drift from what
 * the SDK server answers once it is up; a test compares the two.
 */

import { readFileSync } from 'node:fs';
import type { ToolsetName } from '../config/toolsets.js';
import { instructionsFor, isOffered, type Offer, type OfferedToolInfo } from './offer.js';
import { offeredPrompts, type PromptContext } from './prompts.js';
import { SERVER_CAPABILITIES, SERVER_INFO } from './server-identity.js';

export interface ListedTool {
  name: string;
  title: string;
  description: string;
  inputSchema: { type: 'object'; [key: string]: unknown };
  outputSchema: { type: 'object'; [key: string]: unknown };
  annotations: { readOnlyHint: boolean; destructiveHint: boolean; idempotentHint: boolean; openWorldHint: boolean };
}

export interface PrebuiltListing {
  /** The SDK's SUPPORTED_PROTOCOL_VERSIONS, newest first, and its LATEST_PROTOCOL_VERSION. */
  protocolVersions: string[];
  latestProtocolVersion: string;
  /** Every tool defined, in the order clients list them. */
  tools: ListedTool[];
  /** Each tool's toolset, by name (not part of tools/list). */
  toolsets: Record<string, ToolsetName>;
}

export const LISTING_FILE = new URL('../../tool-listing.json', import.meta.url);

/** The prebuilt listing, or undefined when the build did not write one (then the SDK answers everything). */
export function readPrebuiltListing(file: URL = LISTING_FILE): PrebuiltListing | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as PrebuiltListing;
  } catch {
    return undefined;
  }
}

/** What the offer filter needs of each listed tool. */
export function toolInfos(listing: Pick<PrebuiltListing, 'tools' | 'toolsets'>): OfferedToolInfo[] {
  return listing.tools.map((tool) => ({ name: tool.name, toolset: listing.toolsets[tool.name], readOnly: tool.annotations.readOnlyHint }));
}

/** The tools offered: those of the enabled toolsets, and in read-only mode only those that do not change anything. */
export function offeredTools(listing: Pick<PrebuiltListing, 'tools' | 'toolsets'>, offer: Offer): ListedTool[] {
  const infos = toolInfos(listing);
  return listing.tools.filter((_tool, index) => isOffered(infos[index], offer));
}

/** The session's view for prompts: the tools offered and those that take dry_run. */
export function promptContext(listing: Pick<PrebuiltListing, 'tools' | 'toolsets'>, offer: Offer): PromptContext {
  const tools = offeredTools(listing, offer);
  return {
    offered: new Set(tools.map((tool) => tool.name)),
    dryRun: new Set(tools.filter((tool) => Object.hasOwn(tool.inputSchema.properties ?? {}, 'dry_run')).map((tool) => tool.name)),
  };
}

/** The instructions sent at initialize for this offer. */
export function sessionInstructions(listing: Pick<PrebuiltListing, 'tools' | 'toolsets'>, offer: Offer): string {
  return instructionsFor(
    toolInfos(listing),
    offer,
    offeredPrompts(promptContext(listing, offer)).map((prompt) => prompt.name),
  );
}

export interface EarlyRequest {
  method: string;
  params?: Record<string, unknown>;
}

/**
 * The result for a request the server can answer before the SDK is up, or undefined. The SDK
 * server still sees the initialize request afterwards (to learn the client), its answer dropped.
 */
export function answerBeforeSdk(request: EarlyRequest, listing: PrebuiltListing, offer: Offer): Record<string, unknown> | undefined {
  switch (request.method) {
    case 'initialize': {
      const requested = request.params?.protocolVersion;
      // The SDK server's negotiation: the client's version when supported, else the latest.
      const protocolVersion = typeof requested === 'string' && listing.protocolVersions.includes(requested) ? requested : listing.latestProtocolVersion;
      return { protocolVersion, capabilities: SERVER_CAPABILITIES, serverInfo: SERVER_INFO, instructions: sessionInstructions(listing, offer) };
    }
    case 'ping':
      return {};
    case 'tools/list':
      return { tools: offeredTools(listing, offer) };
    case 'prompts/list':
      return { prompts: offeredPrompts(promptContext(listing, offer)) };
    default:
      return undefined;
  }
}
