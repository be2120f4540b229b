/**
 * The answers a client waits for at start-up (initialize, ping, tools/list), given before the
 * MCP SDK and zod have loaded: they take most of a cold start, and these answers need neither.
 * They come from dist/tool-listing.json, which `npm run build` renders with the SDK itself
 * (tool schemas, and the protocol versions the SDK speaks), so they cannot drift from what the
 * SDK server answers once it is up; a test compares the two.
 */

import { readFileSync } from 'node:fs';
import { SERVER_CAPABILITIES, SERVER_INFO, SERVER_INSTRUCTIONS } from './server-identity.js';

export interface ListedTool {
  name: string;
  title: string;
  description: string;
  inputSchema: { type: 'object'; [key: string]: unknown };
  outputSchema: { type: 'object'; [key: string]: unknown };
  annotations: { title: string; readOnlyHint: boolean; destructiveHint: boolean; idempotentHint: boolean; openWorldHint: boolean };
}

export interface PrebuiltListing {
  /** The SDK's SUPPORTED_PROTOCOL_VERSIONS, newest first, and its LATEST_PROTOCOL_VERSION. */
  protocolVersions: string[];
  latestProtocolVersion: string;
  tools: ListedTool[];
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

/** The tools offered: in read-only mode, only those that do not change anything. */
export function offeredTools(tools: readonly ListedTool[], readOnly: boolean): ListedTool[] {
  return tools.filter((tool) => !readOnly || tool.annotations.readOnlyHint);
}

export interface EarlyRequest {
  method: string;
  params?: Record<string, unknown>;
}

/**
 * The result for a request the server can answer before the SDK is up, or undefined. The SDK
 * server still sees the initialize request afterwards (to learn the client), its answer dropped.
 */
export function answerBeforeSdk(request: EarlyRequest, listing: PrebuiltListing, readOnly: boolean): Record<string, unknown> | undefined {
  switch (request.method) {
    case 'initialize': {
      const requested = request.params?.protocolVersion;
      // The SDK server's negotiation: the client's version when supported, else the latest.
      const protocolVersion = typeof requested === 'string' && listing.protocolVersions.includes(requested) ? requested : listing.latestProtocolVersion;
      return { protocolVersion, capabilities: SERVER_CAPABILITIES, serverInfo: SERVER_INFO, instructions: SERVER_INSTRUCTIONS };
    }
    case 'ping':
      return {};
    case 'tools/list':
      return { tools: offeredTools(listing.tools, readOnly) };
    default:
      return undefined;
  }
}
