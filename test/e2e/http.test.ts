import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startHttpServerProcess, type HttpServerProcess } from '../helpers/http-server.js';
import { BIN, REPO_ROOT } from '../helpers/server.js';

/**
 * `cinderlib-mcp serve --http` (contract section 10) as a real process, spoken to with the SDK's
 * own StreamableHTTPClientTransport and with plain HTTP requests: bearer tokens (401 with
 * WWW-Authenticate: Bearer), read-only tokens, Origin validation (403), the 4 MiB body limit
 * (413), /healthz, refusing a non-loopback bind without tokens, idle sessions ending, and no token
 * ever on stderr (the server runs at debug level, so every request line is logged). Loopback only.
 * `npm run build` must have run.
 */

const ADMIN_TOKEN = 'admin-token-3f9a1c7e5b2d4a60';
const READER_TOKEN = 'reader-token-8c1e2f4a6b9d0e37';
const ALLOWED_ORIGIN = 'https://console.example.com';

let root: string;
const started: HttpServerProcess[] = [];

function writeConfig(name: string, global: Record<string, unknown>): string {
  const path = join(root, `${name}.yaml`);
  writeFileSync(
    path,
    stringify({
      global: { persistence_config: { storage: 'memory' }, ...global },
      backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, `${name}-volumes`) }],
    }),
  );
  return path;
}

function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('CINDERLIB_MCP_')) env[key] = value;
  return { ...env, XDG_DATA_HOME: join(root, 'data'), CINDERLIB_MCP_LOG_LEVEL: 'debug', ...extra };
}

/** Starts `serve --http --port 0` (at debug level) and waits for the line naming its URL. */
async function startHttpServer(configPath: string, extraArgs: string[] = [], env: Record<string, string> = {}): Promise<HttpServerProcess> {
  const server = await startHttpServerProcess(configPath, childEnv(env), extraArgs);
  started.push(server);
  return server;
}

/** Runs the CLI to its end (for start-up refusals). */
function runToExit(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

async function connect(url: string, token?: string, name = 'http-tests'): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(url), token ? { requestInit: { headers: { Authorization: `Bearer ${token}` } } } : {});
  const client = new Client({ name, version: '1.0.0' });
  await client.connect(transport);
  return { client, transport };
}

const INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw-http-tests', version: '1.0.0' } },
};

/** A POST to /mcp with plain fetch. */
function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** A POST whose body is streamed in chunks with no Content-Length, answered status and body. */
function postChunked(url: string, chunks: number, chunkBytes: number, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'Transfer-Encoding': 'chunked', ...headers },
    });
    req.once('response', (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.once('error', reject);
    });
    req.once('error', (error) => reject(error));
    const chunk = Buffer.alloc(chunkBytes, 'a');
    let sent = 0;
    const writeMore = () => {
      while (sent < chunks) {
        sent++;
        if (!req.write(chunk)) return void req.once('drain', writeMore);
      }
      req.end();
    };
    req.write('"');
    writeMore();
  });
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-http-'));
});

afterAll(async () => {
  await Promise.all(started.map((server) => server.stop()));
  rmSync(root, { recursive: true, force: true });
});

describe('serve --http with bearer tokens', () => {
  let server: HttpServerProcess;
  beforeAll(async () => {
    const config = writeConfig('tokens', {
      http_tokens: [
        { name: 'admin-console', token: ADMIN_TOKEN },
        { name: 'dashboards', token: READER_TOKEN, read_only: true },
      ],
      http_allowed_origins: [ALLOWED_ORIGIN],
      audit_log: join(root, 'audit.jsonl'),
    });
    server = await startHttpServer(config);
  });

  it('serves on loopback at /mcp', () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
  });

  it('runs a full tool call with a good token (the SDK client)', async () => {
    const { client } = await connect(server.url, ADMIN_TOKEN);
    const created = (await client.callTool({ name: 'create_volume', arguments: { backend: 'files', size: 1, name: 'over-http' } })) as any;
    expect(created.isError, created.content?.[0]?.text).not.toBe(true);
    expect(created.structuredContent).toMatchObject({ name: 'over-http', size: 1, status: 'available', backend: 'files' });
    const fetched = (await client.callTool({ name: 'get_volume', arguments: { volume_id: created.structuredContent.id } })) as any;
    expect(fetched.structuredContent.id).toBe(created.structuredContent.id);
    const tools = await client.listTools();
    expect(tools.tools.some((tool) => tool.name === 'delete_volume')).toBe(true);
    await client.close();
  });

  it('answers 401 with WWW-Authenticate: Bearer without a token, even on loopback', async () => {
    const response = await post(server.url, INITIALIZE);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
    const body = (await response.json()) as any;
    expect(body).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: expect.any(Number) } });
    expect(body.error.message).toMatch(/bearer token/i);
    // The SDK client fails to connect too.
    await expect(connect(server.url)).rejects.toThrow();
  });

  it('answers 401 to a wrong token and to a malformed Authorization header', async () => {
    const wrong = await post(server.url, INITIALIZE, { Authorization: `Bearer ${ADMIN_TOKEN}x` });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
    const basic = await post(server.url, INITIALIZE, { Authorization: `Basic ${Buffer.from(`u:${ADMIN_TOKEN}`).toString('base64')}` });
    expect(basic.status).toBe(401);
    await expect(connect(server.url, 'not-a-token-of-this-server')).rejects.toThrow();
  });

  it('shows a read-only token only the read tools and refuses it a mutating call', async () => {
    const { client } = await connect(server.url, READER_TOKEN);
    const { tools } = await client.listTools();
    expect(tools.length).toBeGreaterThan(0);
    for (const tool of tools) expect(tool.annotations?.readOnlyHint, tool.name).toBe(true);
    expect(tools.some((tool) => tool.name === 'list_volumes')).toBe(true);
    expect(tools.some((tool) => tool.name === 'create_volume')).toBe(false);
    const refused = (await client.callTool({ name: 'create_volume', arguments: { backend: 'files', size: 1 } })) as any;
    expect(refused.isError).toBe(true);
    expect(refused.content[0].text).toMatch(/^READ_ONLY: create_volume is disabled: the token "dashboards" is read-only \(its http_tokens entry has read_only: true\)/);
    const listed = (await client.callTool({ name: 'list_volumes', arguments: {} })) as any;
    expect(listed.isError).not.toBe(true);
    expect(listed.structuredContent.volumes.some((volume: any) => volume.name === 'over-http')).toBe(true);
    await client.close();
  });

  it('names the token in the audit records of mutating calls, refused or not', () => {
    const records = readFileSync(join(root, 'audit.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(records).toContainEqual(expect.objectContaining({ client: 'admin-console', tool: 'create_volume', outcome: 'ok' }));
    expect(records).toContainEqual(expect.objectContaining({ client: 'dashboards', tool: 'create_volume', outcome: 'error' }));
    expect(JSON.stringify(records)).not.toContain(ADMIN_TOKEN);
  });

  it("does not let one token use another token's session", async () => {
    const { client, transport } = await connect(server.url, ADMIN_TOKEN);
    const borrowed = await post(
      server.url,
      { jsonrpc: '2.0', id: 2, method: 'tools/list' },
      {
        Authorization: `Bearer ${READER_TOKEN}`,
        'Mcp-Session-Id': transport.sessionId!,
        'Mcp-Protocol-Version': '2025-06-18',
      },
    );
    expect(borrowed.status).toBe(404);
    await client.close();
  });

  it('refuses a foreign Origin (403) and serves no Origin, its own origin and an allowed one', async () => {
    const auth = { Authorization: `Bearer ${ADMIN_TOKEN}` };
    const evil = await post(server.url, INITIALIZE, { ...auth, Origin: 'http://evil.example' });
    expect(evil.status).toBe(403);
    expect(((await evil.json()) as any).error.message).toMatch(/http_allowed_origins/);
    // A DNS-rebinding page: its origin carries the server's port, but not its address.
    const port = new URL(server.url).port;
    expect((await post(server.url, INITIALIZE, { ...auth, Origin: `http://evil.example:${port}` })).status).toBe(403);
    expect((await post(server.url, INITIALIZE, { ...auth, Origin: 'null' })).status).toBe(403);
    for (const origin of [undefined, server.base, `http://localhost:${port}`, ALLOWED_ORIGIN]) {
      const response = await post(server.url, INITIALIZE, { ...auth, ...(origin ? { Origin: origin } : {}) });
      expect(response.status, String(origin)).toBe(200);
      expect(response.headers.get('mcp-session-id')).toBeTruthy();
      await response.body?.cancel();
    }
  });

  it('answers a CORS preflight from an allowed origin and refuses one from another', async () => {
    const preflight = (origin: string) =>
      fetch(server.url, { method: 'OPTIONS', headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' } });
    const allowed = await preflight(ALLOWED_ORIGIN);
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get('access-control-allow-origin')).toBe(ALLOWED_ORIGIN);
    expect(allowed.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
    expect((await preflight('http://evil.example')).status).toBe(403);
    const served = await post(server.url, INITIALIZE, { Authorization: `Bearer ${ADMIN_TOKEN}`, Origin: ALLOWED_ORIGIN });
    expect(served.headers.get('access-control-allow-origin')).toBe(ALLOWED_ORIGIN);
    expect(served.headers.get('access-control-expose-headers')).toMatch(/Mcp-Session-Id/);
    await served.body?.cancel();
  });

  it('answers 413 to a body over 4 MiB, declared or streamed, and keeps serving', async () => {
    const auth = { Authorization: `Bearer ${ADMIN_TOKEN}` };
    const big = JSON.stringify({ ...INITIALIZE, params: { ...INITIALIZE.params, padding: 'x'.repeat(5 * 1024 * 1024) } });
    const declared = await post(server.url, big, auth);
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as any).error.message).toMatch(/4 MiB/);
    // No Content-Length: counted as it arrives.
    const streamed = await postChunked(server.url, 80, 64 * 1024, auth);
    expect(streamed.status).toBe(413);
    const { client } = await connect(server.url, ADMIN_TOKEN);
    expect((await client.listTools()).tools.length).toBeGreaterThan(0);
    await client.close();
  });

  it('answers /healthz with 200 {"status":"ok"} without auth', async () => {
    const response = await fetch(`${server.base}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });

  it('answers 404 on other paths', async () => {
    expect((await fetch(`${server.base}/other`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } })).status).toBe(404);
  });

  it('never writes a token to stderr', async () => {
    expect(server.stderr()).toMatch(/POST \/mcp/); // request lines are logged at debug
    for (const token of [ADMIN_TOKEN, READER_TOKEN]) {
      expect(server.stderr()).not.toContain(token);
      expect(server.stderr()).not.toContain(token.slice(0, 12));
    }
    expect(server.stderr()).not.toMatch(/authorization/i);
  });

  it('stops on SIGTERM with exit code 0', async () => {
    expect(await server.stop()).toBe(0);
    expect(server.stderr()).toMatch(/shutting down \(SIGTERM\)/);
  });
});

describe('serve --http without tokens', () => {
  it('serves loopback without auth, naming the client from initialize', async () => {
    const server = await startHttpServer(writeConfig('open', {}));
    const { client } = await connect(server.url, undefined, 'open-loopback-client');
    const created = (await client.callTool({ name: 'create_volume', arguments: { backend: 'files', size: 1 } })) as any;
    expect(created.isError, created.content?.[0]?.text).not.toBe(true);
    await client.close();
    expect(server.stderr()).toMatch(/session [0-9a-f]{8} opened by "open-loopback-client"/);
    await server.stop();
  });

  it('refuses to bind to 0.0.0.0 and exits 1 with a clear message', async () => {
    const { code, stderr } = await runToExit(['serve', '--http', '--host', '0.0.0.0', '--port', '0', '--config', writeConfig('exposed', {})]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/refusing to serve MCP over HTTP on 0\.0\.0\.0/);
    expect(stderr).toMatch(/http_tokens/);
  });

  it('refuses a token shorter than 16 characters (config error, exit 1) without printing it', async () => {
    const { code, stderr } = await runToExit(['serve', '--http', '--port', '0', '--config', writeConfig('short', { http_tokens: [{ name: 'x', token: 'tiny-secret' }] })]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/at least 16 characters/);
    expect(stderr).not.toContain('tiny-secret');
  });

  it('rejects --port without a number and --host without --http', async () => {
    expect((await runToExit(['serve', '--http', '--port', 'eighty'])).code).toBe(2);
    expect((await runToExit(['serve', '--host', '127.0.0.1'])).code).toBe(2);
  });
});

describe('serve --http idle sessions', () => {
  it('ends a session idle longer than http_session_idle_seconds; its id then gets 404', async () => {
    const server = await startHttpServer(writeConfig('idle', { http_session_idle_seconds: 1 }));
    const { client, transport } = await connect(server.url);
    const sessionId = transport.sessionId!;
    expect(sessionId).toBeTruthy();
    // Activity keeps it alive.
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect((await client.listTools()).tools.length).toBeGreaterThan(0);
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const stale = await post(server.url, { jsonrpc: '2.0', id: 9, method: 'tools/list' }, { 'Mcp-Session-Id': sessionId, 'Mcp-Protocol-Version': '2025-06-18' });
    expect(stale.status).toBe(404);
    expect(server.stderr()).toMatch(new RegExp(`session ${sessionId.slice(0, 8)} ended \\(idle`));
    await client.close().catch(() => undefined);
    await server.stop();
  });
});

describe('serve --http when its log reader goes away (contract section 11)', () => {
  it('keeps serving after stderr is closed, and exits 0 on SIGTERM', async () => {
    // At info level, as `serve --http 2>&1 | head -c 300` runs it: the session lines then hit a closed pipe.
    const child = spawn(process.execPath, [BIN, 'serve', '--http', '--port', '0', '--config', writeConfig('no-reader', {})], {
      cwd: REPO_ROOT,
      env: childEnv({ CINDERLIB_MCP_LOG_LEVEL: 'info' }),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      let stderr = '';
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`server did not start in 30 s; stderr:\n${stderr}`)), 30_000);
        child.stderr.on('data', (chunk: Buffer) => {
          stderr += chunk.toString();
          const match = /serving MCP over HTTP at (http:\/\/\S+\/mcp)/.exec(stderr);
          if (match) {
            clearTimeout(timer);
            resolve(match[1]);
          }
        });
      });
      child.stderr.destroy();
      for (let round = 0; round < 3; round++) {
        const { client } = await connect(url, undefined, `after-reader-left-${round}`);
        expect((await client.listTools()).tools.length).toBeGreaterThan(0);
        await client.close();
      }
      expect(child.exitCode).toBeNull();
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});

describe('serve --http under load (contract section 16)', () => {
  const toolsList = (url: string, sessionId: string, token: string) =>
    post(url, { jsonrpc: '2.0', id: 7, method: 'tools/list' }, { Authorization: `Bearer ${token}`, 'Mcp-Session-Id': sessionId, 'Mcp-Protocol-Version': '2025-06-18' });

  it("caps a token's sessions at http_sessions_per_token, ending its oldest idle one; other tokens are not touched", async () => {
    const server = await startHttpServer(
      writeConfig('per-token', {
        http_tokens: [
          { name: 'greedy', token: ADMIN_TOKEN },
          { name: 'neighbour', token: READER_TOKEN, read_only: true },
        ],
        http_sessions_per_token: 3,
      }),
    );
    const greedy = [];
    for (let i = 0; i < 3; i++) greedy.push(await connect(server.url, ADMIN_TOKEN, `greedy-${i}`));
    const neighbour = await connect(server.url, READER_TOKEN, 'neighbour-0');
    const oldest = greedy[0].transport.sessionId!;
    // A fourth session of the same token: the oldest idle one ends to make room.
    greedy.push(await connect(server.url, ADMIN_TOKEN, 'greedy-3'));
    const stale = await toolsList(server.url, oldest, ADMIN_TOKEN);
    expect(stale.status).toBe(404);
    await stale.body?.cancel();
    for (const { client } of greedy.slice(1)) expect((await client.listTools()).tools.length).toBeGreaterThan(0);
    expect(server.stderr()).toMatch(new RegExp(`session ${oldest.slice(0, 8)} ended \\(the token "greedy" opened a new one beyond global.http_sessions_per_token \\(3\\)`));
    // The other token still opens its own three, and the first of them is still there.
    const more = [];
    for (let i = 1; i < 3; i++) more.push(await connect(server.url, READER_TOKEN, `neighbour-${i}`));
    expect((await neighbour.client.listTools()).tools.length).toBeGreaterThan(0);
    for (const { client } of greedy.slice(1)) expect((await client.listTools()).tools.length).toBeGreaterThan(0);
    for (const { client } of [...greedy.slice(1), neighbour, ...more]) await client.close();
    await greedy[0].client.close().catch(() => undefined);
    expect(await server.stop()).toBe(0);
  });

  it('answers 503 with Retry-After while stalled bodies hold the body budget, and drops a stalled body after the stall time', async () => {
    const budget = 1024 * 1024;
    const server = await startHttpServer(writeConfig('budget', {}), [], {
      CINDERLIB_MCP_HTTP_BODY_BUDGET_BYTES: String(budget),
      CINDERLIB_MCP_HTTP_BODY_STALL_MS: '1500',
    });
    const { hostname, port } = new URL(server.url);
    // A client that announces 3 MiB, sends exactly the budget's worth, then goes quiet.
    const stalled = tcpConnect(Number(port), hostname);
    const closed = new Promise<number>((resolve) => stalled.once('close', () => resolve(Date.now())));
    let answered = '';
    stalled.on('data', (chunk: Buffer) => (answered += chunk.toString()));
    stalled.on('error', () => undefined);
    await new Promise<void>((resolve) => stalled.once('connect', () => resolve()));
    stalled.write(
      `POST /mcp HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: ${3 * budget}\r\n\r\n`,
    );
    stalled.write(Buffer.alloc(budget, 'a'));
    const stalledSince = Date.now();
    let refused: Response | undefined;
    for (let attempt = 0; attempt < 40 && !refused; attempt++) {
      const response = await post(server.url, INITIALIZE);
      if (response.status === 503) refused = response;
      else {
        await response.body?.cancel();
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    }
    expect(refused?.status).toBe(503);
    expect(refused!.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(((await refused!.json()) as any).error.message).toMatch(/request bodies being received/);
    // The stalled connection is cut (no answer) after the stall time, and its budget is free again.
    const cutAt = await Promise.race([closed, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 10_000))]);
    expect(cutAt).toBeGreaterThan(0);
    expect(cutAt - stalledSince).toBeGreaterThanOrEqual(1000);
    expect(answered).toBe('');
    const after = await post(server.url, INITIALIZE);
    expect(after.status).toBe(200);
    await after.body?.cancel();
    expect(await server.stop()).toBe(0);
  });

  it('reads a body that arrives in hundreds of tiny packets whole', async () => {
    const server = await startHttpServer(writeConfig('trickle', {}));
    const { hostname, port } = new URL(server.url);
    const body = JSON.stringify({ ...INITIALIZE, params: { ...INITIALIZE.params, clientInfo: { name: `trickle-${'x'.repeat(12_000)}`, version: '1' } } });
    const socket = tcpConnect(Number(port), hostname);
    socket.setNoDelay(true);
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    socket.write(
      `POST /mcp HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`,
    );
    for (let i = 0; i < body.length; i += 7) {
      socket.write(body.slice(i, i + 7));
      if (i % 70 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    for (let i = 0; i < 200 && !/"serverInfo"/.test(answer); i++) await new Promise((resolve) => setTimeout(resolve, 25));
    socket.destroy();
    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(answer).toMatch(/"serverInfo"/);
    expect(await server.stop()).toBe(0);
  });
});
