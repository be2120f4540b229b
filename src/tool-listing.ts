import { readFileSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import type { ToolDefinition } from './tool.js';

/**
 * The tools/list answer, rendered from the tool definitions. `npm run build` writes it to
 * dist/tool-listing.json so a cold server answers tools/list without building zod schemas
 * and JSON Schemas first; the definitions load on the first tool call. A test keeps the
 * file equal to a fresh rendering.
 */
export interface ListedTool {
  name: string;
  title: string;
  description: string;
  inputSchema: { type: 'object'; [key: string]: unknown };
  outputSchema: { type: 'object'; [key: string]: unknown };
  annotations: { title: string; readOnlyHint: boolean; destructiveHint: boolean; idempotentHint: boolean; openWorldHint: boolean };
}

export const LISTING_FILE = new URL('../tool-listing.json', import.meta.url);

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

/** The prebuilt listing, or a fresh rendering when the build did not write one. */
export async function loadToolListing(): Promise<ListedTool[]> {
  try {
    return JSON.parse(readFileSync(LISTING_FILE, 'utf8')) as ListedTool[];
  } catch {
    return renderToolListing((await import('../tools/index.js')).TOOLS);
  }
}

function jsonSchema(schema: z.ZodObject, io: 'input' | 'output'): { type: 'object'; [key: string]: unknown } {
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
    else if (key === 'type' && Array.isArray(value)) result.anyOf = value.map((type) => ({ type }));
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
  const { TOOLS } = await import('../tools/index.js');
  writeFileSync(LISTING_FILE, JSON.stringify(renderToolListing(TOOLS), null, 1) + '\n');
}
