import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/base/log.js';
import { BoundedStdioTransport } from '../../src/mcp/transport/stdio.js';
import { RawMcpServer, toolText, writeFileDriverConfig, type RawAnswer } from '../helpers/raw-server.js';

/**
 * The stdio transport driven with raw JSON-RPC lines, as a client that misbehaves would: closing
 * its input or signalling mid-call, sending frames too big or not JSON, writing without reading,
 * nesting arguments deeply. The built server runs as a child process (npm run build first).
 */
const root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-transport-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let configCount = 0;
function writeConfig(): string {
  const dir = join(root, `server-${++configCount}`);
  return writeFileDriverConfig(join(dir, 'config.json'), { volumesDir: join(dir, 'volumes'), sqlitePath: join(dir, 'meta.sqlite') });
}

const servers: RawMcpServer[] = [];
afterEach(async () => {
  const started = servers.splice(0);
  for (const server of started) await server.kill9();
  // stdout carries only JSON-RPC.
  for (const server of started) expect(server.badStdoutLines).toEqual([]);
});

/** A server started and initialized, logging at info (the shutdown lines); its initialize has id 'init', leaving numeric ids to the tests. */
async function startServer(configPath: string, env: Record<string, string> = {}): Promise<RawMcpServer> {
  const server = new RawMcpServer(configPath, { CINDERLIB_MCP_LOG_LEVEL: 'info', XDG_DATA_HOME: join(root, 'xdg'), ...env });
  servers.push(server);
  await server.initialize(30_000, 'init');
  return server;
}

/** The text of a tool answer that is not a JSON-RPC error. */
function okText(answer: RawAnswer): string {
  expect(answer.error, JSON.stringify(answer.error)).toBeUndefined();
  return toolText(answer)!;
}

async function volumesAfterRestart(configPath: string): Promise<Array<{ id: string; status: string }>> {
  const server = await startServer(configPath);
  const listed = await server.answer(server.callTool('list_volumes', { limit: 1000 }, 'list'));
  expect(await server.close(60_000)).toBe(0);
  return listed.result!.structuredContent.volumes;
}

describe('shutdown answers the calls in flight', () => {
  it('answers a create_volume that arrives just before end of input, and the volume is available after a restart', async () => {
    const configPath = writeConfig();
    const server = await startServer(configPath);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    server.callTool('create_volume', { backend: 'files', size: 1, name: 'last-words' }, 'create');
    const exitCode = server.close(60_000);
    const answer = await server.answer('create');
    const created = JSON.parse(okText(answer));
    expect(created.status).toBe('available');
    expect(await exitCode).toBe(0);
    expect(server.stderr).toMatch(/shutting down \(stdin closed\)/);

    const volumes = await volumesAfterRestart(configPath);
    expect(volumes.map((v) => [v.id, v.status])).toEqual([[created.id, 'available']]);
  });

  it('on SIGTERM finishes and answers the calls it started, refuses the rest, leaves no interrupted record, and exits 0', async () => {
    const configPath = writeConfig();
    const server = await startServer(configPath, { CINDERLIB_MCP_SHUTDOWN_GRACE_MS: '20000' });
    const total = 200;
    for (let i = 0; i < total; i++) server.callTool('create_volume', { backend: 'files', size: 1, name: `burst-${i}` }, i);
    await server.until(() => server.answers.size > 1, 30_000, 'no create answered'); // the init answer plus one
    server.child.kill('SIGTERM');
    expect(await server.waitForExit(60_000)).toBe(0);
    expect(server.stderr).toMatch(/shutting down \(SIGTERM\)/);
    expect(server.stderr).not.toMatch(/abandoned/);

    const created = new Set<string>();
    let refused = 0;
    for (let i = 0; i < total; i++) {
      const answer = server.answers.get(i)?.[0];
      if (answer?.error) {
        expect(answer.error.message).toMatch(/^BACKEND_UNAVAILABLE: the server is shutting down and did not start this call/);
        refused++;
      } else if (answer) created.add(JSON.parse(okText(answer)).id);
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
    const server = await startServer(writeConfig());
    const huge = 'x'.repeat(11 * 1024 * 1024);
    server.writeLine(`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"get_volume","arguments":{"volume_id":"${huge}"}},"id":"huge"}`);
    const refused = await server.answer('huge');
    expect(refused.error?.code).toBe(-32600);
    expect(refused.error?.message).toMatch(/exceeds the limit of 10485760 bytes \(10 MiB\)/);

    server.writeLine('this is not json');
    const parseError = await server.answer(null);
    expect(parseError.error?.code).toBe(-32700);
    server.writeLine(JSON.stringify({ id: 'not-rpc', hello: 'world' }));
    expect((await server.answer('not-rpc')).error?.code).toBe(-32600);

    server.request('tools/list', undefined, 'tools');
    const tools = await server.answer('tools');
    expect(tools.result).toHaveProperty('tools');
    expect(server.exitCode).toBeUndefined();
    expect(await server.close(60_000)).toBe(0);
  });
});

describe('a client that writes without reading', () => {
  it('holds memory flat while it does not read, then answers every call', async () => {
    const server = await startServer(writeConfig());
    server.callTool('list_volumes', {}, 'warm');
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
          server.callTool('list_volumes', {}, sent++);
          if (server.child.stdin.writableNeedDrain) return void server.child.stdin.once('drain', writeMore);
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
    expect(await server.close(60_000)).toBe(0);

    // An idle server is about 80 MB (Node, the SDK, SQLite); at most 64 small calls are in flight.
    // Without backpressure every queued call and answer stays in memory: about 5 MB per 1,000
    // calls, over 300 MB for these 40,000 (241 MB for 20,000 and 621 MB for 100,000 were measured).
    expect(peakWhileNotReadingMb - baselineMb, `RSS ${baselineMb.toFixed(0)} -> ${peakWhileNotReadingMb.toFixed(0)} MB`).toBeLessThan(100);
    expect(peakMb, `peak RSS while answering ${peakMb.toFixed(0)} MB`).toBeLessThan(300);
    // The server stopped reading: most calls were still in the client's pipe.
    expect(sentWhileNotReading).toBeLessThan(total);
    for (const id of [0, total / 2, total - 1]) expect(JSON.parse(okText(server.answers.get(id)![0]))).toEqual({ volumes: [] });
  }, 180_000);
});

describe('argument edge cases', () => {
  it('answers 10,000-deep nesting and non-object arguments with one-line INVALID_ARGUMENT', async () => {
    const server = await startServer(writeConfig());
    let deep = '"bottom"';
    for (let i = 0; i < 10_000; i++) deep = `{"a":${deep}}`;
    server.writeLine(`{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{"name":"create_volume","arguments":{"backend":"files","size":1,"name":${deep}}}}`);
    server.writeLine(`{"jsonrpc":"2.0","id":"deep-unknown","method":"tools/call","params":{"name":"list_volumes","arguments":{"nested":${deep}}}}`);
    server.callTool('list_volumes', 'all of them', 'string');
    server.callTool('get_volume', ['a', 'b'], 'array');
    server.callTool('create_volume', 42, 'number');
    server.callTool('list_backends', null, 'null');

    for (const id of ['deep', 'deep-unknown', 'string', 'array', 'number', 'null']) {
      const answer = await server.answer(id);
      expect(answer.result?.isError, `${id}: ${JSON.stringify(answer).slice(0, 300)}`).toBe(true);
      const text = okText(answer);
      expect(text, id).toMatch(/^INVALID_ARGUMENT: /);
      expect(text, id).not.toContain('\n');
      expect(text.length, id).toBeLessThan(400);
    }
    expect(okText(await server.answer('deep'))).toMatch(/name .*got \{"a":\{"a":\{\.\.\.\}\}\}/);
    expect(okText(await server.answer('string'))).toMatch(/arguments must be an object of named arguments .*got a string "all of them"/);
    expect(okText(await server.answer('array'))).toMatch(/arguments must be an object .*got an array/);

    // initialize without what it needs: one line saying what it needs, not the SDK's zod dump.
    server.writeLine('{"jsonrpc":"2.0","id":"bad-init","method":"initialize","params":{"protocolVersion":7}}');
    const badInit = await server.answer('bad-init');
    expect(badInit.error).toMatchObject({ code: -32602, message: expect.stringMatching(/^Invalid params: initialize needs params\.protocolVersion/) });
    expect(badInit.error?.message).not.toContain('\n');

    // No params: one line naming what tools/call needs. Params that are not an object are not JSON-RPC.
    server.writeLine('{"jsonrpc":"2.0","id":"no-params","method":"tools/call"}');
    server.writeLine('{"jsonrpc":"2.0","id":"string-params","method":"tools/call","params":"list_volumes"}');
    const noParams = await server.answer('no-params');
    expect(noParams.error).toMatchObject({ code: -32602, message: expect.stringMatching(/^(MCP error -32602: )?tools\/call needs params\.name, the name of a tool as a string/) });
    const stringParams = await server.answer('string-params');
    expect(stringParams.error).toMatchObject({ code: -32600, message: expect.stringMatching(/^Invalid Request: not a JSON-RPC 2\.0 message/) });
    for (const answer of [noParams, stringParams]) expect(answer.error?.message).not.toContain('\n');

    server.callTool('list_volumes', {}, 'after');
    expect(JSON.parse(okText(await server.answer('after')))).toEqual({ volumes: [] });
    expect(await server.close(60_000)).toBe(0);
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
