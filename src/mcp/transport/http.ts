/**
 * `cinderlib-mcp serve --http`: MCP over the SDK's Streamable HTTP transport (contract section 10)
 * on Node's own http module.
 *
 * - `/mcp` (POST, GET, DELETE): one SDK transport (behind the JSON fast path of http-fast-path.ts)
 *   and one MCP server per session, the registry shared. A session belongs to the token that
 *   opened it: another token's requests get 404.
 *   Sessions of a read-only token (or of a read-only server) offer and run only the read tools.
 * - `/healthz` (GET): 200 `{"status":"ok"}`, or 503 with the reason; no auth.
 * - `/metrics` (GET): the Prometheus text format (src/base/metrics.ts), behind the same tokens as /mcp.
 * - Order of checks on /mcp: Origin (403), bearer token (401), body size (413), JSON (400), session.
 * - Under load (contract section 16): a token holds at most global.http_sessions_per_token sessions
 *   (its oldest idle one ends to make room, else 429); bodies being received share one memory budget
 *   (beyond it, 503 with Retry-After), and a body that stops arriving is dropped with its connection.
 */

import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { DEFAULT_HTTP_SESSION_IDLE_SECONDS, DEFAULT_HTTP_SESSIONS_PER_TOKEN, type HttpToken, type LoadedConfig } from '../../config/load.js';
import type { Logger } from '../../base/log.js';
import type { BackendRegistry } from '../../core/registry.js';
import type { SecretRegistry } from '../../base/secrets.js';
import { createMcpServer } from '../server.js';
import { metrics } from '../../base/metrics.js';
import { FastJsonHttpTransport } from './http-fast-path.js';

/** Bodies larger than this are answered 413 (contract section 10). */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;
/** More live sessions than this and new ones are refused (503) until some end. */
export const MAX_SESSIONS = 1000;
/** How much of a refused body is read and dropped before the connection is cut instead. */
const MAX_DISCARD_BYTES = 64 * 1024 * 1024;
/** Request bodies being received are held in memory up to this much in all, across connections. */
export const BODY_BUDGET_BYTES = 64 * 1024 * 1024;
/** A request body from which nothing arrives for this long is dropped and its connection destroyed. */
export const BODY_STALL_MS = 30_000;
/**
 * Past its first LOOSE_CHUNKS chunks, a body's chunks smaller than SMALL_CHUNK_BYTES are copied
 * into blocks of BODY_BLOCK_BYTES (counted whole): a trickle of tiny packets must not hold one
 * Buffer, a few hundred bytes of overhead, per packet.
 */
const LOOSE_CHUNKS = 64;
const SMALL_CHUNK_BYTES = 16 * 1024;
const BODY_BLOCK_BYTES = 64 * 1024;
/** What a client refused for load is told to wait, in seconds. */
const RETRY_AFTER_SECONDS = 2;
/** How long /healthz waits for the metadata store's answer. */
const HEALTH_TIMEOUT_MS = 5000;
const REALM = 'cinderlib-mcp';

export interface HttpServeOptions {
  config: LoadedConfig;
  /** Shared by every session; tool calls wait for it. */
  registry: Promise<BackendRegistry>;
  secrets: SecretRegistry;
  log: Logger;
  host: string;
  /** 0 picks a free port (see `url`). */
  port: number;
  /** Why the metadata store cannot be reached right now, or undefined when it can (for /healthz). */
  storeHealth?: () => Promise<string | undefined>;
  /** Overrides BODY_BUDGET_BYTES (tests). */
  bodyBudgetBytes?: number;
  /** Overrides BODY_STALL_MS (tests). */
  bodyStallMs?: number;
}

export interface HttpServerHandle {
  /** Where MCP is served, e.g. http://127.0.0.1:8808/mcp (the port actually bound). */
  url: string;
  /** Live sessions. */
  readonly sessions: number;
  /** POST requests (calls) not yet answered. */
  readonly requestsInFlight: number;
  /**
   * Stops taking connections and requests (new ones get 503), lets requests in flight finish for
   * up to `graceMs` (default 0), then ends every session and connection. Resolves with the number
   * of requests abandoned.
   */
  close(graceMs?: number): Promise<{ abandoned: number }>;
}

interface Session {
  id: string;
  transport: FastJsonHttpTransport;
  server: Server;
  /** The token that opened it (undefined: no tokens configured). */
  token?: HttpToken;
  /** Who it is, for logs: the token's name, else the client's name from initialize. */
  clientName?: string;
  readOnly: boolean;
  lastSeen: number;
  /** POST requests of this session not yet answered: a session is never idle while one runs. */
  inFlight: number;
  timer?: NodeJS.Timeout;
  /** Why it ended, for the log line. */
  endReason?: string;
}

/** Whether `host` is a loopback address or `localhost` (only those may serve without a token). */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (bare === 'localhost' || bare.endsWith('.localhost')) return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  if (isIP(bare) === 6) return bare === '::1' || /^(0{0,4}:){7}0{0,3}1$/.test(bare) || /^::ffff:127\./.test(bare);
  return false;
}

/** Throws the message the CLI prints when serving on `host` would expose MCP without any token. */
export function assertHttpBindingAllowed(host: string, tokens: readonly HttpToken[] | undefined): void {
  if (isLoopbackHost(host) || (tokens && tokens.length > 0)) return;
  throw new Error(
    `refusing to serve MCP over HTTP on ${host}: it is not a loopback address and no bearer token is configured, so anyone who can reach it could manage storage; ` +
      'add global.http_tokens ([{name, token, read_only?}]) to the config, or serve on 127.0.0.1 (the default)',
  );
}

export async function serveHttp(options: HttpServeOptions): Promise<HttpServerHandle> {
  const { config, secrets, log, host } = options;
  const tokens = config.global.httpTokens ?? [];
  assertHttpBindingAllowed(host, tokens);
  const idleMs = (config.global.httpSessionIdleSeconds ?? DEFAULT_HTTP_SESSION_IDLE_SECONDS) * 1000;
  const perToken = config.global.httpSessionsPerToken ?? DEFAULT_HTTP_SESSIONS_PER_TOKEN;
  const bodyBudget = new BodyBudget(options.bodyBudgetBytes ?? BODY_BUDGET_BYTES);
  const stallMs = options.bodyStallMs ?? BODY_STALL_MS;
  let budgetWarnedAt = 0;
  const tokenDigests = tokens.map((token) => ({ token, digest: sha256(token.token) }));

  // The registry's state, for /healthz.
  let registryState: { state: 'loading' } | { state: 'ready' } | { state: 'failed'; reason: string } = { state: 'loading' };
  options.registry.then(
    () => (registryState = { state: 'ready' }),
    (error: unknown) => (registryState = { state: 'failed', reason: error instanceof Error ? error.message : String(error) }),
  );

  const sessions = new Map<string, Session>();
  /** Sessions of each token whose initialize is under way: they count against its cap too. */
  const opening = new Map<HttpToken | undefined, number>();
  let requestsInFlight = 0;
  let closing = false;
  const inFlightDrained = new Set<() => void>();
  let allowedOrigins = new Set<string>();

  const httpServer = createServer((req, res) => {
    const started = Date.now();
    const path = requestPath(req.url);
    const isCall = req.method === 'POST';
    if (isCall) requestsInFlight++;
    let session: Session | undefined;
    let client: string | undefined;
    res.once('close', () => {
      if (isCall && --requestsInFlight === 0) for (const wake of inFlightDrained) wake();
      const who = [session ? `session ${session.id.slice(0, 8)}` : '', client ? `client "${client}"` : ''].filter(Boolean).join(', ');
      log.debug(
        `${req.method} ${path} from ${req.socket.remoteAddress ?? '?'} -> ${res.statusCode}${res.writableFinished ? '' : ' (cut short)'} in ${Date.now() - started} ms${who ? ` (${who})` : ''}`,
      );
    });
    void (async () => {
      if (closing) return sendJson(res, 503, { error: 'the server is shutting down' }, { Connection: 'close' });
      if (path === '/healthz') return await health(req, res);
      if (path === '/metrics') return scrape(req, res);
      if (path !== '/mcp') return sendJson(res, 404, { error: `no such endpoint ${path}; MCP is served at /mcp, health at /healthz, metrics at /metrics` });
      const origin = req.headers.origin;
      if (origin !== undefined && !originAllowed(origin, allowedOrigins)) {
        log.warn(`refused a request from origin ${JSON.stringify(origin.slice(0, 200))}: not this server's own and not in global.http_allowed_origins`);
        return sendJsonRpcError(
          res,
          403,
          -32000,
          `Forbidden: origin ${JSON.stringify(origin.slice(0, 200))} is not allowed; an administrator can list it in global.http_allowed_origins`,
        );
      }
      // A browser page of an allowed origin may read the answers (CORS); its preflight needs no token.
      if (origin !== undefined) for (const [name, value] of Object.entries(corsHeaders(origin))) res.setHeader(name, value);
      if (req.method === 'OPTIONS' && origin !== undefined) {
        res.writeHead(204, CORS_PREFLIGHT_HEADERS);
        return void res.end();
      }
      if (req.method !== 'POST' && req.method !== 'GET' && req.method !== 'DELETE') {
        return sendJsonRpcError(res, 405, -32000, `Method not allowed: /mcp takes POST, GET and DELETE`, { Allow: 'POST, GET, DELETE' });
      }
      const auth = authenticate(req.headers.authorization);
      if (auth.refused) {
        return sendJsonRpcError(res, 401, -32000, `Unauthorized: ${auth.refused}`, {
          'WWW-Authenticate': `Bearer realm="${REALM}"${auth.invalid ? ', error="invalid_token"' : ''}`,
        });
      }
      const token = auth.token;
      client = token?.name;
      let body: unknown;
      if (req.method === 'POST') {
        const read = await readBody(req, MAX_BODY_BYTES, bodyBudget, stallMs);
        if (read === 'too-large') {
          discardRest(req, stallMs);
          return sendJsonRpcError(res, 413, -32000, `Payload too large: a request body may be at most ${MAX_BODY_BYTES} bytes (4 MiB)`);
        }
        if (read === 'busy') {
          discardRest(req, stallMs);
          if (Date.now() - budgetWarnedAt > 60_000) {
            budgetWarnedAt = Date.now();
            log.warn(
              `request bodies being received hold ${mebibytes(bodyBudget.limit)} MiB, the most this server buffers: new requests get 503 until some finish (logged at most once a minute)`,
            );
          }
          return sendJsonRpcError(
            res,
            503,
            -32000,
            `Service unavailable: request bodies being received already take ${mebibytes(bodyBudget.limit)} MiB, the most this server holds at once; retry in a few seconds`,
            { 'Retry-After': String(RETRY_AFTER_SECONDS) },
          );
        }
        if (read === 'stalled') {
          log.debug(`dropped a request body from ${req.socket.remoteAddress ?? '?'}: nothing arrived for ${stallMs / 1000} s`);
          return;
        }
        if (read === 'aborted') return;
        try {
          body = JSON.parse(read.toString('utf8'));
        } catch {
          return sendJsonRpcError(res, 400, -32700, 'Parse error: Invalid JSON');
        }
      }
      const sessionId = headerValue(req.headers['mcp-session-id']);
      if (sessionId !== undefined) {
        session = sessions.get(sessionId);
        // A session answers only the token that opened it: another token (read-only, say) cannot borrow it.
        if (!session || session.token !== token) return sendJsonRpcError(res, 404, -32001, 'Session not found');
        client = session.clientName;
        return await handleInSession(session, req, res, body);
      }
      if (req.method !== 'POST' || !(Array.isArray(body) ? body.some(isInitializeRequest) : isInitializeRequest(body))) {
        return sendJsonRpcError(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required (start a session with initialize)');
      }
      const crowded = makeRoomForSession(token);
      if (crowded) return sendJsonRpcError(res, 429, -32000, crowded, { 'Retry-After': String(RETRY_AFTER_SECONDS) });
      if (sessions.size >= MAX_SESSIONS) {
        return sendJsonRpcError(res, 503, -32000, `Service unavailable: ${MAX_SESSIONS} sessions are open; close one (DELETE /mcp) or wait for idle ones to end`);
      }
      // Counted as the token's from now until it is in `sessions` (or initialize failed).
      opening.set(token, (opening.get(token) ?? 0) + 1);
      let pending = true;
      const settled = () => {
        if (pending) opening.set(token, opening.get(token)! - 1);
        pending = false;
      };
      try {
        session = await openSession(token, initializeClientName(body), settled);
        client = session.clientName;
        await handleInSession(session, req, res, body);
      } finally {
        settled();
      }
      if (!sessions.has(session.transport.sessionId ?? '')) {
        // initialize was refused (malformed, say): nothing will ever use this transport.
        await session.server.close().catch(() => undefined);
      }
    })().catch((error: unknown) => {
      log.error(`HTTP ${req.method} ${path}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      if (!res.headersSent) sendJsonRpcError(res, 500, -32603, 'Internal error; the server logged details on stderr and keeps serving');
      else res.end();
    });
  });

  function authenticate(header: string | undefined): { token?: HttpToken; refused?: string; invalid?: boolean } {
    if (tokens.length === 0) return {};
    const match = header === undefined ? null : /^\s*bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) return { refused: 'this server needs a bearer token (header "Authorization: Bearer <token>", one of global.http_tokens)' };
    const presented = sha256(match[1]);
    let found: HttpToken | undefined;
    // Every token is compared, in constant time each: the time taken tells nothing about which matched.
    for (const { token, digest } of tokenDigests) if (timingSafeEqual(presented, digest)) found = token;
    return found ? { token: found } : { refused: 'the bearer token is not one this server accepts', invalid: true };
  }

  /**
   * Keeps `token` within global.http_sessions_per_token for one more session: ends its oldest idle
   * sessions as needed. Returns the refusal when they are all busy (other tokens are never touched).
   */
  function makeRoomForSession(token: HttpToken | undefined): string | undefined {
    const held = [...sessions.values()].filter((session) => session.token === token);
    const excess = held.length + (opening.get(token) ?? 0) + 1 - perToken;
    if (excess <= 0) return undefined;
    const idle = held.filter((session) => session.inFlight === 0).sort((a, b) => a.lastSeen - b.lastSeen);
    const holder = token ? `the token "${token.name}"` : 'clients without a token';
    if (idle.length < excess) {
      return `Too many sessions: ${holder} already holds ${perToken} session(s), the most global.http_sessions_per_token allows, and none is idle to end in favour of a new one (each has a call running); close one (DELETE /mcp) or retry once a call has finished`;
    }
    for (const session of idle.slice(0, excess)) {
      endSession(session, `${holder} opened a new one beyond global.http_sessions_per_token (${perToken}): its oldest idle session ends first`);
    }
    return undefined;
  }

  /** Ends a session now: its id is unknown (404) from here on. */
  function endSession(session: Session, reason: string): void {
    if (sessions.get(session.id) !== session) return;
    sessions.delete(session.id);
    clearTimeout(session.timer);
    log.info(`HTTP session ${session.id.slice(0, 8)} ended (${reason})`);
    void session.server.close().catch(() => undefined);
  }

  async function openSession(token: HttpToken | undefined, initializeName: string | undefined, onOpened: () => void): Promise<Session> {
    const readOnly = config.global.readOnly || (token?.readOnly ?? false);
    const server = createMcpServer({
      toolsets: config.global.toolsets,
      registry: options.registry,
      readOnly,
      ...(!config.global.readOnly && token?.readOnly
        ? { readOnlyReason: `the token "${token.name}" is read-only (its http_tokens entry has read_only: true); a token without read_only may call it` }
        : {}),
      secrets,
      log,
      // Over HTTP the audit log names the token; without tokens, the client's name from initialize.
      ...(token ? { clientName: () => token.name } : {}),
      ...(token?.backends ? { backendScope: { holder: token.name, backends: token.backends } } : {}),
    });
    const session: Session = {
      id: '',
      transport: undefined as unknown as FastJsonHttpTransport,
      server,
      token,
      clientName: token?.name ?? initializeName,
      readOnly,
      lastSeen: Date.now(),
      inFlight: 0,
    };
    session.transport = new FastJsonHttpTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        session.id = id;
        sessions.set(id, session);
        onOpened();
        armIdleTimer(session);
        log.info(`HTTP session ${id.slice(0, 8)} opened${session.clientName ? ` by "${session.clientName}"` : ''}${readOnly ? ' (read-only)' : ''}`);
      },
      onsessionclosed: () => void (session.endReason ??= 'the client ended it'),
    });
    session.transport.onclose = () => {
      clearTimeout(session.timer);
      if (session.id && sessions.get(session.id) === session) {
        sessions.delete(session.id);
        log.info(`HTTP session ${session.id.slice(0, 8)} ended (${session.endReason ?? 'closed'})`);
      }
    };
    session.transport.onerror = (error) => log.debug(`HTTP session ${session.id.slice(0, 8) || '(new)'}: ${error.message}`);
    await server.connect(session.transport);
    return session;
  }

  async function handleInSession(session: Session, req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    session.lastSeen = Date.now();
    // A GET is the client's stream for server messages; it stays open and is not a call.
    const counts = req.method !== 'GET';
    if (counts) session.inFlight++;
    // handleRequest may return while an SSE answer is still streaming: the call ends with the response.
    const answered = new Promise<void>((resolve) => res.once('close', resolve));
    try {
      await session.transport.handleRequest(req, res, body);
      if (counts) await answered;
    } finally {
      if (counts) session.inFlight--;
      session.lastSeen = Date.now();
    }
  }

  function armIdleTimer(session: Session): void {
    clearTimeout(session.timer);
    const due = session.lastSeen + idleMs - Date.now();
    session.timer = setTimeout(
      () => {
        if (!sessions.has(session.id)) return;
        if (session.inFlight > 0 || Date.now() - session.lastSeen < idleMs) return armIdleTimer(session);
        endSession(session, `idle for ${Math.round(idleMs / 1000)} s (global.http_session_idle_seconds)`);
      },
      // A session with a call running is looked at again after a full period.
      Math.max(session.inFlight > 0 ? idleMs : due, 10),
    );
    session.timer.unref();
  }

  /** Prometheus' scrape: behind the same tokens as /mcp (a limited or read-only one will do: it reveals no volume). */
  function scrape(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: '/metrics takes GET' }, { Allow: 'GET, HEAD' });
    const origin = req.headers.origin;
    if (origin !== undefined && !originAllowed(origin, allowedOrigins)) return sendJson(res, 403, { error: 'origin not allowed' });
    const auth = authenticate(req.headers.authorization);
    if (auth.refused) {
      return sendJson(res, 401, { error: `Unauthorized: ${auth.refused}` }, { 'WWW-Authenticate': `Bearer realm="${REALM}"${auth.invalid ? ', error="invalid_token"' : ''}` });
    }
    const text = secrets.redact(metrics.render());
    res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : text);
  }
  metrics.collect(() => [
    { name: 'cinderlib_mcp_http_sessions', help: 'Streamable HTTP sessions open on this server.', labels: {}, value: sessions.size },
    { name: 'cinderlib_mcp_http_requests_in_flight', help: 'HTTP calls (POST /mcp) not yet answered.', labels: {}, value: requestsInFlight },
  ]);

  async function health(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: '/healthz takes GET' }, { Allow: 'GET, HEAD' });
    // Without a valid token the answer is the state alone: the reason names the store's address.
    const auth = tokens.length > 0 && req.headers.authorization !== undefined ? authenticate(req.headers.authorization) : {};
    const trusted = auth.token !== undefined;
    const down = (status: 'starting' | 'unavailable', reason: string) => sendJson(res, 503, trusted ? { status, reason: secrets.redact(reason) } : { status: 'unavailable' });
    const state = registryState;
    if (state.state === 'loading') return down('starting', 'the metadata store and backends are still loading');
    if (state.state === 'failed') return down('unavailable', state.reason);
    let reason: string | undefined;
    if (options.storeHealth) {
      let timer: NodeJS.Timeout | undefined;
      try {
        reason = await Promise.race([
          options.storeHealth(),
          new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`the metadata store did not answer within ${HEALTH_TIMEOUT_MS / 1000} s`), HEALTH_TIMEOUT_MS))),
        ]);
      } catch (error) {
        reason = error instanceof Error ? error.message : String(error);
      } finally {
        clearTimeout(timer);
      }
    }
    if (reason !== undefined) return down('unavailable', reason);
    sendJson(res, 200, { status: 'ok' });
  }

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(options.port, host.replace(/^\[(.*)\]$/, '$1'), () => {
      httpServer.off('error', reject);
      resolve();
    });
  });
  httpServer.on('error', (error) => log.error(`HTTP server: ${error.message}`));
  const address = httpServer.address();
  if (address === null || typeof address === 'string') throw new Error('the HTTP server is not listening on a TCP port');
  allowedOrigins = new Set([...ownOrigins(host, address.port), ...(config.global.httpAllowedOrigins ?? [])]);
  const url = `http://${urlHost(host === '' ? address.address : host)}:${address.port}/mcp`;
  if (!isLoopbackHost(host)) {
    log.warn(`serving on ${host}, beyond this machine, in plain HTTP: bearer tokens cross the network unencrypted unless a TLS proxy sits in front`);
  }

  return {
    url,
    get sessions() {
      return sessions.size;
    },
    get requestsInFlight() {
      return requestsInFlight;
    },
    async close(graceMs = 0) {
      if (!closing) {
        closing = true;
        httpServer.close(); // no new connections
        httpServer.closeIdleConnections();
      }
      if (requestsInFlight > 0 && graceMs > 0) {
        let wake!: () => void;
        const drained = new Promise<void>((resolve) => inFlightDrained.add((wake = resolve)));
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([drained, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
        clearTimeout(timer);
        inFlightDrained.delete(wake);
      }
      const abandoned = requestsInFlight;
      for (const session of [...sessions.values()]) {
        session.endReason = 'the server is shutting down';
        await session.server.close().catch(() => undefined);
      }
      httpServer.closeAllConnections();
      return { abandoned };
    },
  };
}

/** clientInfo.name of an initialize request (single or in a batch), at most 100 characters. */
function initializeClientName(body: unknown): string | undefined {
  const request = (Array.isArray(body) ? body : [body]).find((message) => isInitializeRequest(message));
  const name = request?.params.clientInfo.name;
  return typeof name === 'string' && name !== '' ? JSON.stringify(name.slice(0, 100)).slice(1, -1) : undefined;
}

function corsHeaders(origin: string): Record<string, string> {
  return {
    'Access-Control-Allow-Origin': origin,
    'Access-Control-Expose-Headers': 'Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate',
    Vary: 'Origin',
  };
}

const CORS_PREFLIGHT_HEADERS = {
  'Access-Control-Allow-Methods': 'POST, GET, DELETE',
  'Access-Control-Allow-Headers': 'Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID',
  'Access-Control-Max-Age': '600',
};

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** The path alone: a query string may carry anything, and is never logged. */
function requestPath(url: string | undefined): string {
  const path = (url ?? '/').split('?')[0];
  return path.length > 200 ? `${path.slice(0, 200)}...` : path;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** The bytes of request bodies held in memory across connections, against one ceiling. */
class BodyBudget {
  used = 0;
  constructor(readonly limit: number) {}

  take(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
  }
}

type BodyOutcome = Buffer | 'too-large' | 'busy' | 'stalled' | 'aborted';

/**
 * Reads a body of at most `limit` bytes, counted as it arrives (Content-Length is only a first
 * hint). Its bytes are taken from `budget` while held ('busy' when it has no room left), and a
 * body from which nothing arrives for `stallMs` is dropped with its connection ('stalled').
 */
function readBody(req: IncomingMessage, limit: number, budget: BodyBudget, stallMs: number): Promise<BodyOutcome> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve('too-large');
  return new Promise((resolve) => {
    let chunks: Buffer[] = [];
    let size = 0;
    /** What this body holds in memory, as taken from the budget (blocks count whole). */
    let held = 0;
    let block: Buffer | undefined;
    let blockUsed = 0;
    const closeBlock = () => {
      if (block) chunks.push(block.subarray(0, blockUsed));
      block = undefined;
    };
    let settled = false;
    const stall = setTimeout(() => {
      req.socket.destroy();
      done('stalled');
    }, stallMs).unref();
    const done = (outcome: BodyOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(stall);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onAbort);
      req.off('aborted', onAbort);
      req.off('close', onAbort);
      budget.give(held);
      chunks = [];
      block = undefined; // a dropped body's bytes go now, not when the request object does
      resolve(outcome);
    };
    const onData = (chunk: Buffer) => {
      stall.refresh();
      if (size + chunk.length > limit) {
        req.pause();
        return done('too-large');
      }
      if (chunk.length >= SMALL_CHUNK_BYTES || (!block && chunks.length < LOOSE_CHUNKS)) {
        if (!budget.take(chunk.length)) return busy();
        held += chunk.length;
        closeBlock();
        chunks.push(chunk);
      } else {
        if (!block || blockUsed + chunk.length > block.length) {
          if (!budget.take(BODY_BLOCK_BYTES)) return busy();
          held += BODY_BLOCK_BYTES;
          closeBlock();
          block = Buffer.allocUnsafe(BODY_BLOCK_BYTES);
          blockUsed = 0;
        }
        blockUsed += chunk.copy(block, blockUsed);
      }
      size += chunk.length;
    };
    const busy = () => {
      req.pause();
      done('busy');
    };
    const onEnd = () => {
      closeBlock();
      done(Buffer.concat(chunks, size));
    };
    const onAbort = () => done('aborted');
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onAbort);
    req.once('aborted', onAbort);
    req.once('close', onAbort);
  });
}

/**
 * Reads and drops what is left of a refused body, so that a client still sending gets its answer
 * rather than a broken pipe; beyond MAX_DISCARD_BYTES more, or nothing for `stallMs`, the
 * connection is cut instead.
 */
function discardRest(req: IncomingMessage, stallMs: number): void {
  let discarded = 0;
  const stall = setTimeout(() => req.socket.destroy(), stallMs).unref();
  req.on('data', (chunk: Buffer) => {
    stall.refresh();
    discarded += chunk.length;
    if (discarded > MAX_DISCARD_BYTES) req.socket.destroy();
  });
  // Once the body has ended the connection may carry the next request: it is no longer ours to cut.
  req.once('end', () => clearTimeout(stall));
  req.once('close', () => clearTimeout(stall));
  req.resume();
}

function mebibytes(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(bytes % (1024 * 1024) === 0 ? 0 : 1);
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store', ...headers });
  res.end(text);
}

/** An HTTP-level refusal shaped as the SDK shapes its own (a JSON-RPC error with a null id). */
function sendJsonRpcError(res: ServerResponse, status: number, code: number, message: string, headers: Record<string, string> = {}): void {
  sendJson(res, status, { jsonrpc: '2.0', error: { code, message }, id: null }, headers);
}

function originAllowed(origin: string, allowed: ReadonlySet<string>): boolean {
  try {
    const normalized = new URL(origin).origin;
    return normalized !== 'null' && allowed.has(normalized);
  } catch {
    return false;
  }
}

function urlHost(host: string): string {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  return isIP(bare) === 6 ? `[${bare}]` : bare;
}

/**
 * The origins this server is reached at: the bound address with its port, and for loopback the
 * other loopback spellings; for a wildcard address every local interface address and the host
 * name. Never derived from the request's Host header (which a DNS-rebinding page controls).
 */
function ownOrigins(host: string, port: number): string[] {
  const names = new Set<string>([urlHost(host)]);
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  if (isLoopbackHost(host)) for (const name of ['localhost', '127.0.0.1', '[::1]']) names.add(name);
  if (bare === '' || bare === '0.0.0.0' || bare === '::') {
    for (const name of ['localhost', '127.0.0.1', '[::1]', hostname()]) names.add(name);
    for (const addresses of Object.values(networkInterfaces())) {
      for (const address of addresses ?? []) names.add(urlHost(address.address.split('%')[0]));
    }
  }
  const origins: string[] = [];
  for (const name of names) {
    try {
      origins.push(new URL(`http://${name}:${port}`).origin);
    } catch {
      // a name no URL can carry is no origin either
    }
  }
  return origins;
}
