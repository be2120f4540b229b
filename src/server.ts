import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { CallToolRequestSchema, ListToolsRequestSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { TOOLS } from '../tools/index.js';
import { StorageError, describeError, isStorageError } from './errors.js';
import type { Logger } from './log.js';
import type { BackendRegistry } from './registry.js';
import type { SecretRegistry } from './secrets.js';
import type { ToolDefinition } from './tool.js';
import { VERSION } from './version.js';

/**
 * The MCP server. It uses the SDK's low-level Server rather than McpServer so that it owns the
 * two answers McpServer would shape for it: argument errors ("INVALID_ARGUMENT: ...", naming the
 * value and what is accepted) and call-time refusal of hidden mutating tools ("READ_ONLY: ...").
 */
export interface ServerOptions {
  registry: BackendRegistry;
  readOnly: boolean;
  secrets: SecretRegistry;
  log: Logger;
}

const INSTRUCTIONS =
  'Block storage through Cinder-compatible drivers. Start with list_backends; get_stats shows capacity in GiB; ' +
  'list_volumes pages through volumes created here; create_volume, extend_volume and delete_volume change them. ' +
  'Errors start with a code (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, OUT_OF_CAPACITY, BACKEND_UNAVAILABLE, BACKEND_BUSY, READ_ONLY, INTERNAL).';

export function createMcpServer(options: ServerOptions): Server {
  const { registry, readOnly, secrets, log } = options;
  const offered = TOOLS.filter((tool) => !readOnly || tool.annotations.readOnlyHint);
  const byName = new Map(TOOLS.map((tool) => [tool.name, tool]));
  const listing = offered.map((tool) => ({
    name: tool.name,
    title: tool.title,
    description: tool.description,
    inputSchema: jsonSchema(tool.input, 'input'),
    outputSchema: jsonSchema(tool.output, 'output'),
    annotations: { title: tool.title, ...tool.annotations },
  }));

  const server = new Server(
    { name: 'cinderlib-mcp', title: 'cinderlib-mcp block storage', version: VERSION },
    { capabilities: { tools: { listChanged: false } }, instructions: INSTRUCTIONS },
  );

  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: listing }));

  server.setRequestHandler(CallToolRequestSchema, async (request): Promise<CallToolResult> => {
    const { name, arguments: rawArguments } = request.params;
    try {
      const tool = byName.get(name);
      if (!tool) {
        throw new StorageError('NOT_FOUND', `there is no tool "${name}"; available tools: ${offered.map((t) => t.name).join(', ')}`);
      }
      if (readOnly && !tool.annotations.readOnlyHint) {
        throw new StorageError(
          'READ_ONLY',
          `${name} is disabled: this server runs read-only (global read_only: true or CINDERLIB_MCP_READ_ONLY=true); an administrator can turn writes on in the config`,
        );
      }
      const args = parseArguments(tool, rawArguments ?? {}, registry, secrets) as Record<string, unknown>;
      const data = secrets.maskOptions(await tool.handler(args, registry));
      return { content: [{ type: 'text', text: JSON.stringify(data) }], structuredContent: data as Record<string, unknown> };
    } catch (error) {
      return errorResult(error, name, secrets, log);
    }
  });

  return server;
}

function jsonSchema(schema: z.ZodObject, io: 'input' | 'output'): { type: 'object'; [key: string]: unknown } {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { target: 'draft-7', io }) as Record<string, unknown>;
  return { ...rest, type: 'object' };
}

function parseArguments(tool: ToolDefinition, raw: unknown, registry: BackendRegistry, secrets: SecretRegistry): unknown {
  const result = tool.input.safeParse(raw);
  if (result.success) return result.data;
  const accepted = Object.keys(tool.input.shape);
  const problems = result.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return `unknown argument${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}; ${tool.name} accepts ${accepted.length ? accepted.join(', ') : 'no arguments'}`;
    }
    const field = issue.path.join('.');
    const given = valueAt(raw, issue.path);
    let text = given === undefined && issue.code === 'invalid_type' ? `${field} is required` : issue.message;
    if (given !== undefined) text += `, got ${secrets.redact(JSON.stringify(given) ?? String(given)).slice(0, 120)}`;
    if (issue.path[0] === 'backend') text += ` (known backends: ${registry.list().map((b) => b.id).join(', ')})`;
    return text;
  });
  throw new StorageError('INVALID_ARGUMENT', `${tool.name}: ${problems.join('; ')}`);
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let current: unknown = raw;
  for (const key of path) {
    if (!current || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

function errorResult(error: unknown, toolName: string, secrets: SecretRegistry, log: Logger): CallToolResult {
  let text: string;
  if (isStorageError(error)) {
    text = error.toClientText();
    if (error.code === 'INTERNAL') log.error(`${toolName}: ${error.message}`);
  } else {
    // Unexpected: the details go to stderr (redacted), the client gets a short, stack-free line.
    log.error(`${toolName} failed unexpectedly: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    text = `INTERNAL: ${toolName} failed unexpectedly (${describeError(error).split('\n')[0]}); the server logged details on stderr and keeps serving`;
  }
  return { content: [{ type: 'text', text: secrets.redact(text) }], isError: true };
}
