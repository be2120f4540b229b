/**
 * A JSON fast path for MCP calls over Streamable HTTP (issue 20). The SDK's transport answers every
 * POST through Web Request/Response objects and an SSE stream (Node request -> hono ->
 * ReadableStream -> Node response), 0.3 to 0.5 ms a call on loopback (test/bench/http-call.ts).
 * This transport wraps it, one per session: a POST in an initialized session whose body is one
 * JSON-RPC request without a progress token is answered here, on Node's response, as
 * `application/json` (which the spec lets a server choose).
 * Everything else (initialize, notifications, responses, batches, calls that want progress, GET
 * streams, DELETE) goes to the SDK's transport unchanged.
 *
 * - Refusals come first and read as the SDK's (406 Accept, 415 Content-Type, 400/404 session, 400
 *   Mcp-Protocol-Version); a body the SDK's schema would refuse is left to the SDK.
 * - A server message related to a fast-path request that is not its answer (a log notification,
 *   say) has no stream of its own: it goes where the SDK sends unrelated messages, the GET stream.
 * - notifications/cancelled for a call under way ends its HTTP response at once, with an SSE stream
 *   holding no event (MCP sends no answer to a cancelled request); the cancellation still reaches
 *   the server, which aborts the call.
 * - A client that goes away before its answer: the answer is dropped (said on onerror) when it comes.
 * - The session closing with calls under way: each gets a JSON-RPC error, its outcome unknown.
 * - Origin, tokens, body size and session lookup stay http.ts's, before any of this.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamableHTTPServerTransport, type StreamableHTTPServerTransportOptions } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isJsonContentType } from '@modelcontextprotocol/sdk/shared/mediaType.js';
import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  ErrorCode,
  isJSONRPCErrorResponse,
  isJSONRPCResultResponse,
  JSONRPCRequestSchema,
  SUPPORTED_PROTOCOL_VERSIONS,
  type JSONRPCMessage,
  type MessageExtraInfo,
  type RequestId,
} from '@modelcontextprotocol/sdk/types.js';

/** A fast-path call not yet answered. */
interface Pending {
  res: ServerResponse;
  /** The client closed the connection: the answer, when it comes, is dropped. */
  gone: boolean;
}

export class FastJsonHttpTransport implements Transport {
  private readonly sdk: StreamableHTTPServerTransport;
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage, extra?: MessageExtraInfo) => void;
  private readonly pending = new Map<RequestId, Pending>();
  private closed = false;
  /** The SDK's own Host/Origin checks, when asked for, are not repeated here: every request then goes its way. */
  private readonly enabled: boolean;

  constructor(options: StreamableHTTPServerTransportOptions) {
    this.sdk = new StreamableHTTPServerTransport(options);
    this.enabled = !options.enableDnsRebindingProtection;
    this.sdk.onmessage = (message, extra) => {
      if ('method' in message && message.method === 'notifications/cancelled') this.cancelled(message.params?.requestId);
      this.onmessage?.(message, extra);
    };
    this.sdk.onerror = (error) => this.onerror?.(error);
    this.sdk.onclose = () => {
      this.closed = true;
      for (const [id, call] of this.pending) {
        if (!call.gone) {
          sendJson(call.res, 200, {
            jsonrpc: '2.0',
            id,
            error: {
              code: ErrorCode.ConnectionClosed,
              message:
                'the session ended (closed by the client, or the server is shutting down) before this call was answered: what it did is not known; look the object up before retrying',
            },
          });
        }
      }
      this.pending.clear();
      this.onclose?.();
    };
  }

  get sessionId(): string | undefined {
    return this.sdk.sessionId;
  }

  start(): Promise<void> {
    return this.sdk.start();
  }

  close(): Promise<void> {
    return this.sdk.close();
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    if (isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message)) {
      const call = message.id === undefined ? undefined : this.pending.get(message.id);
      if (call && message.id !== undefined) {
        this.pending.delete(message.id);
        if (call.gone || call.res.destroyed) {
          this.onerror?.(new Error(`the client went away before the answer to request ${JSON.stringify(message.id)}: the answer is dropped`));
          return;
        }
        return sendJson(call.res, 200, message, this.sdk.sessionId);
      }
    } else if (options?.relatedRequestId !== undefined && this.pending.has(options.relatedRequestId)) {
      // No stream belongs to a call answered in JSON: the message goes where unrelated ones go.
      return this.sdk.send(message, { ...options, relatedRequestId: undefined });
    }
    return this.sdk.send(message, options);
  }

  /**
   * Handles a request to /mcp in this session, `body` parsed already (POST). Resolves once the
   * request is handed over: a fast-path answer, like an SSE one, may come later (see `res`'s close).
   */
  async handleRequest(req: IncomingMessage, res: ServerResponse, body?: unknown): Promise<void> {
    const request = this.fastPathRequest(req, body);
    if (!request) return this.sdk.handleRequest(req, res, body);
    const refusal = this.refusal(req);
    if (refusal) return sendJson(res, refusal.status, { jsonrpc: '2.0', error: { code: refusal.code, message: refusal.message }, id: null });
    const call: Pending = { res, gone: false };
    this.pending.set(request.id, call);
    res.once('close', () => {
      if (!res.writableFinished) call.gone = true;
    });
    this.onmessage?.(request, { requestInfo: { headers: joinedHeaders(req), url: requestUrl(req) } });
  }

  /** The request `body` holds when it may take the fast path, else undefined. */
  private fastPathRequest(req: IncomingMessage, body: unknown) {
    if (!this.enabled || req.method !== 'POST' || this.closed || this.sdk.sessionId === undefined || typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
    const parsed = JSONRPCRequestSchema.safeParse(body);
    if (!parsed.success) return undefined; // the SDK words the refusal
    const request = parsed.data;
    if (request.method === 'initialize' || request.params?._meta?.progressToken !== undefined) return undefined;
    // JSON-RPC ids are unique among calls under way; a client reusing one is left to the SDK.
    if (this.pending.has(request.id)) return undefined;
    return request;
  }

  /** The SDK's own checks of a POST in a session, in its order and words. */
  private refusal(req: IncomingMessage): { status: number; code: number; message: string } | undefined {
    const accept = req.headers.accept;
    if (!accept?.includes('application/json') || !accept.includes('text/event-stream')) {
      return this.refused(406, -32000, 'Not Acceptable: Client must accept both application/json and text/event-stream');
    }
    // Node keeps the first of repeated Content-Type headers; the SDK sees them joined, and refuses.
    if (!isJsonContentType(req.headersDistinct['content-type']?.join(', '))) {
      return this.refused(415, -32000, 'Unsupported Media Type: Content-Type must be application/json');
    }
    const sessionId = req.headers['mcp-session-id'];
    if (!sessionId) return this.refused(400, -32000, 'Bad Request: Mcp-Session-Id header is required');
    if (sessionId !== this.sdk.sessionId) return this.refused(404, -32001, 'Session not found');
    const version = req.headers['mcp-protocol-version'];
    if (version !== undefined && !SUPPORTED_PROTOCOL_VERSIONS.includes(version as string)) {
      const message = `Bad Request: Unsupported protocol version: ${String(version)} (supported versions: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')})`;
      return this.refused(400, -32000, message);
    }
    return undefined;
  }

  private refused(status: number, code: number, message: string) {
    this.onerror?.(new Error(message));
    return { status, code, message };
  }

  /** A fast-path call cancelled by its client: its HTTP response ends now, with no answer in it. */
  private cancelled(requestId: unknown): void {
    if (typeof requestId !== 'string' && typeof requestId !== 'number') return;
    const call = this.pending.get(requestId);
    if (!call) return;
    this.pending.delete(requestId);
    if (call.gone || call.res.headersSent) return;
    call.res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', ...sessionHeader(this.sdk.sessionId) });
    call.res.end();
  }
}

function sessionHeader(sessionId: string | undefined): Record<string, string> {
  return sessionId === undefined ? {} : { 'mcp-session-id': sessionId };
}

function sendJson(res: ServerResponse, status: number, body: unknown, sessionId?: string): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...sessionHeader(sessionId) });
  res.end(text);
}

/** The request's headers as the SDK hands them on (names in lower case, repeated ones joined). */
function joinedHeaders(req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, values] of Object.entries(req.headersDistinct)) if (values) headers[name] = values.join(', ');
  return headers;
}

function requestUrl(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
  } catch {
    return new URL(req.url ?? '/', 'http://localhost');
  }
}
