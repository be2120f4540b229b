import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startHttpServerProcess } from '../helpers/http-server.js';
import { BIN, REPO_ROOT } from '../helpers/server.js';

/**
 * A cached call's round trip (get_stats on a file backend, memory store), loopback, median of 300
 * after 50 to warm up; figures, not assertions:
 * (a) plain HTTP/1.1 keep-alive POSTs of the JSON-RPC request to `serve --http`: the server's own latency;
 * (b) the SDK's StreamableHTTPClientTransport on Node's fetch; (c) the same given a node:http keep-alive fetch;
 * (d) the SDK's stdio client; (e) a plain line client on the stdio pipe, one JSON-RPC line out, one back.
 * Run alone after `npm run build`: node dist/test/bench/http-call.js [path/to/bin/cinderlib-mcp.js]
 * (the argument lets an older build be measured the same way).
 */
const RUNS = 300;
const WARM_UP = 50;
const PROTOCOL_VERSION = '2025-06-18';
const CALL = { name: 'get_stats', arguments: { backend: 'bench' } };

export async function benchHttpCall(report: (what: string, figure: string) => void, bin = BIN): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-bench-http-call-'));
  const configPath = join(work, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      global: { persistence_config: { storage: 'memory' } },
      backends: [{ volume_backend_name: 'bench', volume_driver: 'file', volumes_dir: join(work, 'volumes') }],
    }),
  );
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('CINDERLIB_MCP_')) env[key] = value;
  Object.assign(env, { XDG_DATA_HOME: join(work, 'data'), CINDERLIB_MCP_LOG_LEVEL: 'info' });
  const agent = new Agent({ keepAlive: true });
  try {
    const server = await startHttpServerProcess(configPath, env, [], bin);
    let plain: number, sdkFetch: number, sdkNodeHttp: number;
    try {
      plain = await plainHttp(server.url, agent);
      sdkFetch = await sdkClient(new StreamableHTTPClientTransport(new URL(server.url)));
      sdkNodeHttp = await sdkClient(new StreamableHTTPClientTransport(new URL(server.url), { fetch: nodeHttpFetch(agent) }));
    } finally {
      await server.stop();
    }
    const stdioEnv = { ...env, CINDERLIB_MCP_LOG_LEVEL: 'warn' };
    const sdkStdio = await sdkClient(new StdioClientTransport({ command: process.execPath, args: [bin, '--config', configPath], env: stdioEnv, cwd: REPO_ROOT, stderr: 'ignore' }));
    const lines = await lineClient(bin, configPath, stdioEnv);
    report('(a) get_stats cached, plain HTTP/1.1 keep-alive client (median; goal <= 1 ms)', ms(plain));
    report('(b) get_stats cached, SDK HTTP client on Node fetch (median)', ms(sdkFetch));
    report('(c) get_stats cached, SDK HTTP client on node:http keep-alive (median)', ms(sdkNodeHttp));
    report('(d) get_stats cached, SDK stdio client (median)', ms(sdkStdio));
    report('(e) get_stats cached, plain line client on stdio (median)', ms(lines));
    report('(a)/(e) server over HTTP / over stdio, plain clients', `${(plain / lines).toFixed(2)}x`);
    report('(b)/(d) SDK client over HTTP / over stdio', `${(sdkFetch / sdkStdio).toFixed(2)}x`);
  } finally {
    agent.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

const ms = (n: number) => `${n.toFixed(3)} ms`;

/** The median of RUNS timings of `task`, after WARM_UP untimed runs. */
async function median(task: () => Promise<void>): Promise<number> {
  for (let i = 0; i < WARM_UP; i++) await task();
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now();
    await task();
    samples.push(performance.now() - start);
  }
  return samples.sort((a, b) => a - b)[Math.floor(RUNS / 2)];
}

async function sdkClient(transport: StreamableHTTPClientTransport | StdioClientTransport): Promise<number> {
  const client = new Client({ name: 'bench-http-call', version: '1' });
  await client.connect(transport);
  try {
    return await median(async () => {
      const result = await client.callTool(CALL);
      if (result.isError) throw new Error(`get_stats: ${JSON.stringify(result.content)}`);
    });
  } finally {
    await client.close();
  }
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function post(url: URL, agent: Agent, headers: Record<string, string>, body: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: 'POST',
        agent,
        headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'Content-Length': String(Buffer.byteLength(body)), ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
        res.once('error', reject);
      },
    );
    req.once('error', reject);
    req.end(body);
  });
}

/** (a): initialize, then the call POSTed again and again on one keep-alive connection. */
async function plainHttp(url: string, agent: Agent): Promise<number> {
  const target = new URL(url);
  const opened = await post(
    target,
    agent,
    {},
    JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'bench-plain', version: '1' } } }),
  );
  const session = opened.headers['mcp-session-id'];
  if (opened.status !== 200 || typeof session !== 'string') throw new Error(`initialize over HTTP: ${opened.status} ${opened.body}`);
  const headers = { 'Mcp-Session-Id': session, 'Mcp-Protocol-Version': PROTOCOL_VERSION };
  await post(target, agent, headers, JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
  let id = 0;
  const figure = await median(async () => {
    const answer = await post(target, agent, headers, JSON.stringify({ jsonrpc: '2.0', id: ++id, method: 'tools/call', params: CALL }));
    if (answer.status !== 200 || !answer.body.includes('"structuredContent"')) throw new Error(`get_stats over HTTP: ${answer.status} ${answer.body.slice(0, 300)}`);
  });
  await new Promise<void>((resolve) => {
    const req = httpRequest(target, { method: 'DELETE', agent, headers }, (res) => res.resume().once('end', resolve));
    req.once('error', () => resolve());
    req.end();
  });
  return figure;
}

/** A `fetch` for the SDK client on node:http with a keep-alive agent (Node's own fetch costs more per call). */
function nodeHttpFetch(agent: Agent): (url: string | URL, init?: RequestInit) => Promise<Response> {
  return (url, init = {}) =>
    new Promise((resolve, reject) => {
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((value, name) => (headers[name] = value));
      const body = typeof init.body === 'string' ? init.body : undefined;
      if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
      const req = httpRequest(new URL(url), { method: init.method ?? 'GET', headers, agent }, (res) => {
        const answerHeaders = new Headers();
        for (const [name, value] of Object.entries(res.headers)) if (value !== undefined) answerHeaders.set(name, Array.isArray(value) ? value.join(', ') : value);
        const status = res.statusCode ?? 0;
        if ((res.headers['content-type'] ?? '').includes('text/event-stream')) {
          return resolve(new Response(Readable.toWeb(res) as ReadableStream<Uint8Array>, { status, headers: answerHeaders }));
        }
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.once('end', () => resolve(new Response(status === 202 || status === 204 ? null : Buffer.concat(chunks), { status, headers: answerHeaders })));
        res.once('error', reject);
      });
      req.once('error', reject);
      // The SDK passes one signal to every request: the listener goes with the request.
      const abort = () => req.destroy(new Error('aborted'));
      init.signal?.addEventListener('abort', abort, { once: true });
      req.once('close', () => init.signal?.removeEventListener('abort', abort));
      req.end(body);
    });
}

/** (e): the stdio server spoken to in lines: one request written, its answer line read. */
async function lineClient(bin: string, configPath: string, env: Record<string, string>): Promise<number> {
  const child = spawn(process.execPath, [bin, '--config', configPath], { cwd: REPO_ROOT, env, stdio: ['pipe', 'pipe', 'ignore'] });
  const lines = createInterface({ input: child.stdout });
  const waiting = new Map<number, (line: string) => void>();
  lines.on('line', (line) => {
    const id = (JSON.parse(line) as { id?: number }).id;
    if (id !== undefined) waiting.get(id)?.(line);
  });
  const exchange = (id: number, message: object) =>
    new Promise<string>((resolve) => {
      waiting.set(id, (line) => {
        waiting.delete(id);
        resolve(line);
      });
      child.stdin.write(`${JSON.stringify(message)}\n`);
    });
  try {
    await exchange(0, {
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'bench-lines', version: '1' } },
    });
    child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
    let id = 0;
    return await median(async () => {
      const line = await exchange(++id, { jsonrpc: '2.0', id, method: 'tools/call', params: CALL });
      if (!line.includes('"structuredContent"')) throw new Error(`get_stats over stdio: ${line.slice(0, 300)}`);
    });
  } finally {
    lines.close();
    child.stdin.end();
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await benchHttpCall((what, figure) => process.stdout.write(`${what.padEnd(78)} ${figure}\n`), process.argv[2] ? resolve(process.argv[2]) : BIN);
}
