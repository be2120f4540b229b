import { isIPv6 } from 'node:net';
import { Pool } from 'undici';
import { SAN_IP_FORMS, parseSanIp } from '../options.js';
import { StorageError, type ErrorCode } from '../../../src/base/errors.js';
import type { Logger } from '../../../src/base/log.js';
import { readRegularFile } from '../../../src/base/regular-file.js';
import type { SecretRegistry } from '../../../src/base/secrets.js';
import { authSecrets, fixedAuthHeaders, sessionToken, type RestAuth, type SessionAuth } from './auth.js';
import { DEFAULT_MAX_PAGES, type Paging } from './paging.js';

export type { RestAuth, BasicAuth, HeaderAuth, SessionAuth } from './auth.js';
export { continuationToken, nextLink, type NextPage, type Paging } from './paging.js';

/**
 * The one HTTP client for every REST driver: a connection pool per backend, TLS verified by
 * default, a timeout per request, retries with backoff only while the array says it is busy,
 * and errors that name the backend, the operation and the array's reason but never a credential.
 * Auth is pluggable (basic, a header token, a login session: ./auth.ts), and listings that come
 * in pages are followed to their end within a bound (./paging.ts).
 */

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RestResponse {
  status: number;
  /** Response headers, names lower-cased; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** Parsed JSON body, or undefined when the body is empty or not JSON. */
  body: unknown;
  text: string;
}

export interface RetryPolicy {
  attempts: number;
  intervalMs: number;
  /** Multiplier applied to the wait after each busy answer (1 = constant, as Cinder's XtremIO). */
  backoffRate?: number;
  isBusy(response: RestResponse): boolean;
}

export interface RestClientOptions {
  backendName: string;
  /** e.g. https://10.0.0.1:8443/api/json/v2/types */
  baseUrl: string;
  /** Basic auth, the short way; `auth` takes precedence. */
  username?: string;
  password?: string;
  auth?: RestAuth;
  /** What a 401/403 asks the user to check; "check san_login and san_password" by default. */
  authHint?: string;
  verifyTls: boolean;
  caPath?: string;
  timeoutMs?: number;
  connections?: number;
  retry?: RetryPolicy;
  log: Logger;
  secrets: SecretRegistry;
}

export interface RequestOptions {
  /** What the caller is doing, for messages: "create volume volume-123". */
  operation: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** Extra request headers (never credentials: those belong to `auth`). */
  headers?: Record<string, string>;
}

const TLS_ERROR_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** A 400 from an array is a request the driver made that the array refused, not a bad tool argument. */
const STATUS_CODES: Array<[(status: number) => boolean, ErrorCode]> = [
  [(s) => s === 400 || s === 422, 'BACKEND_UNAVAILABLE'],
  [(s) => s === 401 || s === 403, 'BACKEND_UNAVAILABLE'],
  [(s) => s === 404, 'NOT_FOUND'],
  [(s) => s === 409, 'ALREADY_EXISTS'],
  [(s) => s === 429, 'BACKEND_BUSY'],
];

export class RestClient {
  /** Built before the first request, once the CA bundle (if any) is read: never in the constructor. */
  private pool?: Promise<Pool>;
  private closed = false;
  private readonly basePath: string;
  private readonly origin: string;
  private readonly auth?: RestAuth;
  /** The session token being obtained or in use (session auth only); dropped when the array answers 401. */
  private session?: Promise<string>;

  constructor(private readonly options: RestClientOptions) {
    const url = new URL(options.baseUrl);
    this.origin = url.origin;
    this.basePath = url.pathname.replace(/\/$/, '');
    this.auth =
      options.auth ??
      (options.username !== undefined || options.password !== undefined ? { kind: 'basic', username: options.username ?? '', password: options.password ?? '' } : undefined);
    if (this.auth) for (const secret of authSecrets(this.auth)) options.secrets.register(secret);
  }

  async request(method: HttpMethod, path: string, request: RequestOptions): Promise<RestResponse> {
    return this.exchange(method, path, request, false);
  }

  /** A request with its busy retries; an `absolute` path is from the origin (a next-page link), not from the base URL. */
  private async exchange(method: HttpMethod, path: string, request: RequestOptions, absolute: boolean): Promise<RestResponse> {
    const retry = this.options.retry;
    const attempts = Math.max(1, retry?.attempts ?? 1);
    let wait = retry?.intervalMs ?? 0;
    for (let attempt = 1; ; attempt++) {
      const response = await this.authorizedSend(method, absolute ? path : this.buildPath(path, request.query), request);
      if (!retry || !retry.isBusy(response)) return response;
      if (attempt >= attempts) {
        throw new StorageError(
          'BACKEND_BUSY',
          `backend "${this.options.backendName}": ${request.operation}: the array stayed busy after ${attempts} attempts (${this.reason(response)}); try again later`,
        );
      }
      this.options.log.warn(`${request.operation}: array busy (${this.reason(response)}), retry ${attempt}/${attempts - 1} in ${wait} ms`);
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait = Math.round(wait * (retry.backoffRate ?? 2));
    }
  }

  /**
   * Every page of a listing, the first from `path`, each next one where `paging` says; a page
   * that is not a success ends it with that failure, and more than the bound is an error.
   */
  async *pages(path: string, request: RequestOptions, paging: Paging): AsyncGenerator<RestResponse> {
    const maxPages = paging.maxPages ?? DEFAULT_MAX_PAGES;
    let next: { path: string; query?: RequestOptions['query']; absolute: boolean } | undefined = { path, query: request.query, absolute: false };
    for (let page = 1; next; page++) {
      if (page > maxPages) {
        throw new StorageError(
          'BACKEND_UNAVAILABLE',
          `backend "${this.options.backendName}": ${request.operation}: the listing goes on past ${maxPages} pages; the array keeps answering a next page`,
        );
      }
      const response = next.absolute
        ? await this.exchange('GET', this.sameOrigin(next.path, request.operation), { ...request, query: undefined }, true)
        : await this.exchange('GET', next.path, { ...request, query: next.query }, false);
      if (response.status >= 300) throw this.fail(request.operation, response);
      yield response;
      const after = paging.next(response);
      if (!after) return;
      next = 'link' in after ? { path: after.link, absolute: true } : { path, query: { ...request.query, ...after.query }, absolute: false };
    }
  }

  /** The items of every page of a listing, in order. */
  async collect<T>(path: string, request: RequestOptions, paging: Paging, items: (response: RestResponse) => T[]): Promise<T[]> {
    const all: T[] = [];
    for await (const response of this.pages(path, request, paging)) all.push(...items(response));
    return all;
  }

  /** A StorageError for an answer the driver cannot accept. */
  fail(operation: string, response: RestResponse, reason?: string): StorageError {
    const status = response.status;
    const code = STATUS_CODES.find(([match]) => match(status))?.[1] ?? (status >= 500 ? 'BACKEND_UNAVAILABLE' : 'INTERNAL');
    const hint = status === 401 || status === 403 ? `; ${this.options.authHint ?? 'check san_login and san_password'}` : '';
    return new StorageError(code, this.options.secrets.redact(`backend "${this.options.backendName}": ${operation} failed: HTTP ${status}: ${reason ?? this.reason(response)}${hint}`));
  }

  async close(): Promise<void> {
    this.closed = true;
    const pool = await this.pool?.catch(() => undefined);
    this.pool = undefined;
    await pool?.close();
  }

  /**
   * The connection pool, made on first use. driver_ssl_cert_path is read asynchronously here, so
   * a FIFO or a /proc path fails this backend's request with a reason instead of stalling the
   * event loop; a failed read is not kept, so the next request reads the file again.
   */
  private connectionPool(): Promise<Pool> {
    if (this.closed) {
      return Promise.reject(new StorageError('BACKEND_UNAVAILABLE', `backend "${this.options.backendName}": the REST client for ${this.origin} is closed`));
    }
    if (!this.pool) {
      const { caPath, verifyTls } = this.options;
      const pending = (async () => {
        const ca = verifyTls && caPath ? await this.readCa(caPath) : undefined;
        const timeout = this.options.timeoutMs ?? 30_000;
        return new Pool(this.origin, {
          connections: this.options.connections ?? 4,
          connectTimeout: timeout,
          headersTimeout: timeout,
          bodyTimeout: timeout,
          connect: { rejectUnauthorized: verifyTls, ca },
        });
      })();
      this.pool = pending;
      pending.catch(() => {
        if (this.pool === pending) this.pool = undefined;
      });
    }
    return this.pool;
  }

  /**
   * One request with its credentials; under a session, a 401 ends the session: log in again once
   * and send the request again (a second 401 is the answer).
   */
  private async authorizedSend(method: HttpMethod, path: string, request: RequestOptions): Promise<RestResponse> {
    const auth = this.auth;
    if (auth?.kind !== 'session') return this.send(method, path, request, fixedAuthHeaders(auth));
    for (let attempt = 1; ; attempt++) {
      const current = this.sessionFor(auth);
      const token = await current;
      const response = await this.send(method, path, request, { [(auth.sendAs ?? auth.tokenHeader).toLowerCase()]: token });
      if (response.status !== 401 || attempt > 1) return response;
      this.options.log.debug(`${request.operation}: the session ended (HTTP 401); logging in again`);
      if (this.session === current) this.session = undefined;
    }
  }

  /** The session token, logging in when there is none; concurrent requests share one login. */
  private sessionFor(auth: SessionAuth): Promise<string> {
    if (!this.session) {
      const pending = this.login(auth);
      this.session = pending;
      pending.catch(() => {
        if (this.session === pending) this.session = undefined;
      });
    }
    return this.session;
  }

  private async login(auth: SessionAuth): Promise<string> {
    const operation = 'log in';
    const response = await this.send(auth.login.method ?? 'POST', this.buildPath(auth.login.path), { operation, body: auth.login.body }, { ...auth.login.headers });
    if (response.status >= 300) throw this.fail(operation, response);
    const token = sessionToken(auth, response);
    if (!token) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `backend "${this.options.backendName}": ${operation}: the array answered HTTP ${response.status} without a session token (${auth.tokenHeader})`,
      );
    }
    this.options.secrets.register(token);
    return token;
  }

  /** A next-page link as a path from the origin; a link elsewhere is refused (credentials go only to the array). */
  private sameOrigin(link: string, operation: string): string {
    const url = new URL(link, this.origin);
    if (url.origin !== this.origin) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        this.options.secrets.redact(`backend "${this.options.backendName}": ${operation}: the next page is on ${url.origin}, not on ${this.origin}`),
      );
    }
    return `${url.pathname}${url.search}`;
  }

  /** `path` is the full request path, query included. */
  private async send(method: HttpMethod, path: string, request: RequestOptions, authHeaders: Record<string, string>): Promise<RestResponse> {
    const headers: Record<string, string> = { accept: 'application/json', ...request.headers, ...authHeaders };
    let payload: string | undefined;
    if (request.body !== undefined) {
      payload = JSON.stringify(request.body);
      headers['content-type'] = 'application/json';
    }
    const pool = await this.connectionPool();
    try {
      const response = await pool.request({
        method,
        path,
        headers,
        body: payload,
      });
      const text = await response.body.text();
      let body: unknown;
      if (text.length > 0) {
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
      }
      this.options.log.debug(this.options.secrets.redact(`${method} ${path} -> ${response.statusCode} (${request.operation})`));
      return { status: response.statusCode, headers: flatHeaders(response.headers), body, text };
    } catch (error) {
      throw this.transportError(error, request.operation);
    }
  }

  private buildPath(path: string, query?: RequestOptions['query']): string {
    return this.appendQuery(path.startsWith('/') ? `${this.basePath}${path}` : `${this.basePath}/${path}`, query);
  }

  private appendQuery(joined: string, query?: RequestOptions['query']): string {
    if (!query) return joined;
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.append(key, String(value));
    const search = params.toString();
    if (!search) return joined;
    return `${joined}${joined.includes('?') ? '&' : '?'}${search}`;
  }

  /** The array's own words, shortened; JSON bodies are flattened to their message-like fields. */
  private reason(response: RestResponse): string {
    const body = response.body as Record<string, unknown> | undefined;
    const fields = ['message', 'error', 'error_msg', 'reason', 'detail'];
    if (body && typeof body === 'object') {
      for (const field of fields) {
        const value = body[field];
        if (typeof value === 'string' && value) return this.options.secrets.redact(value).slice(0, 300);
      }
    }
    const text = response.text.trim();
    return text ? this.options.secrets.redact(text).slice(0, 300) : 'no reason given';
  }

  private transportError(error: unknown, operation: string): StorageError {
    const code = (error as { code?: string; cause?: { code?: string } })?.code;
    const causeCode = (error as { cause?: { code?: string } })?.cause?.code;
    const tlsCode = [code, causeCode].find((c) => c && TLS_ERROR_CODES.has(c));
    const backend = `backend "${this.options.backendName}"`;
    if (tlsCode) {
      return new StorageError(
        'BACKEND_UNAVAILABLE',
        `${backend}: ${operation}: the TLS certificate of ${this.origin} was refused (${tlsCode}); ` +
          `set driver_ssl_cert_path to the array's CA bundle, or driver_ssl_cert_verify: false to skip verification`,
        { cause: error },
      );
    }
    const detail = code ?? causeCode ?? (error instanceof Error ? error.message : String(error));
    const timeout = /timeout/i.test(detail) ? ' (timed out)' : '';
    return new StorageError('BACKEND_UNAVAILABLE', this.options.secrets.redact(`${backend}: ${operation}: cannot reach ${this.origin}${timeout}: ${detail}`), { cause: error });
  }

  private async readCa(caPath: string): Promise<string> {
    try {
      return (await readRegularFile(caPath)).toString('utf8');
    } catch (error) {
      throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.options.backendName}": cannot read driver_ssl_cert_path ${caPath}: ${(error as Error).message}`, { cause: error });
    }
  }
}

function flatHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) flat[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  return flat;
}

/**
 * Cinder's REST drivers accept san_ip with or without a port; this builds the origin from the
 * same parser that validated the option, so a value the config accepted always makes a URL.
 */
export function httpsOrigin(sanIp: string, defaultPort = 443): string {
  if (sanIp.trim() === '') throw new Error(`san_ip is not set: give the array's address (${SAN_IP_FORMS})`);
  const address = parseSanIp(sanIp.trim());
  if (!address) throw new Error(`san_ip "${sanIp}" is not an array address; use ${SAN_IP_FORMS}`);
  const host = isIPv6(address.host) ? `[${address.host}]` : address.host;
  return `https://${host}:${address.port ?? defaultPort}`;
}
