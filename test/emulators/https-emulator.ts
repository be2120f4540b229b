import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { makeTestCertificates, type TestCertificates } from '../helpers/tls.js';

/**
 * What every array emulator shares: a real HTTPS server on 127.0.0.1 with a test CA, basic
 * auth credentials (or, after useSessions, a token-and-session login), a log of requests, and a
 * switch that makes error bodies echo the request headers (to prove no credential escapes
 * through an array's error text).
 */
export interface SessionLogin {
  /** The login path, e.g. /api/2.4/login. */
  path: string;
  /** The request header carrying the API token (e.g. api-token) and its value. */
  apiTokenHeader: string;
  apiToken: string;
  /** The response header the session token comes back in, and every later request carries (e.g. x-auth-token). */
  sessionHeader: string;
}

export abstract class HttpsEmulator {
  readonly certs: TestCertificates = makeTestCertificates();
  /** Every request seen, for assertions: "GET /api/v2/volumes?name=...". */
  readonly requests: string[] = [];
  port = 0;
  protected echoHeaders = false;
  private server?: Server;
  private slowRules: Array<{ method: string; pathIncludes: string; ms: number; count: number }> = [];
  private failRules: Array<{ method: string; pathIncludes: string; status: number; times: number }> = [];
  private sessionLogin?: SessionLogin;
  /** Session tokens the emulator has issued and not yet ended. */
  readonly sessions = new Set<string>();
  /** Logins answered, for assertions. */
  logins = 0;

  constructor(
    readonly username: string,
    readonly password: string,
  ) {}

  /** host:port, as san_ip takes it. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.server = createServer({ cert: this.certs.cert, key: this.certs.key }, (req, res) => void this.receive(req, res));
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server!.close(resolve));
    this.server = undefined;
  }

  async cleanup(): Promise<void> {
    await this.stop();
    this.certs.cleanup();
  }

  /**
   * The next `count` requests of `method` whose path contains `pathIncludes` take `ms` before the
   * array acts on them, and the array acts even if the client has gone by then, as a real array
   * finishes a create whose caller died.
   */
  slowDown(rule: { method: string; pathIncludes: string; ms: number; count?: number }): void {
    this.slowRules.push({ ...rule, count: rule.count ?? 1 });
  }

  /** The next `times` requests of `method` whose path contains `pathIncludes` fail with `status`, and the array does nothing. */
  failNext(rule: { method: string; pathIncludes: string; status: number; times?: number }): void {
    this.failRules.push({ ...rule, times: rule.times ?? 1 });
  }

  echoRequestHeaders(on: boolean): void {
    this.echoHeaders = on;
  }

  /** From now on, requests are admitted by a session token that POST `login.path` with the API token answers, not by basic auth. */
  useSessions(login: SessionLogin): this {
    this.sessionLogin = login;
    return this;
  }

  /** Every session ends, as when the array restarts or times them out: the next request is answered 401. */
  endSessions(): void {
    this.sessions.clear();
  }

  protected authorized(req: IncomingMessage): boolean {
    if (this.sessionLogin) {
      const token = req.headers[this.sessionLogin.sessionHeader.toLowerCase()];
      return typeof token === 'string' && this.sessions.has(token);
    }
    return req.headers.authorization === `Basic ${Buffer.from(`${this.username}:${this.password}`).toString('base64')}`;
  }

  protected abstract handle(req: IncomingMessage, res: ServerResponse, url: URL, body: Record<string, unknown>): void;

  private async receive(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://emulator');
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    const body = await readJsonBody(req);
    const slow = this.slowRules.find((rule) => rule.count > 0 && rule.method === req.method && url.pathname.includes(rule.pathIncludes));
    if (slow) {
      slow.count--;
      await new Promise((resolve) => setTimeout(resolve, slow.ms));
    }
    const failure = this.failRules.find((rule) => rule.times > 0 && rule.method === req.method && url.pathname.includes(rule.pathIncludes));
    if (failure) {
      failure.times--;
      return sendJson(res, failure.status, { error_msg: 'emulated failure' });
    }
    const login = this.sessionLogin;
    if (login && req.method === 'POST' && url.pathname === login.path) {
      if (req.headers[login.apiTokenHeader.toLowerCase()] !== login.apiToken) return sendJson(res, 401, { message: 'invalid API token' });
      const token = randomBytes(12).toString('hex');
      this.sessions.add(token);
      this.logins++;
      return sendJson(res, 200, { items: [{ username: this.username }] }, { [login.sessionHeader.toLowerCase()]: token });
    }
    this.handle(req, res, url, body);
  }
}

export function sendJson(res: ServerResponse, status: number, payload?: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(payload === undefined ? '' : JSON.stringify(payload));
}

async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  if (chunks.length === 0) return {};
  try {
    const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    return parsed && typeof parsed === 'object' ? parsed : {};
  } catch {
    return {};
  }
}
