import { writeFileSync } from 'node:fs';
import { LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { LISTING_FILE, readPrebuiltListing, type ListedTool, type PrebuiltListing } from './startup-answers.js';
import type { ToolDefinition } from '../../tools/define.js';

/**
 * The tools/list answer, rendered from the tool definitions. `npm run build` writes it to
 * dist/tool-listing.json so a cold server answers tools/list without building zod schemas
 * and JSON Schemas first; the definitions load on the first tool call. A test keeps the
 * file equal to a fresh rendering.
 */
export function renderToolListing(tools: readonly ToolDefinition[]): ListedTool[] {
  return tools.map((tool) => ({
    name: tool.name,
    title: tool.title,
    description: tool.description,
    inputSchema: jsonSchema(tool.input, 'input'),
    outputSchema: jsonSchema(tool.output, 'output'),
    annotations: { title: tool.title, ...tool.annotations },
  }));
}

/** What dist/tool-listing.json holds: the tools, and the protocol versions the SDK speaks. */
export function renderPrebuiltListing(tools: readonly ToolDefinition[]): PrebuiltListing {
  return { protocolVersions: [...SUPPORTED_PROTOCOL_VERSIONS], latestProtocolVersion: LATEST_PROTOCOL_VERSION, tools: renderToolListing(tools) };
}

/** The prebuilt tool listing, or a fresh rendering when the build did not write one. */
export async function loadToolListing(): Promise<ListedTool[]> {
  return readPrebuiltListing()?.tools ?? renderToolListing((await import('../../tools/index.js')).TOOLS);
}

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): { type: 'object'; [key: string]: unknown } {
  const { $schema: _ignored, ...rest } = portable(z.toJSONSchema(schema, { target: 'draft-7', io })) as Record<string, unknown>;
  return { ...rest, type: 'object' };
}

/**
 * What zod writes, in the forms every client reads (the MCP Inspector's --strict portability
 * checks): an open object says `additionalProperties: true` rather than an empty schema that
 * constrains nothing; a union of plain types is `anyOf` single-type branches, not a `type` array
 * (clients that map schemas onto one-type dialects, such as Gemini's, reject those); and a
 * record's `propertyNames: {type: string}` (JSON keys always are strings) goes.
 */
function portable(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(portable);
  if (!node || typeof node !== 'object') return node;
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === 'additionalProperties' && isEmptySchema(value)) result[key] = true;
    else if (key === 'propertyNames' && isStringSchema(value)) continue;
    else if (key === 'type' && Array.isArray(value)) result.anyOf = value.map((type: unknown) => ({ type }));
    else result[key] = portable(value);
  }
  return result;
}

function isEmptySchema(value: unknown): boolean {
  return !!value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0;
}

function isStringSchema(value: unknown): boolean {
  return !!value && typeof value === 'object' && Object.keys(value).length === 1 && (value as { type?: unknown }).type === 'string';
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const { TOOLS } = await import('../../tools/index.js');
  writeFileSync(LISTING_FILE, JSON.stringify(renderPrebuiltListing(TOOLS), null, 1) + '\n');
}
