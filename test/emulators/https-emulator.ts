import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { makeTestCertificates, type TestCertificates } from '../helpers/tls.js';

/**
 * What every array emulator shares: a real HTTPS server on 127.0.0.1 with a test CA, basic
 * auth credentials, a log of requests, and a switch that makes error bodies echo the request
 * headers (to prove no credential escapes through an array's error text).
 */
export abstract class HttpsEmulator {
  readonly certs: TestCertificates = makeTestCertificates();
  /** Every request seen, for assertions: "GET /api/v2/volumes?name=...". */
  readonly requests: string[] = [];
  port = 0;
  protected echoHeaders = false;
  private server?: Server;
  private slowRules: Array<{ method: string; pathIncludes: string; ms: number; count: number }> = [];
  private failRules: Array<{ method: string; pathIncludes: string; status: number; times: number }> = [];

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

  protected authorized(req: IncomingMessage): boolean {
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
