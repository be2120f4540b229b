import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpServerProcess, type HttpServerProcess } from '../helpers/http-server.js';

/**
 * What an operator of a fleet needs (contract section 16's follow-up): /metrics in the Prometheus
 * text format behind the same tokens as /mcp, scraped and parsed here; tokens limited to some
 * backends (http_tokens[].backends), refused elsewhere as NOT_FOUND (for that token they are not there); the audit file rotated by size,
 * keeping audit_log_keep files. One `serve --http` process, two file backends.
 */
const OPS = 'ops-token-3f9a1c7e5b2d';
const ALPHA = 'alpha-token-8c2e4a6b0d1f';
const AUDIT_MAX = 4096;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The text exposition format, strictly: every line a comment (HELP/TYPE) or a sample; every sample's family typed. */
function parsePrometheus(text: string): { samples: Sample[]; types: Map<string, string> } {
  expect(text.endsWith('\n')).toBe(true);
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.slice(0, -1).split('\n')) {
    const comment = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (comment) {
      if (comment[1] === 'TYPE') {
        expect(['counter', 'gauge', 'histogram', 'summary', 'untyped']).toContain(comment[3]);
        types.set(comment[2], comment[3]);
      }
      continue;
    }
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    expect(match, `a sample line: ${line}`).not.toBeNull();
    const labels: Record<string, string> = {};
    const body = match![2] ?? '';
    const pair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
    let consumed = 0;
    for (let found = pair.exec(body); found; found = pair.exec(body)) {
      labels[found[1]] = found[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      consumed = pair.lastIndex;
    }
    expect(consumed, `labels of ${line}`).toBe(body.length);
    const value = match![3] === '+Inf' ? Infinity : Number(match![3]);
    expect(Number.isNaN(value), `value of ${line}`).toBe(false);
    const family = match![1].replace(/_(bucket|sum|count)$/, '');
    expect(types.has(match![1]) || types.get(family) === 'histogram', `a TYPE line before ${match![1]}`).toBe(true);
    samples.push({ name: match![1], labels, value });
  }
  return { samples, types };
}

const find = (samples: Sample[], name: string, labels: Record<string, string>) =>
  samples.filter((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value));

describe('operators: /metrics, audit rotation, tokens limited to some backends', () => {
  let root: string;
  let server: HttpServerProcess;
  const clients: Client[] = [];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-operators-'));
    const configPath = join(root, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        global: {
          persistence_config: { storage: 'memory' },
          audit_log: join(root, 'audit.jsonl'),
          audit_log_max_bytes: AUDIT_MAX,
          audit_log_keep: 2,
          http_tokens: [
            { name: 'ops', token: OPS },
            { name: 'alpha-team', token: ALPHA, backends: ['alpha'] },
          ],
        },
        backends: [
          { volume_backend_name: 'alpha', volume_driver: 'file', volumes_dir: join(root, 'alpha') },
          { volume_backend_name: 'beta', volume_driver: 'file', volumes_dir: join(root, 'beta') },
        ],
      }),
    );
    server = await startHttpServerProcess(configPath, { ...(process.env as Record<string, string>), XDG_DATA_HOME: join(root, 'xdg'), CINDERLIB_MCP_LOG_LEVEL: 'info' });
  }, 60_000);
  afterAll(async () => {
    for (const client of clients) await client.close().catch(() => undefined);
    await server?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const connect = async (token: string) => {
    const client = new Client({ name: 'operators-test', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(server.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
    clients.push(client);
    return client;
  };
  const call = async (client: Client, name: string, args: Record<string, unknown>) => {
    const result = (await client.callTool({ name, arguments: args })) as { isError?: boolean; content: Array<{ text: string }>; structuredContent?: any };
    return { error: result.isError ? result.content[0].text : undefined, data: result.structuredContent };
  };
  const scrape = (token?: string) => fetch(`${server.base}/metrics`, token ? { headers: { Authorization: `Bearer ${token}` } } : {});

  it('serves /metrics in the Prometheus text format, behind the tokens: calls by tool and outcome, latencies, operations, locks, backends, capacity', async () => {
    const ops = await connect(OPS);
    const made = await call(ops, 'create_volume', { backend: 'alpha', size: 1 });
    expect(made.error).toBeUndefined();
    expect((await call(ops, 'create_volume', { backend: 'alpha', size: 1_000_000 })).error).toMatch(/^OUT_OF_CAPACITY: /);
    expect((await call(ops, 'get_stats', { backend: 'beta' })).error).toBeUndefined();
    expect((await call(ops, 'delete_volume', { volume_id: made.data.id })).error).toBeUndefined();

    for (const refused of [await scrape(), await scrape('not-a-token-of-this-server')]) {
      expect(refused.status).toBe(401);
      expect(refused.headers.get('www-authenticate')).toMatch(/^Bearer /);
    }
    const response = await scrape(ALPHA); // any valid token may scrape
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    expect(text).not.toContain(OPS);
    const { samples, types } = parsePrometheus(text);

    expect(types.get('cinderlib_mcp_tool_calls_total')).toBe('counter');
    expect(find(samples, 'cinderlib_mcp_tool_calls_total', { tool: 'create_volume', outcome: 'ok' })[0].value).toBe(1);
    expect(find(samples, 'cinderlib_mcp_tool_calls_total', { tool: 'create_volume', outcome: 'OUT_OF_CAPACITY' })[0].value).toBe(1);
    expect(find(samples, 'cinderlib_mcp_tool_calls_total', { tool: 'delete_volume', outcome: 'ok' })[0].value).toBe(1);
    // A latency histogram: cumulative buckets, +Inf equal to the count.
    expect(types.get('cinderlib_mcp_tool_call_duration_seconds')).toBe('histogram');
    const buckets = find(samples, 'cinderlib_mcp_tool_call_duration_seconds_bucket', { tool: 'create_volume' });
    expect(buckets.length).toBeGreaterThan(5);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i].value).toBeGreaterThanOrEqual(buckets[i - 1].value);
    expect(buckets.at(-1)!.labels.le).toBe('+Inf');
    expect(buckets.at(-1)!.value).toBe(find(samples, 'cinderlib_mcp_tool_call_duration_seconds_count', { tool: 'create_volume' })[0].value);
    expect(buckets.at(-1)!.value).toBe(2);
    // Operations: none in flight now; their lock waits were measured.
    expect(find(samples, 'cinderlib_mcp_operations_in_flight', { backend: 'alpha' })[0].value).toBe(0);
    expect(find(samples, 'cinderlib_mcp_lock_wait_seconds_count', { lock: 'object' })[0].value).toBeGreaterThanOrEqual(2);
    // Backends and pools, from the stats last read.
    expect(find(samples, 'cinderlib_mcp_backend_up', { backend: 'alpha' })[0].value).toBe(1);
    expect(find(samples, 'cinderlib_mcp_backend_up', { backend: 'beta' })[0].value).toBe(1);
    expect(find(samples, 'cinderlib_mcp_pool_capacity_gb', { backend: 'beta', pool: 'beta', kind: 'total' })[0].value).toBeGreaterThan(0);
    expect(find(samples, 'cinderlib_mcp_pool_capacity_gb', { backend: 'beta', pool: 'beta', kind: 'free' })[0].value).toBeGreaterThan(0);
    expect(find(samples, 'cinderlib_mcp_http_sessions', {})[0].value).toBeGreaterThanOrEqual(1);
  });

  it('refuses a token limited to some backends on any other, with NOT_FOUND naming what it may use', async () => {
    const ops = await connect(OPS);
    const alpha = await connect(ALPHA);
    const onBeta = (await call(ops, 'create_volume', { backend: 'beta', size: 1, name: 'beta-volume' })).data;
    const onAlpha = await call(alpha, 'create_volume', { backend: 'alpha', size: 1, name: 'alpha-volume' });
    expect(onAlpha.error).toBeUndefined();

    expect((await call(alpha, 'create_volume', { backend: 'beta', size: 1 })).error).toMatch(
      /^NOT_FOUND: create_volume: the call names backend "beta", which the token "alpha-team" may not use \(it may use: alpha\)/,
    );
    expect((await call(alpha, 'get_volume', { volume_id: onBeta.id })).error).toMatch(/^NOT_FOUND: get_volume: volume \S+ is on backend "beta"/);
    expect((await call(alpha, 'delete_volume', { volume_id: onBeta.id })).error).toMatch(/^NOT_FOUND: /);
    expect((await call(alpha, 'create_volume', { source_volume_id: onBeta.id })).error).toMatch(/^NOT_FOUND: /);
    expect((await call(alpha, 'get_stats', { backend: 'beta' })).error).toMatch(/^NOT_FOUND: /);
    // Lists and list_backends show the token's backend alone.
    const listed = (await call(alpha, 'list_volumes', {})).data.volumes as Array<{ backend: string; name: string }>;
    expect(listed.map((volume) => volume.name)).toEqual(['alpha-volume']);
    expect((await call(alpha, 'list_backends', {})).data.backends.map((backend: { id: string }) => backend.id)).toEqual(['alpha']);
    // The beta volume is untouched; the unlimited token still sees both.
    expect((await call(ops, 'get_volume', { volume_id: onBeta.id })).data.status).toBe('available');
    expect((await call(ops, 'list_backends', {})).data.backends).toHaveLength(2);
    expect((await call(alpha, 'delete_volume', { volume_id: onAlpha.data.id })).error).toBeUndefined();
    expect((await call(ops, 'delete_volume', { volume_id: onBeta.id })).error).toBeUndefined();
  });

  it('rotates the audit file by size, keeping audit_log_keep rotated files, every line whole', async () => {
    const ops = await connect(OPS);
    for (let i = 0; i < 40; i++) {
      const made = await call(ops, 'create_volume', { backend: 'beta', size: 1, name: `rotated-${i}` });
      expect((await call(ops, 'delete_volume', { volume_id: made.data.id })).error).toBeUndefined();
    }
    const path = join(root, 'audit.jsonl');
    expect(existsSync(`${path}.1`)).toBe(true);
    expect(existsSync(`${path}.2`)).toBe(true);
    expect(existsSync(`${path}.3`)).toBe(false);
    for (const file of [path, `${path}.1`, `${path}.2`]) {
      expect(statSync(file).size).toBeLessThanOrEqual(AUDIT_MAX);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      for (const line of readFileSync(file, 'utf8').trim().split('\n')) expect(JSON.parse(line)).toMatchObject({ client: 'ops', outcome: 'ok' });
    }
    // The newest record is in the live file; the oldest kept ones in .2.
    const last = readFileSync(path, 'utf8').trim().split('\n').at(-1)!;
    expect(JSON.parse(last)).toMatchObject({ tool: 'delete_volume' });
    const older = readFileSync(`${path}.2`, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line).time as string);
    const newer = readFileSync(path, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line).time as string);
    expect(older.at(-1)! <= newer[0]).toBe(true);
  });
});
