/**
 * MCP over stdio with bounded memory, in place of the SDK's StdioServerTransport, which keeps
 * reading however far the client is behind, closes for good on one frame over 10 MiB, and gives
 * no way to let calls finish before exit.
 *
 * - Input: newline-delimited frames, each at most `maxFrameBytes`; a longer one is answered with an
 *   error and skipped, a line that is not JSON or not JSON-RPC is answered with an error, and the
 *   server keeps serving.
 * - Backpressure: while `maxInFlight` requests are unanswered or stdout has more queued than the
 *   pipe takes, further requests wait (at most LOOKAHEAD_BYTES of them, then stdin is paused), so
 *   a client that writes without reading holds memory flat. Notifications are not held back: a
 *   cancellation must get through to free the place of the request it cancels.
 * - Shutdown: finish() stops reading, waits for the calls taken to be answered and for stdout to
 *   flush, bounded by a grace period.
 */

import { describeError } from '../../base/errors.js';
import type { Readable, Writable } from 'node:stream';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage, JSONRPCRequest, RequestId } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '../../base/log.js';
import { recoverRequestId } from './frame-id.js';
import { LineSplitter, type Frame } from './line-splitter.js';

export const DEFAULT_MAX_FRAME_BYTES = 10 * 1024 * 1024;
export const DEFAULT_MAX_IN_FLIGHT = 64;
/**
 * Answer bytes that calls in flight may add up to, judged by the average answer so far: with
 * small answers `maxInFlight` calls run at once, with 1 MB list_volumes pages about eight do.
 */
export const DEFAULT_ANSWER_BUDGET_BYTES = 8 * 1024 * 1024;

/**
 * JSON-RPC error codes (the SDK's ErrorCode values). Written here rather than imported so that this
 * module loads without the SDK's schemas: it reads and answers before those have loaded.
 */
const ErrorCode = { ConnectionClosed: -32000, ParseError: -32700, InvalidRequest: -32600, InvalidParams: -32602 } as const;

/**
 * Answers a request before the MCP server is connected (start-up answers from prebuilt data), or
 * returns undefined to leave it to the server. `alsoDeliver` hands the request on too, its
 * answer from the server dropped (initialize, so the server still learns who the client is).
 */
export type EarlyResponder = (request: JSONRPCRequest) => { result: Record<string, unknown>; alsoDeliver: boolean } | undefined;

export interface BoundedStdioOptions {
  log: Logger;
  /** Used while no server is connected; see listen(). */
  earlyResponder?: EarlyResponder;
  /** Called when a request arrives that only the server can answer, before it is connected. */
  onserverwanted?: () => void;
  input?: Readable;
  output?: Writable;
  maxFrameBytes?: number;
  maxInFlight?: number;
  answerBudgetBytes?: number;
}

export interface FinishOutcome {
  /** Requests still running when the grace period ended. */
  unanswered: RequestId[];
  /** Bytes of answers the client had not taken off the pipe. */
  unflushedBytes: number;
}

/** Calls let in at once before any answer has been measured. */
const FIRST_CALL_LIMIT = 8;
/**
 * Requests read ahead while the server is at its limits. Reading ahead lets notifications behind
 * them through: the SDK never answers a cancelled request, so only its notifications/cancelled
 * frees its place. A client that cancels every call in flight and then buries the cancellations
 * under more than this many bytes of new requests stalls its own session.
 */
const LOOKAHEAD_BYTES = 256 * 1024;
/** How often finish() looks at in-flight calls and the output buffer: only while shutting down. */
const FINISH_POLL_MS = 10;
/** Answers to calls abandoned at the deadline get this much more time to reach the client. */
const ABANDON_FLUSH_MS = 1000;

export class BoundedStdioTransport implements Transport {
  onmessage?: Transport['onmessage'];
  onclose?: () => void;
  onerror?: (error: Error) => void;
  /** The client went away: stdin ended or stdout broke. Called once. */
  onclientgone?: (why: string) => void;

  private readonly log: Logger;
  private readonly input: Readable;
  private readonly output: Writable;
  private readonly maxInFlight: number;
  private readonly answerBudgetBytes: number;
  /** Moving average of answer sizes, for the number of calls let in at once. */
  private averageAnswerBytes = 0;
  private readonly splitter: LineSplitter;

  /** Requests handed to the server and not answered yet, by id (a count, should a client reuse one). */
  private readonly inFlight = new Map<RequestId, number>();
  private inFlightCount = 0;
  /** stdout.write returned false: no new calls until 'drain'. */
  private outputCongested = false;
  private outputGone = false;
  private readingStopped = false;
  private closed = false;
  private clientGoneReported = false;
  /** Requests read while at the limits, in order, and their size in bytes. */
  private readonly waiting: JSONRPCRequest[] = [];
  private waitingBytes = 0;
  private pumping = false;
  private pumpAgain = false;
  private droppedNotifications = 0;
  private listening = false;
  /** True once the server has connected (start() called); before, messages wait in `forServer`. */
  private connected = false;
  private readonly forServer: JSONRPCMessage[] = [];
  /** Requests answered early whose answer from the server must not be sent again. */
  private readonly answeredEarly = new Set<RequestId>();
  private readonly earlyResponder?: EarlyResponder;
  private readonly onserverwanted?: () => void;

  constructor(options: BoundedStdioOptions) {
    this.log = options.log;
    this.input = options.input ?? process.stdin;
    this.output = options.output ?? process.stdout;
    this.maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    this.answerBudgetBytes = options.answerBudgetBytes ?? DEFAULT_ANSWER_BUDGET_BYTES;
    this.splitter = new LineSplitter(options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
    this.earlyResponder = options.earlyResponder;
    this.onserverwanted = options.onserverwanted;
  }

  get callsInFlight(): number {
    return this.inFlightCount;
  }

  /**
   * Starts reading before a server is connected: the early responder answers what it can, and
   * everything else waits for start().
   */
  listen(): void {
    if (this.listening) return;
    this.listening = true;
    this.input.on('data', this.onData);
    this.input.on('end', this.onInputEnd);
    this.input.on('error', this.onInputError);
    this.output.on('drain', this.onDrain);
    this.output.on('error', this.onOutputError);
  }

  /** Called by the SDK when the server connects: what waited for it is delivered, in order. */
  async start(): Promise<void> {
    this.listen();
    this.connected = true;
    for (const message of this.forServer.splice(0)) this.onmessage?.(message);
  }

  async send(message: JSONRPCMessage): Promise<void> {
    const answeredId = 'id' in message && ('result' in message || 'error' in message) ? message.id : undefined;
    if (answeredId !== undefined && this.answeredEarly.delete(answeredId)) {
      this.release(answeredId);
      return;
    }
    const isNotification = 'method' in message && !('id' in message);
    if (isNotification && this.outputCongested) {
      // Progress and the like are advisory; queueing them for a client that is not reading is how memory grows.
      if (this.droppedNotifications++ === 0) this.log.debug('the client is not reading: notifications are dropped until it catches up');
    } else {
      const frame = JSON.stringify(message) + '\n';
      this.write(frame);
      if (answeredId !== undefined) {
        this.averageAnswerBytes = this.averageAnswerBytes === 0 ? frame.length : this.averageAnswerBytes * 0.8 + frame.length * 0.2;
      }
    }
    if (answeredId !== undefined) this.release(answeredId);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.input.off('data', this.onData);
    this.input.off('end', this.onInputEnd);
    this.input.off('error', this.onInputError);
    this.input.pause();
    this.output.off('drain', this.onDrain);
    this.onclose?.();
  }

  /**
   * Stops taking calls: requests not started yet are refused with an error. Resolves once every
   * call in flight is answered and stdout has flushed, or when `graceMs` is over; calls still
   * running then get an error answer.
   */
  async finish(graceMs: number): Promise<FinishOutcome> {
    this.readingStopped = true;
    this.input.pause();
    for (const request of this.waiting.splice(0)) this.refuseForShutdown(request);
    this.waitingBytes = 0;
    this.pump();
    const deadline = Date.now() + graceMs;
    await this.waitUntil(() => this.inFlightCount === 0 && this.waiting.length === 0, deadline);
    const unanswered = [...this.inFlight.keys()];
    for (const id of unanswered) {
      this.replyWithError(
        id,
        ErrorCode.ConnectionClosed,
        `BACKEND_UNAVAILABLE: the server shut down before this call finished (grace period of ${graceMs} ms over); ` +
          'a volume it was creating or changing shows status error after the next start and can be deleted',
      );
    }
    await this.waitUntil(() => this.outputGone || this.output.writableLength === 0, Math.max(deadline, Date.now() + (unanswered.length ? ABANDON_FLUSH_MS : 0)));
    return { unanswered, unflushedBytes: this.outputGone ? 0 : this.output.writableLength };
  }

  private readonly onData = (chunk: Buffer | string) => {
    if (this.readingStopped) return;
    this.splitter.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    this.pump();
  };

  private readonly onInputEnd = () => {
    this.splitter.end();
    this.pump();
    this.reportClientGone('stdin closed');
  };

  private readonly onInputError = (error: Error) => {
    this.log.warn(`stdin failed: ${error.message}`);
    this.onerror?.(error);
    this.reportClientGone(`stdin failed (${error.message})`);
  };

  private readonly onDrain = () => {
    this.outputCongested = false;
    this.pump();
  };

  private readonly onOutputError = (error: NodeJS.ErrnoException) => {
    if (this.outputGone) return;
    // EPIPE and the like: the client stopped reading for good. Calls in flight still finish so
    // that the volumes they touch end in a known state; their answers go nowhere.
    this.outputGone = true;
    this.outputCongested = false;
    this.log.warn(`stdout failed (${error.code ?? error.message}): answers can no longer be delivered`);
    this.reportClientGone(`stdout closed (${error.code ?? error.message})`);
    this.pump();
  };

  private reportClientGone(why: string): void {
    if (this.clientGoneReported) return;
    this.clientGoneReported = true;
    this.onclientgone?.(why);
  }

  /** Hands requests to the server while under the limits, reads ahead, pauses or resumes stdin. */
  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true; // a send() from inside onmessage: the running loop picks it up
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        while (!this.closed && this.waiting.length > 0 && !this.saturated()) this.hand(this.waiting.shift()!);
        while (!this.closed && this.waitingBytes < LOOKAHEAD_BYTES) {
          const frame = this.splitter.next();
          if (!frame) break;
          this.take(frame);
        }
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
    if (this.waiting.length === 0) this.waitingBytes = 0;
    if (this.readingStopped || this.closed || this.waitingBytes >= LOOKAHEAD_BYTES) this.input.pause();
    else this.input.resume();
  }

  private saturated(): boolean {
    return this.inFlightCount >= this.callLimit() || this.outputCongested;
  }

  private callLimit(): number {
    // Until the first answer shows how big answers are, start as if they were big.
    if (this.averageAnswerBytes === 0) return Math.min(this.maxInFlight, FIRST_CALL_LIMIT);
    return Math.max(1, Math.min(this.maxInFlight, Math.floor(this.answerBudgetBytes / this.averageAnswerBytes)));
  }

  private take(frame: Frame): void {
    if (frame.kind === 'oversized') {
      const limit = this.splitter.maxFrameBytes;
      this.log.warn(`discarded a JSON-RPC message of ${frame.bytes} bytes, over the ${limit}-byte limit`);
      this.replyWithError(
        recoverRequestId(frame.head, frame.tail),
        ErrorCode.InvalidRequest,
        `Invalid Request: a JSON-RPC message of ${frame.bytes} bytes exceeds the limit of ${limit} bytes (${formatMiB(limit)}) per message; ` +
          'it was discarded and the server keeps serving',
      );
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(frame.bytes.toString('utf8'));
    } catch (error) {
      this.replyWithError(
        null,
        ErrorCode.ParseError,
        `Parse error: a line is not valid JSON (${firstLine(describeError(error))}); send one JSON-RPC message per line; the server keeps serving`,
      );
      return;
    }
    if (!isJsonRpcMessage(parsed)) {
      this.replyWithError(
        idOf(parsed),
        ErrorCode.InvalidRequest,
        'Invalid Request: not a JSON-RPC 2.0 message as MCP takes it (a request has exactly "jsonrpc": "2.0", a "method" string, an "id" string or safe integer, and "params" an object whose "_meta", if any, is an object with a string or integer "progressToken"; batches are not supported)',
      );
      return;
    }
    const message = parsed;
    if ('method' in message && 'id' in message && message.method === 'initialize' && !isInitializeParams(message.params)) {
      // The SDK would answer with a multi-line zod dump; one line says what initialize needs.
      this.replyWithError(
        message.id,
        ErrorCode.InvalidParams,
        'Invalid params: initialize needs params.protocolVersion (a string such as "2025-06-18"), params.capabilities (an object) and params.clientInfo ({"name": string, "version": string})',
      );
      return;
    }
    if ('method' in message && 'id' in message) {
      if (this.readingStopped) {
        this.refuseForShutdown(message);
      } else if (this.waiting.length > 0 || this.saturated()) {
        this.waiting.push(message);
        this.waitingBytes += frame.bytes.length;
      } else {
        this.hand(message);
      }
      return;
    }
    if ('method' in message && message.method === 'notifications/cancelled') {
      const cancelled = (message.params as { requestId?: unknown } | undefined)?.requestId;
      if (typeof cancelled === 'string' || typeof cancelled === 'number') {
        const queued = this.waiting.findIndex((request) => request.id === cancelled);
        if (queued !== -1) {
          this.waiting.splice(queued, 1); // never started: nothing to cancel, nothing to answer
          return;
        }
        // The SDK drops the answer of a cancelled request, so it stops counting here.
        this.release(cancelled);
      }
    }
    this.deliver(message);
  }

  private hand(request: JSONRPCRequest): void {
    if (!this.connected && this.earlyResponder) {
      const early = this.earlyResponder(request);
      if (early) {
        this.write(JSON.stringify({ jsonrpc: '2.0', id: request.id, result: early.result }) + '\n');
        if (!early.alsoDeliver) return;
        this.answeredEarly.add(request.id);
      } else {
        this.onserverwanted?.();
      }
    }
    this.track(request.id);
    this.deliver(request);
  }

  private deliver(message: JSONRPCMessage): void {
    if (this.connected) this.onmessage?.(message);
    else this.forServer.push(message);
  }

  private track(id: RequestId): void {
    this.inFlight.set(id, (this.inFlight.get(id) ?? 0) + 1);
    this.inFlightCount++;
  }

  private release(id: RequestId): void {
    const count = this.inFlight.get(id);
    if (count === undefined) return;
    if (count > 1) this.inFlight.set(id, count - 1);
    else this.inFlight.delete(id);
    this.inFlightCount--;
    this.pump();
  }

  private refuseForShutdown(request: JSONRPCRequest): void {
    this.replyWithError(
      request.id,
      ErrorCode.ConnectionClosed,
      'BACKEND_UNAVAILABLE: the server is shutting down and did not start this call; send it again once the server runs again',
    );
  }

  private replyWithError(id: RequestId | null, code: number, message: string): void {
    this.write(JSON.stringify({ jsonrpc: '2.0', id, error: { code, message } }) + '\n');
  }

  private write(frame: string): void {
    if (this.outputGone) return;
    if (!this.output.write(frame)) this.outputCongested = true;
  }

  private async waitUntil(done: () => boolean, deadline: number): Promise<void> {
    while (!done() && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, FINISH_POLL_MS));
    }
  }
}

/**
 * The shape of a JSON-RPC 2.0 message as the SDK's own schemas accept it (JSONRPCRequestSchema and
 * kin, strict): a message they would refuse reaches no handler and is never answered, so it is
 * answered here instead. What a method's params must hold beyond `_meta` is the handlers' business.
 */
function isJsonRpcMessage(value: unknown): value is JSONRPCMessage {
  if (!isPlainObject(value) || value.jsonrpc !== '2.0') return false;
  const keys = Object.keys(value);
  if (typeof value.method === 'string') {
    const allowed = 'id' in value ? REQUEST_KEYS : NOTIFICATION_KEYS;
    if (!keys.every((key) => allowed.has(key))) return false;
    if ('id' in value && !isRequestId(value.id)) return false;
    return value.params === undefined || (isPlainObject(value.params) && isValidMeta(value.params._meta));
  }
  if (!isRequestId(value.id) && !(value.id === null && 'error' in value)) return false;
  if ('result' in value) return isPlainObject(value.result);
  const error = value.error;
  return isPlainObject(error) && typeof error.code === 'number' && typeof error.message === 'string';
}

const REQUEST_KEYS = new Set(['jsonrpc', 'id', 'method', 'params']);
const NOTIFICATION_KEYS = new Set(['jsonrpc', 'method', 'params']);
const RELATED_TASK_META_KEY = 'io.modelcontextprotocol/related-task';

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return !!value && typeof value === 'object' && !Array.isArray(value);
}

/** The SDK's RequestIdSchema: a string or a safe integer. */
function isRequestId(id: unknown): id is RequestId {
  return typeof id === 'string' || Number.isSafeInteger(id);
}

/** What the SDK's InitializeRequestSchema requires of initialize's params. */
function isInitializeParams(params: unknown): boolean {
  if (!isPlainObject(params) || typeof params.protocolVersion !== 'string' || !isPlainObject(params.capabilities)) return false;
  const client = params.clientInfo;
  return isPlainObject(client) && typeof client.name === 'string' && typeof client.version === 'string';
}

function isValidMeta(meta: unknown): boolean {
  if (meta === undefined) return true;
  if (!isPlainObject(meta)) return false;
  if (meta.progressToken !== undefined && !isRequestId(meta.progressToken)) return false;
  const related = meta[RELATED_TASK_META_KEY];
  return related === undefined || (isPlainObject(related) && typeof related.taskId === 'string');
}

/** The id to answer an invalid message with: whatever string or number it carried, so the client can match it; else null. */
function idOf(value: unknown): RequestId | null {
  const id = isPlainObject(value) ? value.id : undefined;
  return typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)) ? id : null;
}

function firstLine(text: string): string {
  const line = text.split('\n', 1)[0];
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}

function formatMiB(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return Number.isInteger(mib) ? `${mib} MiB` : `${mib.toFixed(2)} MiB`;
}
