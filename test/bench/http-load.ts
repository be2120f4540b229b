import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `serve --http` under load (contract section 16), loopback only; figures, not assertions:
 * - the server's RSS before, during and after 250 connections that each send 4 MiB minus one byte
 *   of a 4 MiB body and stall (then close), and 20 s later;
 * - one token opening 998 sessions as fast as it can: how many it holds, and whether another token
 *   still opens one.
 * Run after `npm run build`: node dist/test/bench/http-load.js [path/to/bin/cinderlib-mcp.js]
 * (the argument lets an older build be measured the same way).
 */
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const BIN = process.argv[2] ?? join(REPO, 'bin', 'cinderlib-mcp.js');
const GREEDY = 'bench-greedy-token-5b7c9e1f3a';
const OTHER = 'bench-other-token-2d4f6a8c0e';
const MIB = 1024 * 1024;
const CONNECTIONS = 250;

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '1' } },
});

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((text) => text.startsWith('VmRSS:'))!;
  return Math.round(Number(/(\d+)/.exec(line)![1]) / 1024);
}

async function initialize(url: string, token: string): Promise<number> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
    body: INITIALIZE,
  });
  await response.body?.cancel();
  return response.status;
}

/** 250 stalled bodies (4 MiB announced, one byte short sent), then the clients close. */
async function stalledBodies(url: string, pid: number, round: number): Promise<void> {
  const { hostname, port } = new URL(url);
  const body = Buffer.alloc(4 * MIB - 1, 'a');
  const sockets: Socket[] = [];
  const answers = new Map<string, number>();
  let serverClosed = 0;
  for (let i = 0; i < CONNECTIONS; i++) {
    const socket = connect(Number(port), hostname);
    socket.on('error', () => undefined);
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      if (head) return;
      head = chunk.toString().split('\r\n')[0]!;
      answers.set(head, (answers.get(head) ?? 0) + 1);
    });
    socket.once('close', () => serverClosed++);
    socket.write(`POST /mcp HTTP/1.1\r\nHost: ${hostname}:${port}\r\nAuthorization: Bearer ${GREEDY}\r\nContent-Type: application/json\r\nContent-Length: ${4 * MIB}\r\n\r\n`);
    socket.write(body);
    sockets.push(socket);
  }
  let peak = 0;
  for (let i = 0; i < 20; i++) {
    await sleep(500);
    peak = Math.max(peak, rssMiB(pid));
  }
  process.stdout.write(`round ${round}: RSS during (peak over 10 s): ${peak} MiB; answers so far: ${JSON.stringify(Object.fromEntries(answers))}; cut by the server: ${serverClosed}\n`);
  const status = await initialize(url, OTHER);
  process.stdout.write(`round ${round}: a new request meanwhile: ${status}\n`);
  if (round === 3) {
    // Left open: the server drops each stalled body 30 s after its last byte.
    await sleep(22_000);
    process.stdout.write(`round ${round}: 32 s after the last bytes, connections cut by the server: ${serverClosed} of ${CONNECTIONS}; RSS ${rssMiB(pid)} MiB\n`);
  }
  for (const socket of sockets) socket.destroy();
  await sleep(1000);
  process.stdout.write(`round ${round}: RSS 1 s after the clients closed: ${rssMiB(pid)} MiB\n`);
  await sleep(19_000);
  process.stdout.write(`round ${round}: RSS 20 s after the clients closed: ${rssMiB(pid)} MiB\n`);
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-http-bench-'));
  const config = join(work, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      global: {
        persistence_config: { storage: 'memory' },
        http_tokens: [
          { name: 'greedy', token: GREEDY },
          { name: 'other', token: OTHER, read_only: true },
        ],
      },
      backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(work, 'volumes') }],
    }),
  );
  const child = spawn(process.execPath, [...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean), BIN, 'serve', '--http', '--port', '0', '--config', config], {
    env: { ...process.env, XDG_DATA_HOME: join(work, 'data'), CINDERLIB_MCP_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const url = await new Promise<string>((found, fail) => {
    const timer = setTimeout(() => fail(new Error(`no URL in 30 s: ${stderr}`)), 30_000);
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /serving MCP over HTTP at (http:\/\/\S+\/mcp)/.exec(stderr);
      if (match) {
        clearTimeout(timer);
        found(match[1]);
      }
    });
    child.once('exit', (code) => fail(new Error(`server exited ${code}: ${stderr}`)));
  });
  const pid = child.pid!;
  process.once('exit', () => child.kill('SIGKILL')); // never leave a server behind
  try {
    for (let i = 0; i < 5; i++) await initialize(url, OTHER);
    const before = rssMiB(pid);
    process.stdout.write(`RSS before: ${before} MiB\n`);

    for (const round of [1, 2, 3]) await stalledBodies(url, pid, round);

    // One token opening sessions as fast as it can.
    const started = Date.now();
    const statuses = new Map<number, number>();
    for (let i = 0; i < 998; i++) {
      const code = await initialize(url, GREEDY);
      statuses.set(code, (statuses.get(code) ?? 0) + 1);
    }
    process.stdout.write(`998 initialize of one token in ${((Date.now() - started) / 1000).toFixed(1)} s: ${JSON.stringify(Object.fromEntries(statuses))}\n`);
    process.stdout.write(`another token then opens a session: ${await initialize(url, OTHER)}\n`);
    process.stdout.write(`RSS after the sessions: ${rssMiB(pid)} MiB\n`);
  } finally {
    child.kill('SIGTERM');
    await new Promise((done) => child.once('exit', done));
    rmSync(work, { recursive: true, force: true });
  }
}

void main();
