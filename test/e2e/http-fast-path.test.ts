import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server as NodeHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { FastJsonHttpTransport } from '../../src/mcp/transport/http-fast-path.js';
import { startHttpServerProcess, type HttpServerProcess } from '../helpers/http-server.js';

/**
 * The JSON fast path of `serve --http` (src/mcp/transport/http-fast-path.ts): one request without a
 * progress token is answered `application/json` on Node's response; calls with a progress token,
 * batches and the rest stay with the SDK's transport (SSE). Refusals read as the SDK's own,
 * cancellation still stops a call, a client that goes away leaves no call counted. A real server
 * process on loopback (`npm run build` first), then the transport alone for what no tool of ours
 * does (a notification tied to a call answered in JSON).
 */

const ADMIN = 'fast-path-admin-token-6d2b8e1f';
const OTHER = 'fast-path-other-token-9a4c7e3b';
const VERSION = '2025-06-18';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-http-fast-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('CINDERLIB_MCP_')) env[key] = value;
  return { ...env, XDG_DATA_HOME: join(root, 'data'), CINDERLIB_MCP_LOG_LEVEL: 'debug', ...extra };
}

async function startServer(name: string, env: Record<string, string> = {}): Promise<HttpServerProcess> {
  const config = join(root, `${name}.yaml`);
  writeFileSync(
    config,
    stringify({
      global: {
        persistence_config: { storage: 'memory' },
        http_tokens: [
          { name: 'admin', token: ADMIN },
          { name: 'other', token: OTHER },
        ],
      },
      backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, `${name}-volumes`) }],
    }),
  );
  return startHttpServerProcess(config, childEnv(env));
}

interface Answer {
  status: number;
  type: string;
  session: string | null;
  text: string;
}

/** A POST to /mcp (fetch), answered whole. */
async function post(url: string, body: unknown, headers: Record<string, string>): Promise<Answer> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, type: response.headers.get('content-type') ?? '', session: response.headers.get('mcp-session-id'), text: await response.text() };
}

/** The JSON-RPC messages of an SSE answer, in order. */
function sseMessages(text: string): any[] {
  return text
    .split('\n\n')
    .map((block) => block.split('\n').find((line) => line.startsWith('data: ')))
    .filter((line): line is string => line !== undefined)
    .map((line) => JSON.parse(line.slice('data: '.length)));
}

/** A session opened with plain requests: its headers for the calls that follow. */
async function openSession(url: string, token: string): Promise<Record<string, string>> {
  const auth = { Authorization: `Bearer ${token}` };
  const opened = await post(
    url,
    { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: VERSION, capabilities: {}, clientInfo: { name: 'fast-path-tests', version: '1' } } },
    auth,
  );
  expect(opened.status, opened.text).toBe(200);
  const headers = { ...auth, 'Mcp-Session-Id': opened.session!, 'Mcp-Protocol-Version': VERSION };
  expect((await post(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, headers)).status).toBe(202);
  return headers;
}

const toolCall = (id: number | string, name: string, args: Record<string, unknown>, progressToken?: string | number) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: args, ...(progressToken !== undefined ? { _meta: { progressToken } } : {}) },
});

async function inFlight(server: HttpServerProcess): Promise<number> {
  const text = await (await fetch(`${server.base}/metrics`, { headers: { Authorization: `Bearer ${ADMIN}` } })).text();
  return Number(/^cinderlib_mcp_http_requests_in_flight (\d+)$/m.exec(text)?.[1]);
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('serve --http, the JSON fast path', () => {
  let server: HttpServerProcess;
  let headers: Record<string, string>;
  beforeAll(async () => {
    server = await startServer('fast');
    headers = await openSession(server.url, ADMIN);
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it('answers a call without a progress token as application/json, with the result and the session header', async () => {
    const made = await post(server.url, toolCall(11, 'create_volume', { backend: 'files', size: 1, name: 'fast-one' }), headers);
    expect(made.status).toBe(200);
    expect(made.type).toBe('application/json');
    expect(made.session).toBe(headers['Mcp-Session-Id']);
    const answer = JSON.parse(made.text);
    expect(answer).toMatchObject({ jsonrpc: '2.0', id: 11, result: { structuredContent: { name: 'fast-one', size: 1, status: 'available' } } });
    // A string id comes back as sent; a JSON-RPC error is answered the same way.
    const fetched = await post(server.url, toolCall('get-it', 'get_volume', { volume_id: answer.result.structuredContent.id }), headers);
    expect(fetched.type).toBe('application/json');
    expect(JSON.parse(fetched.text)).toMatchObject({ id: 'get-it', result: { structuredContent: { id: answer.result.structuredContent.id } } });
    const unknown = await post(server.url, { jsonrpc: '2.0', id: 12, method: 'no/such/method' }, headers);
    expect(unknown.status).toBe(200);
    expect(unknown.type).toBe('application/json');
    expect(JSON.parse(unknown.text)).toEqual({ jsonrpc: '2.0', id: 12, error: { code: -32601, message: 'Method not found' } });
  });

  it('answers the same call with a progress token as SSE: progress notifications, then the result', async () => {
    const source = JSON.parse((await post(server.url, toolCall(20, 'create_volume', { backend: 'files', size: 1 }), headers)).text).result.structuredContent;
    const clone = await post(server.url, toolCall(21, 'create_volume', { source_volume_id: source.id }, 'clone-progress'), headers);
    expect(clone.status).toBe(200);
    expect(clone.type).toBe('text/event-stream');
    expect(clone.session).toBe(headers['Mcp-Session-Id']);
    const messages = sseMessages(clone.text);
    expect(messages.at(-1)).toMatchObject({ id: 21, result: { structuredContent: { source_volume_id: source.id, status: 'available' } } });
    const progress = messages.slice(0, -1);
    expect(progress.length).toBeGreaterThan(0);
    for (const message of progress) expect(message).toMatchObject({ method: 'notifications/progress', params: { progressToken: 'clone-progress' } });
  });

  it('leaves batches to the SDK (SSE, one answer per request)', async () => {
    const batch = await post(server.url, [toolCall(31, 'get_stats', { backend: 'files' }), toolCall(32, 'list_volumes', {})], headers);
    expect(batch.status).toBe(200);
    expect(batch.type).toBe('text/event-stream');
    expect(
      sseMessages(batch.text)
        .map((message) => message.id)
        .sort(),
    ).toEqual([31, 32]);
  });

  it('refuses a bad Accept (406), Content-Type (415) and Mcp-Protocol-Version (400) exactly as the SDK does', async () => {
    const cases: Array<[number, Record<string, string>]> = [
      [406, { Accept: 'application/json' }],
      [406, { Accept: 'text/event-stream' }],
      [415, { 'Content-Type': 'text/plain' }],
      [415, { 'Content-Type': 'application/jsonp' }],
      [400, { 'Mcp-Protocol-Version': '1999-01-01' }],
    ];
    for (const [status, changed] of cases) {
      // Without a progress token the fast path answers; with one, the SDK's transport does.
      const fast = await post(server.url, toolCall(41, 'get_stats', { backend: 'files' }), { ...headers, ...changed });
      const sdk = await post(server.url, toolCall(41, 'get_stats', { backend: 'files' }, 'p'), { ...headers, ...changed });
      expect(fast.status, JSON.stringify(changed)).toBe(status);
      expect(fast.type).toBe('application/json');
      expect([sdk.status, sdk.type]).toEqual([fast.status, fast.type]);
      expect(JSON.parse(fast.text)).toEqual(JSON.parse(sdk.text));
      expect(JSON.parse(fast.text)).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32000 } });
    }
    // A protocol version the SDK supports is served.
    expect((await post(server.url, toolCall(42, 'get_stats', { backend: 'files' }), { ...headers, 'Mcp-Protocol-Version': '2025-03-26' })).status).toBe(200);
  });

  it("answers 404 to another token's use of the session, and to an unknown session", async () => {
    const borrowed = await post(server.url, toolCall(51, 'list_volumes', {}), { ...headers, Authorization: `Bearer ${OTHER}` });
    expect(borrowed.status).toBe(404);
    expect(JSON.parse(borrowed.text)).toMatchObject({ error: { code: -32001, message: 'Session not found' } });
    const unknown = await post(server.url, toolCall(52, 'list_volumes', {}), { ...headers, 'Mcp-Session-Id': '00000000-0000-4000-8000-000000000000' });
    expect(unknown.status).toBe(404);
  });

  it('serves the SDK client end to end: tools, calls, errors', async () => {
    const client = new Client({ name: 'fast-path-sdk', version: '1' });
    const transport = new StreamableHTTPClientTransport(new URL(server.url), { requestInit: { headers: { Authorization: `Bearer ${ADMIN}` } } });
    await client.connect(transport);
    try {
      const { tools } = await client.listTools();
      expect(tools.some((tool) => tool.name === 'create_volume')).toBe(true);
      const made = (await client.callTool({ name: 'create_volume', arguments: { backend: 'files', size: 1, name: 'by-sdk' } })) as any;
      expect(made.isError, made.content?.[0]?.text).not.toBe(true);
      expect(made.structuredContent).toMatchObject({ name: 'by-sdk', status: 'available' });
      const missing = (await client.callTool({ name: 'get_volume', arguments: { volume_id: '00000000-0000-4000-8000-000000000000' } })) as any;
      expect(missing.isError).toBe(true);
      expect(missing.content[0].text).toMatch(/^NOT_FOUND: /);
      await expect(client.getPrompt({ name: 'no-such-prompt' })).rejects.toThrow(/no-such-prompt/);
      await client.ping();
      // Progress still reaches an SDK client that asks for it.
      const updates: unknown[] = [];
      const clone = (await client.callTool({ name: 'create_volume', arguments: { source_volume_id: made.structuredContent.id } }, undefined, {
        onprogress: (update) => updates.push(update),
      })) as any;
      expect(clone.structuredContent).toMatchObject({ status: 'available' });
      expect(updates.length).toBeGreaterThan(0);
    } finally {
      await transport.terminateSession();
      await client.close();
    }
  });
});

describe('serve --http, fast-path calls that are cancelled or left', () => {
  let server: HttpServerProcess;
  let headers: Record<string, string>;
  let sourceId: string;
  beforeAll(async () => {
    // A cp that takes 2 s before copying: time to cancel a clone, or to walk away from it.
    const bin = join(root, 'slow-cp');
    mkdirSync(bin, { recursive: true });
    const realCp = execFileSync('sh', ['-c', 'command -v cp'], { encoding: 'utf8' }).trim();
    writeFileSync(join(bin, 'cp'), `#!/bin/sh\nsleep 2\nexec ${realCp} "$@"\n`);
    chmodSync(join(bin, 'cp'), 0o755);
    server = await startServer('slow', { PATH: `${bin}:${process.env.PATH}` });
    headers = await openSession(server.url, ADMIN);
    sourceId = JSON.parse((await post(server.url, toolCall(1, 'create_volume', { backend: 'files', size: 1 }), headers)).text).result.structuredContent.id;
  });
  afterAll(async () => {
    await server.stop();
  });

  const clones = async () =>
    JSON.parse((await post(server.url, toolCall(2, 'list_volumes', {}), headers)).text).result.structuredContent.volumes.filter(
      (volume: { source_volume_id?: string }) => volume.source_volume_id === sourceId,
    ) as Array<{ id: string; status: string; status_reason?: string }>;

  it('stops a call on notifications/cancelled: its HTTP answer ends empty, the copy is stopped', async () => {
    const call = post(server.url, toolCall(100, 'create_volume', { source_volume_id: sourceId }), headers);
    await until('the clone to start', async () => ((await clones()).length > 0 ? true : undefined));
    const cancel = await post(server.url, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 100, reason: 'test' } }, headers);
    expect(cancel.status).toBe(202);
    const answer = await call;
    // No answer to a cancelled request (MCP): an SSE stream without events, ended.
    expect(answer.status).toBe(200);
    expect(answer.type).toBe('text/event-stream');
    expect(answer.text).toBe('');
    const [clone] = await until('the clone to end in error', async () => {
      const found = await clones();
      return found[0]?.status === 'error' ? found : undefined;
    });
    expect(clone.status_reason).toMatch(/cancelled by the client/);
    expect(await inFlight(server)).toBe(0);
    expect((await post(server.url, toolCall(101, 'delete_volume', { volume_id: clone.id }), headers)).status).toBe(200);
  });

  it('lets a client go away before its answer: the call is no longer counted, finishes, and its answer is dropped', async () => {
    let gone!: () => void;
    const closed = new Promise<void>((resolve) => (gone = resolve));
    const { hostname, port } = new URL(server.url);
    const body = JSON.stringify(toolCall(200, 'create_volume', { source_volume_id: sourceId }));
    const req = httpRequest({
      hostname,
      port,
      path: '/mcp',
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers },
    });
    req.on('error', () => gone());
    req.on('close', () => gone());
    req.end(body);
    await until('the clone to start', async () => ((await clones()).length > 0 ? true : undefined));
    expect(await inFlight(server)).toBe(1);
    req.destroy();
    await closed;
    expect(await until('the call to be no longer in flight', async () => ((await inFlight(server)) === 0 ? 0 : undefined))).toBe(0);
    const [clone] = await until('the clone to be available', async () => {
      const found = await clones();
      return found[0]?.status === 'available' ? found : undefined;
    });
    expect(clone.status).toBe('available');
    await until('the dropped answer to be logged', async () =>
      /the client went away before the answer to request 200: the answer is dropped/.test(server.stderr()) ? true : undefined,
    );
    // The session serves on.
    const stats = await post(server.url, toolCall(201, 'get_stats', { backend: 'files' }), headers);
    expect([stats.status, stats.type]).toEqual([200, 'application/json']);
  });
});

describe('the fast-path transport alone (messages no tool of ours sends)', () => {
  let http: NodeHttpServer;
  let url: string;
  let transport: FastJsonHttpTransport;
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));

  beforeAll(async () => {
    transport = new FastJsonHttpTransport({ sessionIdGenerator: () => 'session-under-test' });
    const mcp = new Server({ name: 'fast-path-unit', version: '1' }, { capabilities: { logging: {} } });
    mcp.fallbackRequestHandler = async (request, extra) => {
      if (request.method === 'test/log') {
        await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data: 'tied to the call' } });
        return { logged: true };
      }
      if (request.method === 'test/hold') await held;
      return {};
    };
    await mcp.connect(transport);
    http = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => void transport.handleRequest(req, res, chunks.length > 0 ? JSON.parse(Buffer.concat(chunks).toString()) : undefined));
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
    const opened = await post(
      url,
      { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: VERSION, capabilities: {}, clientInfo: { name: 'unit', version: '1' } } },
      {},
    );
    expect(opened.session).toBe('session-under-test');
  });
  afterAll(async () => {
    release();
    await transport.close();
    http.closeAllConnections();
    http.close();
  });

  const session = { 'Mcp-Session-Id': 'session-under-test', 'Mcp-Protocol-Version': VERSION };

  it('sends a notification tied to a call answered in JSON on the GET stream', async () => {
    const stream = await new Promise<IncomingMessage>((resolve, reject) => {
      const { hostname, port } = new URL(url);
      httpRequest({ hostname, port, path: '/mcp', method: 'GET', headers: { Accept: 'text/event-stream', ...session } }, resolve)
        .on('error', reject)
        .end();
    });
    expect(stream.headers['content-type']).toBe('text/event-stream');
    let received = '';
    const notified = new Promise<void>((resolve) =>
      stream.on('data', (chunk: Buffer) => {
        received += chunk.toString();
        if (received.includes('tied to the call')) resolve();
      }),
    );
    const answer = await post(url, { jsonrpc: '2.0', id: 5, method: 'test/log' }, session);
    expect([answer.status, answer.type]).toEqual([200, 'application/json']);
    expect(JSON.parse(answer.text)).toEqual({ jsonrpc: '2.0', id: 5, result: { logged: true } });
    await notified;
    expect(sseMessages(received)).toContainEqual({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'tied to the call' } });
    stream.destroy();
  });

  it('answers calls under way with a JSON-RPC error when the session closes', async () => {
    const call = post(url, { jsonrpc: '2.0', id: 6, method: 'test/hold' }, session);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await transport.close();
    const answer = await call;
    expect([answer.status, answer.type]).toEqual([200, 'application/json']);
    expect(JSON.parse(answer.text)).toMatchObject({
      jsonrpc: '2.0',
      id: 6,
      error: { code: -32000, message: expect.stringMatching(/^the session ended .* before this call was answered/) },
    });
    // Closed: new requests get the SDK's 404.
    expect((await post(url, { jsonrpc: '2.0', id: 7, method: 'ping' }, session)).status).toBe(404);
  });
});
