import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { BoundedStdioTransport } from '../../src/transport/stdio.js';
import { BIN, REPO_ROOT } from '../helpers/server.js';

/**
 * The stdio transport driven with raw JSON-RPC lines, as a client that misbehaves would: closing
 * its input or signalling mid-call, sending frames too big or not JSON, writing without reading,
 * nesting arguments deeply. The built server runs as a child process (npm run build first).
 */
const root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-transport-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Answer {
  id: string | number | null;
  result?: { content: Array<{ type: string; text: string }>; structuredContent?: any; isError?: boolean };
  error?: { code: number; message: string };
}

let configCount = 0;
function writeConfig(): string {
  const dir = join(root, `server-${++configCount}`);
  const path = join(dir, 'config.json');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    path,
    JSON.stringify({
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(dir, 'meta.sqlite')}` } },
      backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(dir, 'volumes'), max_over_subscription_ratio: 1000 }],
    }),
  );
  return path;
}

/** The server as a child process speaking raw lines; answers are collected by id. */
class RawServer {
  readonly child: ChildProcessWithoutNullStreams;
  readonly answers = new Map<string | number | null, Answer[]>();
  stderr = '';
  exitCode: number | null | undefined;
  private pending: Buffer = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  private readonly exited: Promise<number | null>;

  constructor(configPath: string, env: Record<string, string> = {}) {
    const childEnv: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('CINDERLIB_MCP_')) childEnv[key] = value;
    Object.assign(childEnv, { XDG_DATA_HOME: join(root, 'xdg'), ...env });
    this.child = spawn(process.execPath, [BIN, '--config', configPath], { cwd: REPO_ROOT, env: childEnv });
    this.child.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.child.stdout.on('data', (chunk: Buffer) => this.take(chunk));
    this.child.stdin.on('error', () => undefined); // EPIPE once the server is gone
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve((this.exitCode = code))));
  }

  write(message: object | string): boolean {
    return this.child.stdin.write((typeof message === 'string' ? message : JSON.stringify(message)) + '\n');
  }

  call(id: string | number, name: string, args: unknown): boolean {
    return this.write({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
  }

  async initialize(): Promise<void> {
    this.write({ jsonrpc: '2.0', id: 'init', method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
    await this.answer('init');
    this.write({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }

  /** The first answer with this id; fails after `timeoutMs`. */
  async answer(id: string | number | null, timeoutMs = 30_000): Promise<Answer> {
    await this.until(() => this.answers.has(id), timeoutMs, `no answer for id ${JSON.stringify(id)}`);
    return this.answers.get(id)![0]!;
  }

  async until(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline || this.exitCode !== undefined) {
        if (done()) return;
        throw new Error(`${what} (server ${this.exitCode === undefined ? 'running' : `exited ${this.exitCode}`}); stderr:\n${this.stderr.slice(-2000)}`);
      }
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  async exit(timeoutMs = 60_000): Promise<number | null> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** VmRSS of the server process, MB. */
  rssMb(): number {
    const status = readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
  }

  private take(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let newline: number;
    while ((newline = this.pending.indexOf(10)) !== -1) {
      const line = this.pending.subarray(0, newline).toString('utf8');
      this.pending = this.pending.subarray(newline + 1);
      const message = JSON.parse(line) as Answer; // stdout carries only JSON-RPC
      if (!('id' in message)) continue; // notifications
      const list = this.answers.get(message.id) ?? [];
      list.push(message);
      this.answers.set(message.id, list);
    }
    for (const wake of this.waiters.splice(0)) wake();
  }
}

function toolText(answer: Answer): string {
  expect(answer.error, JSON.stringify(answer.error)).toBeUndefined();
  return answer.result!.content[0]!.text;
}

async function volumesAfterRestart(configPath: string): Promise<Array<{ id: string; status: string }>> {
  const server = new RawServer(configPath);
  await server.initialize();
  server.call('list', 'list_volumes', { limit: 1000 });
  const listed = await server.answer('list');
  server.child.stdin.end();
  expect(await server.exit()).toBe(0);
  return listed.result!.structuredContent.volumes;
}

describe('shutdown answers the calls in flight', () => {
  it('answers a create_volume that arrives just before end of input, and the volume is available after a restart', async () => {
    const configPath = writeConfig();
    const server = new RawServer(configPath);
    await server.initialize();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    server.call('create', 'create_volume', { backend: 'files', size: 1, name: 'last-words' });
    server.child.stdin.end();
    const answer = await server.answer('create');
    const created = JSON.parse(toolText(answer));
    expect(created.status).toBe('available');
    expect(await server.exit()).toBe(0);
    expect(server.stderr).toMatch(/shutting down \(stdin closed\)/);

    const volumes = await volumesAfterRestart(configPath);
    expect(volumes.map((v) => [v.id, v.status])).toEqual([[created.id, 'available']]);
  });

  it('on SIGTERM finishes and answers the calls it started, refuses the rest, leaves no interrupted record, and exits 0', async () => {
    const configPath = writeConfig();
    const server = new RawServer(configPath, { CINDERLIB_MCP_SHUTDOWN_GRACE_MS: '20000' });
    await server.initialize();
    const total = 200;
    for (let i = 0; i < total; i++) server.call(i, 'create_volume', { backend: 'files', size: 1, name: `burst-${i}` });
    await server.until(() => server.answers.size > 1, 30_000, 'no create answered'); // the init answer plus one
    server.child.kill('SIGTERM');
    expect(await server.exit()).toBe(0);
    expect(server.stderr).toMatch(/shutting down \(SIGTERM\)/);
    expect(server.stderr).not.toMatch(/abandoned/);

    const created = new Set<string>();
    let refused = 0;
    for (let i = 0; i < total; i++) {
      const answer = server.answers.get(i)?.[0];
      if (answer?.error) {
        expect(answer.error.message).toMatch(/^BACKEND_UNAVAILABLE: the server is shutting down and did not start this call/);
        refused++;
      } else if (answer) created.add(JSON.parse(toolText(answer)).id);
    }
    expect(created.size).toBeGreaterThan(0);
    expect(created.size + refused).toBeLessThanOrEqual(total); // calls still in the pipe at SIGTERM are never read
    const volumes = await volumesAfterRestart(configPath);
    // Every call the server started was finished and answered: no record the client never heard of, none in error.
    expect(volumes.filter((v) => v.status !== 'available')).toEqual([]);
    expect(new Set(volumes.map((v) => v.id))).toEqual(created);
  });
});

describe('frames the server cannot take', () => {
  it('answers an 11 MiB frame with an error naming the limit and keeps serving', async () => {
    const server = new RawServer(writeConfig());
    await server.initialize();
    const huge = 'x'.repeat(11 * 1024 * 1024);
    server.write(`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"get_volume","arguments":{"volume_id":"${huge}"}},"id":"huge"}`);
    const refused = await server.answer('huge');
    expect(refused.error?.code).toBe(-32600);
    expect(refused.error?.message).toMatch(/exceeds the limit of 10485760 bytes \(10 MiB\)/);

    server.write('this is not json');
    const parseError = await server.answer(null);
    expect(parseError.error?.code).toBe(-32700);
    server.write({ id: 'not-rpc', hello: 'world' });
    expect((await server.answer('not-rpc')).error?.code).toBe(-32600);

    server.write({ jsonrpc: '2.0', id: 'tools', method: 'tools/list' });
    const tools = await server.answer('tools');
    expect(tools.result).toHaveProperty('tools');
    expect(server.exitCode).toBeUndefined();
    server.child.stdin.end();
    expect(await server.exit()).toBe(0);
  });
});

describe('a client that writes without reading', () => {
  it('holds memory flat while it does not read, then answers every call', async () => {
    const server = new RawServer(writeConfig());
    await server.initialize();
    server.call('warm', 'list_volumes', {});
    await server.answer('warm');
    const baselineMb = server.rssMb();

    const total = 40_000;
    let sent = 0;
    let peakMb = baselineMb;
    const sample = setInterval(() => (peakMb = Math.max(peakMb, server.rssMb())), 25);
    server.child.stdout.pause();
    await new Promise<void>((resolve) => {
      const writeMore = () => {
        while (sent < total) {
          if (!server.call(sent++, 'list_volumes', {})) return void server.child.stdin.once('drain', writeMore);
        }
      };
      writeMore();
      // Long enough for an unbounded server to take in every call (about 10,000 a second).
      setTimeout(resolve, 5000);
    });
    const peakWhileNotReadingMb = peakMb;
    const sentWhileNotReading = sent;
    server.child.stdout.resume();
    await server.until(() => server.answers.size >= total + 2, 120_000, `not all ${total} answers arrived`);
    clearInterval(sample);
    server.child.stdin.end();
    expect(await server.exit()).toBe(0);

    // An idle server is about 80 MB (Node, the SDK, SQLite); at most 64 small calls are in flight.
    // Without backpressure every queued call and answer stays in memory: about 5 MB per 1,000
    // calls, over 300 MB for these 40,000 (241 MB for 20,000 and 621 MB for 100,000 were measured).
    expect(peakWhileNotReadingMb - baselineMb, `RSS ${baselineMb.toFixed(0)} -> ${peakWhileNotReadingMb.toFixed(0)} MB`).toBeLessThan(100);
    expect(peakMb, `peak RSS while answering ${peakMb.toFixed(0)} MB`).toBeLessThan(300);
    // The server stopped reading: most calls were still in the client's pipe.
    expect(sentWhileNotReading).toBeLessThan(total);
    for (const id of [0, total / 2, total - 1]) expect(JSON.parse(toolText(server.answers.get(id)![0]!))).toEqual({ volumes: [] });
  }, 180_000);
});

describe('argument edge cases', () => {
  it('answers 10,000-deep nesting and non-object arguments with one-line INVALID_ARGUMENT', async () => {
    const server = new RawServer(writeConfig());
    await server.initialize();
    let deep = '"bottom"';
    for (let i = 0; i < 10_000; i++) deep = `{"a":${deep}}`;
    server.write(`{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{"name":"create_volume","arguments":{"backend":"files","size":1,"name":${deep}}}}`);
    server.write(`{"jsonrpc":"2.0","id":"deep-unknown","method":"tools/call","params":{"name":"list_volumes","arguments":{"nested":${deep}}}}`);
    server.call('string', 'list_volumes', 'all of them');
    server.call('array', 'get_volume', ['a', 'b']);
    server.call('number', 'create_volume', 42);
    server.call('null', 'list_backends', null);

    for (const id of ['deep', 'deep-unknown', 'string', 'array', 'number', 'null']) {
      const answer = await server.answer(id);
      expect(answer.result?.isError, `${id}: ${JSON.stringify(answer).slice(0, 300)}`).toBe(true);
      const text = toolText(answer);
      expect(text, id).toMatch(/^INVALID_ARGUMENT: /);
      expect(text, id).not.toContain('\n');
      expect(text.length, id).toBeLessThan(400);
    }
    expect(toolText(await server.answer('deep'))).toMatch(/name .*got \{"a":\{"a":\{\.\.\.\}\}\}/);
    expect(toolText(await server.answer('string'))).toMatch(/arguments must be an object of named arguments .*got a string "all of them"/);
    expect(toolText(await server.answer('array'))).toMatch(/arguments must be an object .*got an array/);

    // No params: one line naming what tools/call needs. Params that are not an object are not JSON-RPC.
    server.write('{"jsonrpc":"2.0","id":"no-params","method":"tools/call"}');
    server.write('{"jsonrpc":"2.0","id":"string-params","method":"tools/call","params":"list_volumes"}');
    const noParams = await server.answer('no-params');
    expect(noParams.error).toMatchObject({ code: -32602, message: expect.stringMatching(/^(MCP error -32602: )?tools\/call needs params\.name, the name of a tool as a string/) });
    const stringParams = await server.answer('string-params');
    expect(stringParams.error).toMatchObject({ code: -32600, message: expect.stringMatching(/^Invalid Request: not a JSON-RPC 2\.0 message/) });
    for (const answer of [noParams, stringParams]) expect(answer.error?.message).not.toContain('\n');

    server.call('after', 'list_volumes', {});
    expect(JSON.parse(toolText(await server.answer('after')))).toEqual({ volumes: [] });
    server.child.stdin.end();
    expect(await server.exit()).toBe(0);
  });
});

describe('the transport in process', () => {
  function harness(maxInFlight = 2) {
    const input = new PassThrough();
    const output = new PassThrough();
    const transport = new BoundedStdioTransport({ log: createLogger('transport-test'), input, output, maxInFlight });
    const received: unknown[] = [];
    transport.onmessage = (message) => void received.push(message);
    const written = () =>
      output
        .read()
        ?.toString()
        .split('\n')
        .filter(Boolean)
        .map((line: string) => JSON.parse(line));
    return { input, output, transport, received, written };
  }
  const request = (id: number) => JSON.stringify({ jsonrpc: '2.0', id, method: 'ping' }) + '\n';

  it('takes no more than maxInFlight requests until one is answered or cancelled', async () => {
    const { input, transport, received } = harness(2);
    await transport.start();
    input.write(request(1) + request(2) + request(3) + request(4));
    await new Promise((resolve) => setImmediate(resolve));
    expect(received).toHaveLength(2);
    await transport.send({ jsonrpc: '2.0', id: 1, result: {} });
    expect(received).toHaveLength(3);
    // The SDK never answers a cancelled request, so cancelling frees its place too.
    input.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 2 } }) + '\n');
    await new Promise((resolve) => setImmediate(resolve));
    expect(received.map((m) => (m as { id?: number }).id)).toEqual([1, 2, 3, undefined, 4]);
  });

  it('answers what is still running when the grace period ends, with an error naming it', async () => {
    const { input, transport, received, written } = harness();
    await transport.start();
    input.write(request(7));
    await new Promise((resolve) => setImmediate(resolve));
    expect(received).toHaveLength(1);
    const outcome = await transport.finish(50);
    expect(outcome.unanswered).toEqual([7]);
    const [answer] = written();
    expect(answer).toMatchObject({ id: 7, error: { message: expect.stringMatching(/^BACKEND_UNAVAILABLE: the server shut down before this call finished/) } });
  });

  it('recovers the id of an oversized request written id first', async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    const transport = new BoundedStdioTransport({ log: createLogger('transport-test'), input, output, maxFrameBytes: 100 });
    await transport.start();
    input.write(`{"jsonrpc":"2.0","id":"first","method":"tools/call","params":{"name":"x","arguments":{"a":"${'y'.repeat(500)}"}}}\n`);
    await new Promise((resolve) => setImmediate(resolve));
    const answer = JSON.parse(output.read().toString());
    expect(answer).toMatchObject({ id: 'first', error: { code: -32600, message: expect.stringContaining('exceeds the limit of 100 bytes') } });
  });
});
