import { writeFileSync } from 'node:fs';
import { LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { LISTING_FILE, readPrebuiltListing, type ListedTool, type PrebuiltListing } from './startup-answers.js';
import type { ToolDefinition } from '../../tools/define.js';
import { SHARED_SHAPES } from '../../tools/schemas.js';

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
    inputSchema: jsonSchema(tool.input, 'input', tool.name),
    outputSchema: jsonSchema(tool.output, 'output', tool.name),
    annotations: { ...tool.annotations },
  }));
}

/** What dist/tool-listing.json holds: the tools, and the protocol versions the SDK speaks. */
export function renderPrebuiltListing(tools: readonly ToolDefinition[]): PrebuiltListing {
  return {
    protocolVersions: [...SUPPORTED_PROTOCOL_VERSIONS],
    latestProtocolVersion: LATEST_PROTOCOL_VERSION,
    tools: renderToolListing(tools),
    toolsets: Object.fromEntries(tools.map((tool) => [tool.name, tool.toolset])),
  };
}

/** The prebuilt tool listing, or a fresh rendering when the build did not write one. */
export async function loadToolListing(): Promise<PrebuiltListing> {
  return readPrebuiltListing() ?? renderPrebuiltListing((await import('../../tools/index.js')).TOOLS);
}

function jsonSchema(schema: z.ZodType, io: 'input' | 'output', toolName: string): { type: 'object'; [key: string]: unknown } {
  const portableSchema = portable(z.toJSONSchema(schema, { target: 'draft-7', io, override: (context) => byReference(context, toolName) }));
  const leaner = withoutDryRunBranch(lean(portableSchema, io) as Record<string, unknown>);
  const { $schema: _ignored, ...rest } = io === 'input' ? withoutSelfExplaining(leaner) : leaner;
  return { ...rest, type: 'object' };
}

const DRY_RUN_REFERENCE = /^DryRun as in /;

/**
 * A mutating tool's answer is its result or, with dry_run, a DryRun: outside the DryRun's home
 * tool, `anyOf: [result, {DryRun reference}]` says no more than the result's open object with a
 * note (neither branch requires a field in a listing), so it is written that way, once per tool
 * fewer bytes in every conversation.
 */
function withoutDryRunBranch(schema: Record<string, unknown>): Record<string, unknown> {
  const branches = schema.anyOf as Array<Record<string, unknown>> | undefined;
  if (!Array.isArray(branches) || branches.length !== 2) return schema;
  const dryRun = branches.find((branch) => typeof branch.description === 'string' && DRY_RUN_REFERENCE.test(branch.description));
  const result = branches.find((branch) => branch !== dryRun);
  if (!dryRun || !result) return schema;
  const { anyOf: _branches, ...rest } = schema;
  // The instructions sent at initialize say what dry_run answers, once.
  return { ...rest, ...result };
}

/** Arguments whose name says what they are; dry_run and request_id are told once, in the instructions (src/mcp/offer.ts). */
export const SELF_EXPLAINING = new Set(['volume_id', 'snapshot_id', 'connection_id', 'dry_run', 'request_id']);

function withoutSelfExplaining(schema: Record<string, unknown>): Record<string, unknown> {
  const properties = schema.properties as Record<string, Record<string, unknown>> | undefined;
  if (!properties) return schema;
  const described = Object.entries(properties).map(([name, property]) => {
    if (!SELF_EXPLAINING.has(name)) return [name, property];
    const { description: _said, ...rest } = property;
    return [name, rest];
  });
  return { ...schema, properties: Object.fromEntries(described) };
}

/**
 * A shared shape (tools/schemas.ts SHARED_SHAPES) outside its home tool: named, pointing at the
 * tool that lists it in full, with its `keep` fields alone instead of every field again.
 */
function byReference({ zodSchema, jsonSchema }: { zodSchema: unknown; jsonSchema: Record<string, unknown> }, toolName: string): void {
  const shared = SHARED_SHAPES.get(zodSchema as z.ZodType);
  if (!shared || shared.home === toolName) return;
  const properties = (jsonSchema.properties ?? {}) as Record<string, Record<string, unknown>>;
  const required = Array.isArray(jsonSchema.required) ? jsonSchema.required.filter((name: string) => shared.keep.includes(name)) : [];
  const kept = Object.fromEntries(shared.keep.filter((name) => properties[name]).map((name) => [name, { type: properties[name].type }]));
  for (const key of Object.keys(jsonSchema)) delete jsonSchema[key];
  Object.assign(jsonSchema, {
    type: 'object',
    description: `${shared.name} as in ${shared.home}.`,
    ...(Object.keys(kept).length ? { properties: kept } : {}),
    ...(required.length ? { required } : {}),
  });
}

/** Keywords a listing leaves out: see lean(). */
const LEFT_OUT = new Set(['pattern', 'minLength', 'maxLength', 'maxItems']);

/**
 * A schema as an agent needs it, every byte of tools/list being in every conversation's context:
 * the arguments or fields, their types, enums, numeric bounds and (for inputs) which are required.
 * Left out: regexes and length bounds (`pattern`, `minLength`, `maxLength`, `maxItems`; ids keep
 * `format: uuid`), which the server checks itself, naming what it expects; `additionalProperties:
 * false` (the server refuses an unknown argument by name); and in outputs the `required` lists,
 * which repeat every field name of every object. Clients still validate answers against the shape
 * and types; tests check every answer against the full zod schema.
 */
function lean(node: unknown, io: 'input' | 'output'): unknown {
  if (Array.isArray(node)) return node.map((item) => lean(item, io));
  if (!node || typeof node !== 'object') return node;
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    if (key === 'properties' && value && typeof value === 'object') {
      result[key] = Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([name, property]) => [name, lean(property, io)]));
    } else if (LEFT_OUT.has(key) && typeof value !== 'object') continue;
    else if (key === 'additionalProperties' && (value === false || (io === 'output' && value === true))) continue;
    else if (key === 'required' && io === 'output' && Array.isArray(value)) continue;
    else result[key] = lean(value, io);
  }
  return result;
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
    else if ((key === 'maximum' || key === 'minimum') && Math.abs(value as number) === Number.MAX_SAFE_INTEGER)
      continue; // zod's int() bounds
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
