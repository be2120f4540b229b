import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { BIN, REPO_ROOT } from './server.js';

/**
 * The server run: the repository's bin, or TEST_SERVER_BIN (for a long run against a fixed build,
 * e.g. of one commit, while others rebuild dist/).
 */
export const SERVER_BIN = process.env.TEST_SERVER_BIN || BIN;

export interface RawAnswer {
  jsonrpc?: string;
  id: string | number | null;
  result?: { content?: Array<{ type: string; text?: string }>; structuredContent?: any; isError?: boolean; [key: string]: unknown };
  error?: { code: number; message: string; data?: unknown };
}

/** A file-driver config (JSON) for `volumesDir`, with memory persistence or the SQLite file `sqlitePath`. */
export function writeFileDriverConfig(configPath: string, options: { volumesDir: string; sqlitePath?: string; backend?: string; ratio?: number }): string {
  mkdirSync(dirname(configPath), { recursive: true });
  writeFileSync(
    configPath,
    JSON.stringify({
      global: {
        persistence_config: options.sqlitePath ? { storage: 'db', connection: `sqlite:///${options.sqlitePath}` } : { storage: 'memory' },
      },
      backends: [
        {
          volume_backend_name: options.backend ?? 'files',
          volume_driver: 'file',
          volumes_dir: options.volumesDir,
          max_over_subscription_ratio: options.ratio ?? 1000,
        },
      ],
    }),
  );
  return configPath;
}

/**
 * The built server (bin/cinderlib-mcp.js) as a child process spoken to in raw JSON-RPC lines, for
 * tests that must kill it with SIGKILL or write garbage to it. Every frame it writes to stdout is
 * kept (stdout carries only JSON-RPC); answers are counted per id so that a duplicate or a missing
 * answer shows. `npm run build` must have run.
 */
export class RawMcpServer {
  readonly child: ChildProcessWithoutNullStreams;
  /** Every answer (a frame with an id and a result or error), by id, in arrival order. */
  readonly answers = new Map<string | number | null, RawAnswer[]>();
  /** Frames that are not JSON: stdout must carry only JSON-RPC, so any is a failure. */
  readonly badStdoutLines: string[] = [];
  stderr = '';
  exitCode: number | null | undefined;
  exitSignal: NodeJS.Signals | null | undefined;
  readonly exited: Promise<void>;
  private pending: Buffer = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  private nextId = 1;

  constructor(configPath: string, env: Record<string, string> = {}) {
    const childEnv: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('CINDERLIB_MCP_')) childEnv[key] = value;
    Object.assign(childEnv, { CINDERLIB_MCP_LOG_LEVEL: 'warn', CINDERLIB_MCP_TOOLSETS: 'all', ...env }); // every toolset, as test/helpers/server.ts
    this.child = spawn(process.execPath, [SERVER_BIN, '--config', configPath], { cwd: REPO_ROOT, env: childEnv });
    this.child.stderr.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
      if (this.stderr.length > 200_000) this.stderr = this.stderr.slice(-100_000);
    });
    this.child.stdout.on('data', (chunk: Buffer) => this.take(chunk));
    this.child.stdin.on('error', () => undefined); // EPIPE once the server is gone
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        this.wake();
        resolve();
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.exitCode === undefined;
  }

  writeLine(line: string): boolean {
    return this.child.stdin.write(line + '\n');
  }

  /** Sends a request and returns its id (numeric, unique in this server's life unless given). */
  request(method: string, params?: unknown, id: string | number = this.nextId++): string | number {
    const frame: Record<string, unknown> = { jsonrpc: '2.0', id, method };
    if (params !== undefined) frame.params = params;
    this.writeLine(JSON.stringify(frame));
    return id;
  }

  callTool(name: unknown, args: unknown, id?: string | number): string | number {
    return this.request('tools/call', { name, arguments: args }, id);
  }

  /** The initialize handshake; `id` is the next numeric id unless given (e.g. 'init', to leave numbers to the test). */
  async initialize(timeoutMs = 30_000, id: string | number = this.nextId++): Promise<void> {
    this.request('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'cinderlib-mcp-raw-tests', version: '1' } }, id);
    const answer = await this.answer(id, timeoutMs);
    if (answer.error) throw new Error(`initialize failed: ${JSON.stringify(answer.error)}`);
    this.writeLine(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
  }

  /** The first answer with this id; rejects after `timeoutMs` or when the server exits without one. */
  async answer(id: string | number | null, timeoutMs = 30_000): Promise<RawAnswer> {
    await this.until(() => this.answers.has(id), timeoutMs, `no answer for id ${JSON.stringify(id)}`);
    return this.answers.get(id)![0];
  }

  /** Calls a tool and waits for its answer. */
  async call(name: string, args: unknown, timeoutMs = 30_000): Promise<RawAnswer> {
    return this.answer(this.callTool(name, args), timeoutMs);
  }

  async until(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline || this.exitCode !== undefined) {
        if (done()) return;
        throw new Error(`${what} (server ${this.exitCode === undefined ? 'running' : `exited ${this.exitCode ?? this.exitSignal}`}); stderr:\n${this.stderr.slice(-2000)}`);
      }
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  /** SIGKILL, and wait for the process to be gone (bounded). */
  async kill9(timeoutMs = 10_000): Promise<void> {
    if (this.exitCode === undefined) this.child.kill('SIGKILL');
    await this.waitForExit(timeoutMs);
  }

  /** Ends stdin (a clean shutdown) and waits for exit; SIGKILL after `timeoutMs`. */
  async close(timeoutMs = 20_000): Promise<number | null | undefined> {
    this.child.stdin.end();
    return this.waitForExit(timeoutMs);
  }

  /** Waits for the process to exit (after a signal, or end of input) and returns its exit code; SIGKILL after `timeoutMs`. */
  async waitForExit(timeoutMs = 20_000): Promise<number | null | undefined> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
    return this.exitCode;
  }

  /** VmRSS of the server process, MB (Linux /proc). */
  rssMb(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
  }

  private wake(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }

  private take(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let newline: number;
    while ((newline = this.pending.indexOf(10)) !== -1) {
      const line = this.pending.subarray(0, newline).toString('utf8');
      this.pending = this.pending.subarray(newline + 1);
      let message: RawAnswer;
      try {
        message = JSON.parse(line) as RawAnswer;
      } catch {
        this.badStdoutLines.push(line.slice(0, 500));
        continue;
      }
      if (!message || typeof message !== 'object' || !('id' in message) || !('result' in message || 'error' in message)) continue; // notifications
      const list = this.answers.get(message.id) ?? [];
      list.push(message);
      this.answers.set(message.id, list);
    }
    this.wake();
  }
}

/** The text of a tool answer (content[0].text), or undefined for a JSON-RPC error. */
export function toolText(answer: RawAnswer): string | undefined {
  return answer.result?.content?.[0]?.text;
}

/** mulberry32: a small seeded PRNG, so a failing run can be replayed from its seed. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
