/**
 * The MCP server. It uses the SDK's low-level Server rather than McpServer so that it owns the
 * two answers McpServer would shape for it: argument errors ("INVALID_ARGUMENT: ...", naming the
 * value and what is accepted) and call-time refusal of hidden mutating tools ("READ_ONLY: ...").
 */

import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  CallToolRequestParamsSchema,
  ErrorCode,
  ListResourceTemplatesRequestSchema,
  ListPromptsRequestSchema,
  ListToolsRequestSchema,
  McpError,
  type CallToolResult,
  type JSONRPCRequest,
  type ServerNotification,
  type ServerRequest,
  type ServerResult,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { StorageError, describeError, isStorageError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { runWithProgress, type OutcomeAudit, type ProgressReporter } from '../core/progress.js';
import type { BackendRegistry } from '../core/registry.js';
import type { SecretRegistry } from '../base/secrets.js';
import type { ToolDefinition } from '../../tools/define.js';
import { TOOLSETS, TOOLSET_NAMES, type ToolsetName } from '../config/toolsets.js';
import { SERVER_CAPABILITIES, SERVER_INFO } from './server-identity.js';
import { offeredTools, promptContext, readPrebuiltListing, sessionInstructions, type PrebuiltListing } from './startup-answers.js';
import { notOfferedText, type Offer } from './offer.js';
import { PromptError, getPrompt, offeredPrompts } from './prompts.js';
import { RESOURCE_TEMPLATES, ResourceCatalog, ResourceNotFound } from './resources.js';
import { scopeAnswer, scopeArguments, type BackendScope } from './backend-scope.js';
import { metrics } from '../base/metrics.js';

export interface ServerOptions {
  /** Resolves once the metadata store and backends are loaded; the server answers tools/list before that. */
  registry: Promise<BackendRegistry>;
  readOnly: boolean;
  /** The toolsets offered (GlobalOptions.toolsets); read-only mode filters them further. */
  toolsets: readonly ToolsetName[];
  /** Why this session is read-only when it is not the server's own setting (a read-only HTTP token), for the READ_ONLY message. */
  readOnlyReason?: string;
  secrets: SecretRegistry;
  log: Logger;
  /** The prebuilt listing (dist/tool-listing.json) when the caller has read it already. */
  listing?: PrebuiltListing;
  /** Who is calling, for the audit log (the HTTP token's name); default: the client's name from initialize. */
  clientName?: () => string | undefined;
  /** A token limited to some backends (http_tokens[].backends): calls on others are NOT_FOUND. */
  backendScope?: BackendScope;
}

/** This server never asks the client for input (elicitation), so no JSON Schema validator is built. */
const NO_ELICITATION_VALIDATOR = {
  getValidator: () => () => ({ valid: false as const, data: undefined, errorMessage: 'cinderlib-mcp does not use elicitation' }),
};

export function createMcpServer(options: ServerOptions): Server {
  const { readOnly, secrets, log } = options;
  const offer: Offer = { toolsets: options.toolsets, readOnly };
  // The listing `npm run build` wrote (read once, a few ms); without it (the sources run directly) the definitions render it.
  const prebuilt = options.listing ?? readPrebuiltListing();
  let rendered: Promise<PrebuiltListing> | undefined;
  const fullListing = async () => prebuilt ?? (await (rendered ??= import('./tool-listing.js').then(({ loadToolListing }) => loadToolListing())));
  const listingReady = (async () => offeredTools(await fullListing(), offer))();
  let definitions: Promise<Map<string, ToolDefinition>> | undefined;
  const toolDefinitions = () => (definitions ??= import('../../tools/index.js').then(({ TOOLS }) => new Map(TOOLS.map((tool) => [tool.name, tool]))));

  const server = new Server(SERVER_INFO, {
    capabilities: SERVER_CAPABILITIES,
    // Without a prebuilt listing, the contract's toolset table stands in for the defined tools.
    instructions: sessionInstructions(prebuilt ?? tableListing(), offer),
    jsonSchemaValidator: NO_ELICITATION_VALIDATOR,
  });

  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: await listingReady }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({ resourceTemplates: RESOURCE_TEMPLATES }));
  server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: offeredPrompts(promptContext(await fullListing(), offer)) }));

  // tools/call, resources/list and resources/read take their params as sent and check them here:
  // through Server.setRequestHandler the SDK's own schemas would refuse a non-object `arguments` or
  // a missing uri with a multi-line zod dump before these handlers could word it in one line. The
  // SDK hands every method without a handler of its own to fallbackRequestHandler, untouched.
  const lenientHandlers = new Map<string, LenientHandler>([
    ['tools/call', (request, extra) => callTool(request, extra)],
    ['prompts/get', (request) => promptAnswer(request)],
    ...resourceHandlers(options),
  ]);
  server.fallbackRequestHandler = async (request, extra) => {
    const handler = lenientHandlers.get(request.method);
    if (!handler) throw new ProtocolError(ErrorCode.MethodNotFound, 'Method not found'); // the SDK's own answer
    return handler(request, extra);
  };

  /** prompts/get, its params checked here so that a wrong argument is one line naming what is accepted. */
  async function promptAnswer(frame: JSONRPCRequest): Promise<ServerResult> {
    const params = isPlainObject(frame.params) ? frame.params : {};
    try {
      return getPrompt(params.name, params.arguments, promptContext(await fullListing(), offer));
    } catch (error) {
      if (error instanceof PromptError) throw new ProtocolError(ErrorCode.InvalidParams, secrets.redact(error.message));
      throw error;
    }
  }

  async function callTool(frame: JSONRPCRequest, extra: RequestHandlerExtra<ServerRequest, ServerNotification>): Promise<CallToolResult> {
    const parsed = LenientCallToolParamsSchema.safeParse(frame.params);
    if (!parsed.success) throw new ProtocolError(ErrorCode.InvalidParams, 'tools/call: params._meta must be an object whose progressToken is a string or an integer');
    const request = { params: parsed.data };
    const { name, arguments: rawArguments } = request.params;
    if (typeof name !== 'string') {
      throw new ProtocolError(ErrorCode.InvalidParams, 'tools/call needs params.name, the name of a tool as a string; tools/list lists them');
    }
    const progressToken = request.params._meta?.progressToken;
    // Progress goes only to clients that asked for it, and is masked like every other way out.
    const progress: ProgressReporter | undefined =
      progressToken === undefined
        ? undefined
        : ({ progress, total, message }) => extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress, total, message: secrets.redact(message) } });
    let audited: ToolDefinition | undefined;
    let withOutcome: OutcomeAudit | undefined;
    const client = () => options.clientName?.() ?? server.getClientVersion()?.name ?? 'unknown client';
    const started = performance.now();
    let known = false;
    const result = await (async (): Promise<CallToolResult> => {
      try {
        const tool = (await toolDefinitions()).get(name);
        if (!tool) {
          const available = (await listingReady).map((t) => t.name).join(', ');
          throw new StorageError('NOT_FOUND', `there is no tool "${name}"; available tools: ${available}`);
        }
        if (!offer.toolsets.includes(tool.toolset)) {
          throw new StorageError(
            'NOT_FOUND',
            notOfferedText(
              name,
              tool.toolset,
              (await listingReady).map((t) => t.name),
            ),
          );
        }
        known = true;
        if (!tool.annotations.readOnlyHint) audited = tool;
        if (readOnly && !tool.annotations.readOnlyHint) {
          throw new StorageError(
            'READ_ONLY',
            `${name} is disabled: ${options.readOnlyReason ?? 'this server runs read-only (global read_only: true or CINDERLIB_MCP_READ_ONLY=true); an administrator can turn writes on in the config'}`,
          );
        }
        const registry = await options.registry;
        let args = parseArguments(tool, rawArguments, registry, secrets);
        const scope = options.backendScope;
        if (scope) args = await scopeArguments(scope, name, args, registry);
        // A tool whose one outcome write can carry its audit record writes both in one transaction.
        if (tool.auditedWithOutcome && !(isPlainObject(rawArguments) && rawArguments.dry_run === true)) {
          withOutcome = { record: registry.audit.draft({ client: client(), tool: name, arguments: rawArguments, outcome: 'ok' }), written: false };
        }
        let data = secrets.maskOptions(await runWithProgress(progress, () => tool.handler(args, registry), extra.signal, withOutcome));
        if (scope) data = scopeAnswer(scope, name, data) as typeof data;
        return { content: [{ type: 'text', text: JSON.stringify(data) }], structuredContent: data };
      } catch (error) {
        return errorResult(error, name, secrets, log);
      }
    })();
    countCall(name, known, result, started);
    // Every call of a mutating tool leaves an audit record, refused or not.
    if (audited) {
      const registry = await options.registry.catch(() => undefined);
      if (withOutcome?.written && !result.isError) {
        await registry?.audit.append(withOutcome.record, true);
        return result;
      }
      await registry?.audit.record({
        client: client(),
        tool: audited.name,
        arguments: rawArguments,
        outcome: result.isError ? 'error' : 'ok',
        ...(result.isError ? { error: firstText(result) } : {}),
        ...(isPlainObject(rawArguments) && rawArguments.dry_run === true ? { dryRun: true } : {}),
      });
    }
    return result;
  }

  return server;
}

/** Tool calls by tool and outcome ("ok", or the error's code), and their latency, for /metrics. */
function countCall(tool: string, known: boolean, result: CallToolResult, started: number): void {
  // A name no tool has is counted as one label value: clients must not grow the series without bound.
  const label = known ? tool : 'unknown';
  const outcome = result.isError ? (/^([A-Z_]+): /.exec(firstText(result) ?? '')?.[1] ?? 'INTERNAL') : 'ok';
  metrics.inc('cinderlib_mcp_tool_calls_total', 'Tool calls answered, by tool and outcome (ok, or the error code).', { tool: label, outcome });
  metrics.observe('cinderlib_mcp_tool_call_duration_seconds', 'Time from a tool call to its answer, by tool.', { tool: label }, (performance.now() - started) / 1000);
}

/** The contract's toolset table as a listing without schemas: what the instructions need when no listing was built. */
function tableListing(): Pick<PrebuiltListing, 'tools' | 'toolsets'> {
  const entries = TOOLSET_NAMES.flatMap((toolset) => TOOLSETS[toolset].tools.map((name) => ({ name, toolset })));
  return {
    tools: entries.map(({ name }) => ({
      name,
      title: name,
      description: '',
      inputSchema: { type: 'object' as const },
      outputSchema: { type: 'object' as const },
      annotations: { readOnlyHint: /^(list|get|pool|validate)_/.test(name), destructiveHint: false, idempotentHint: false, openWorldHint: false },
    })),
    toolsets: Object.fromEntries(entries.map(({ name, toolset }) => [name, toolset])),
  };
}

/** A request handler that takes the frame as the client sent it. */
type LenientHandler = (request: JSONRPCRequest, extra: RequestHandlerExtra<ServerRequest, ServerNotification>) => Promise<ServerResult>;

/** One catalog per registry, made on first use (every session over HTTP shares its server's registry). */
const catalogs = new WeakMap<BackendRegistry, ResourceCatalog>();
function resourcesOf(registry: BackendRegistry): ResourceCatalog {
  let catalog = catalogs.get(registry);
  if (!catalog) catalogs.set(registry, (catalog = new ResourceCatalog(registry.serializationSource())));
  return catalog;
}

/** MCP's "resource not found" (the spec's -32002). */
const RESOURCE_NOT_FOUND = -32002;

/**
 * A JSON-RPC error as it goes on the wire. The SDK's McpError writes "MCP error <code>: " into its
 * own message, and the client's McpError adds it again ("MCP error -32002: MCP error -32002: ..."):
 * the SDK sends any thrown error's `code` and `message` as they are, so this one carries only ours.
 */
class ProtocolError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** resources/list and resources/read over the registry's catalog (src/resources.ts), by method. */
function resourceHandlers(options: ServerOptions): [string, LenientHandler][] {
  const { secrets } = options;
  // Store trouble and bad cursors are JSON-RPC errors here (resources have no isError result), worded as tool errors are.
  const asMcpError = (error: unknown): ProtocolError => {
    if (error instanceof ProtocolError) return error;
    if (error instanceof McpError) return new ProtocolError(error.code, error.message.replace(/^MCP error -?\d+: /, ''));
    if (error instanceof ResourceNotFound) return new ProtocolError(RESOURCE_NOT_FOUND, secrets.redact(error.message));
    if (isStorageError(error)) return new ProtocolError(error.code === 'INVALID_ARGUMENT' ? ErrorCode.InvalidParams : ErrorCode.InternalError, secrets.redact(error.toClientText()));
    options.log.error(`resources: ${describeError(error)}`);
    return new ProtocolError(ErrorCode.InternalError, `INTERNAL: ${secrets.redact(describeError(error).split('\n')[0])}`);
  };
  // Malformed params (missing, not an object) are taken as {}, for the handler to word what is missing.
  const handle =
    (handler: (params: Record<string, unknown>) => Promise<ServerResult>): LenientHandler =>
    async (request) => {
      // Resources serialize every backend's objects: a token limited to some backends reads them through tools.
      if (options.backendScope) {
        throw new ProtocolError(
          ErrorCode.InvalidRequest,
          `INVALID_ARGUMENT: the token "${options.backendScope.holder}" is limited to backends ${options.backendScope.backends.join(', ')} and resources span every backend; use the tools (get_volume, list_volumes, ...)`,
        );
      }
      try {
        return await handler(isPlainObject(request.params) ? request.params : {});
      } catch (error) {
        throw asMcpError(error);
      }
    };
  return [
    [
      'resources/list',
      handle(async ({ cursor }) => {
        if (cursor !== undefined && typeof cursor !== 'string')
          throw new ProtocolError(ErrorCode.InvalidParams, 'resources/list: cursor must be the nextCursor string of a previous answer');
        return resourcesOf(await options.registry).list(cursor);
      }),
    ],
    [
      'resources/read',
      handle(async ({ uri }) => {
        if (typeof uri !== 'string') throw new ProtocolError(ErrorCode.InvalidParams, 'resources/read needs params.uri, a cinderlib:// URI as a string; resources/list lists them');
        const text = await resourcesOf(await options.registry).read(uri);
        return { contents: [{ uri, mimeType: 'application/json', text }] };
      }),
    ],
  ];
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** tools/call params with `name` and `arguments` left for the handler to check; missing or malformed params are {}. */
const LenientCallToolParamsSchema = z.preprocess(
  (params) => (isPlainObject(params) ? params : {}),
  CallToolRequestParamsSchema.extend({ name: z.unknown().optional(), arguments: z.unknown().optional() }),
);

function parseArguments(tool: ToolDefinition, raw: unknown, registry: BackendRegistry, secrets: SecretRegistry): z.output<ToolDefinition['input']> {
  if (raw === undefined) raw = {};
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    const accepted = Object.keys(tool.input.shape);
    throw new StorageError(
      'INVALID_ARGUMENT',
      `${tool.name}: arguments must be an object of named arguments (${accepted.length ? accepted.join(', ') : 'none'}), got ${describeKind(raw)} ${secrets.redact(preview(raw))}`,
    );
  }
  const result = tool.input.safeParse(raw);
  if (result.success) return inCallerOrder(result.data, raw) as z.output<ToolDefinition['input']>;
  const accepted = Object.keys(tool.input.shape);
  const problems = result.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return `unknown argument${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}; ${tool.name} accepts ${accepted.length ? accepted.join(', ') : 'no arguments'}`;
    }
    const field = issue.path.join('.');
    const given = valueAt(raw, issue.path);
    let text = given === undefined && issue.code === 'invalid_type' ? `${field} is required` : issue.message;
    if (given !== undefined) text += `, got ${secrets.redact(preview(given))}`;
    if (issue.path[0] === 'backend')
      text += ` (known backends: ${registry
        .list()
        .map((b) => b.id)
        .join(', ')})`;
    return text;
  });
  throw new StorageError('INVALID_ARGUMENT', `${tool.name}: ${problems.join('; ')}`);
}

/**
 * The parsed value with each object's keys in the order the caller wrote them (zod puts a schema's
 * keys first): a connector is kept and dumped as the host gave it, as cinderlib keeps it.
 */
function inCallerOrder(parsed: unknown, raw: unknown): unknown {
  if (Array.isArray(parsed) && Array.isArray(raw)) return parsed.map((item, index) => inCallerOrder(item, raw[index]));
  if (!isPlainObject(parsed) || !isPlainObject(raw)) return parsed;
  const ordered: Record<string, unknown> = {};
  for (const key of Object.keys(raw)) if (Object.hasOwn(parsed, key)) ordered[key] = inCallerOrder(parsed[key], raw[key]);
  for (const [key, value] of Object.entries(parsed)) if (!Object.hasOwn(ordered, key)) ordered[key] = value;
  return ordered;
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let current: unknown = raw;
  for (const key of path) {
    if (!current || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

const PREVIEW_DEPTH = 2;
const PREVIEW_ITEMS = 4;
const PREVIEW_CHARS = 120;

/**
 * A client's value as JSON-like text for an error message, at most PREVIEW_CHARS long. It looks
 * PREVIEW_DEPTH levels deep and at PREVIEW_ITEMS members per level only, so a value nested
 * thousands of levels deep or megabytes wide costs nothing (JSON.stringify of it overflows the stack).
 */
function preview(value: unknown, depth = 0): string {
  const text = previewPart(value, depth);
  return text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS - 3)}...` : text;
}

function previewPart(value: unknown, depth: number): string {
  if (typeof value === 'string') return JSON.stringify(value.length > PREVIEW_CHARS ? `${value.slice(0, PREVIEW_CHARS)}...` : value);
  if (typeof value === 'bigint') return `${value}`;
  if (value === null || typeof value !== 'object') return String(value);
  const isArray = Array.isArray(value);
  if (depth >= PREVIEW_DEPTH) return isArray ? '[...]' : '{...}';
  const parts: string[] = [];
  let more = false;
  if (isArray) {
    for (const item of value.slice(0, PREVIEW_ITEMS)) parts.push(previewPart(item, depth + 1));
    more = value.length > PREVIEW_ITEMS;
  } else {
    for (const key in value) {
      if (parts.length === PREVIEW_ITEMS) {
        more = true;
        break;
      }
      parts.push(`${JSON.stringify(key)}:${previewPart((value as Record<string, unknown>)[key], depth + 1)}`);
    }
  }
  if (more) parts.push('...');
  return isArray ? `[${parts.join(',')}]` : `{${parts.join(',')}}`;
}

function describeKind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** The text of a result's first content item (an error result's message). */
function firstText(result: CallToolResult): string {
  const first = result.content[0];
  return first?.type === 'text' ? first.text : '';
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
