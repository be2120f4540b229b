import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { CallToolRequestSchema, ListToolsRequestSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { StorageError, describeError, isStorageError } from './errors.js';
import type { Logger } from './log.js';
import type { BackendRegistry } from './registry.js';
import type { SecretRegistry } from './secrets.js';
import type { ToolDefinition } from './tool.js';
import { loadToolListing, type ListedTool } from './tool-listing.js';
import { VERSION } from './version.js';

/**
 * The MCP server. It uses the SDK's low-level Server rather than McpServer so that it owns the
 * two answers McpServer would shape for it: argument errors ("INVALID_ARGUMENT: ...", naming the
 * value and what is accepted) and call-time refusal of hidden mutating tools ("READ_ONLY: ...").
 */
export interface ServerOptions {
  /** Resolves once the metadata store and backends are loaded; the server answers tools/list before that. */
  registry: Promise<BackendRegistry>;
  readOnly: boolean;
  secrets: SecretRegistry;
  log: Logger;
}

const INSTRUCTIONS =
  'Block storage through Cinder-compatible drivers. Start with list_backends; get_stats shows capacity in GiB; ' +
  'list_volumes pages through volumes created here; create_volume, extend_volume and delete_volume change them. ' +
  'Errors start with a code (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, OUT_OF_CAPACITY, BACKEND_UNAVAILABLE, BACKEND_BUSY, READ_ONLY, INTERNAL).';

/** This server never asks the client for input (elicitation), so no JSON Schema validator is built. */
const NO_ELICITATION_VALIDATOR = {
  getValidator: () => () => ({ valid: false as const, data: undefined, errorMessage: 'cinderlib-mcp does not use elicitation' }),
};

export function createMcpServer(options: ServerOptions): Server {
  const { readOnly, secrets, log } = options;
  const offered = (listing: ListedTool[]) => listing.filter((tool) => !readOnly || tool.annotations.readOnlyHint);
  const listingReady = loadToolListing().then(offered);
  let definitions: Promise<Map<string, ToolDefinition>> | undefined;
  const toolDefinitions = () =>
    (definitions ??= import('../tools/index.js').then(({ TOOLS }) => new Map(TOOLS.map((tool) => [tool.name, tool]))));

  const server = new Server(
    { name: 'cinderlib-mcp', title: 'cinderlib-mcp block storage', version: VERSION },
    {
      capabilities: { tools: { listChanged: false } },
      instructions: INSTRUCTIONS,
      jsonSchemaValidator: NO_ELICITATION_VALIDATOR,
    },
  );

  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: await listingReady }));

  server.setRequestHandler(CallToolRequestSchema, async (request): Promise<CallToolResult> => {
    const { name, arguments: rawArguments } = request.params;
    try {
      const tool = (await toolDefinitions()).get(name);
      if (!tool) {
        const available = (await listingReady).map((t) => t.name).join(', ');
        throw new StorageError('NOT_FOUND', `there is no tool "${name}"; available tools: ${available}`);
      }
      if (readOnly && !tool.annotations.readOnlyHint) {
        throw new StorageError(
          'READ_ONLY',
          `${name} is disabled: this server runs read-only (global read_only: true or CINDERLIB_MCP_READ_ONLY=true); an administrator can turn writes on in the config`,
        );
      }
      const registry = await options.registry;
      const args = parseArguments(tool, rawArguments ?? {}, registry, secrets) as Record<string, unknown>;
      const data = secrets.maskOptions(await tool.handler(args, registry));
      return { content: [{ type: 'text', text: JSON.stringify(data) }], structuredContent: data as Record<string, unknown> };
    } catch (error) {
      return errorResult(error, name, secrets, log);
    }
  });

  return server;
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
