import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

/**
 * Runs the built server (bin/cinderlib-mcp.js) as a real child process and talks to it with the
 * SDK's own Client over a real stdio pipe. `npm run build` must have run (npm test does it).
 */
export const REPO_ROOT = findRepoRoot(dirname(fileURLToPath(import.meta.url)));

/** The folder holding package.json above this file: test/helpers from the sources, dist/test/helpers once built (the bench). */
function findRepoRoot(from: string): string {
  for (let dir = from; dir !== dirname(dir); dir = dirname(dir)) if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin'))) return dir;
  return resolve(from, '..', '..');
}
export const BIN = join(REPO_ROOT, 'bin', 'cinderlib-mcp.js');

export interface ToolAnswer {
  isError: boolean;
  /** The first text content: JSON for successes, "CODE: message" for errors. */
  text: string;
  /** structuredContent (undefined for errors). */
  data: any;
}

export interface McpHarness {
  client: Client;
  call(name: string, args?: Record<string, unknown>): Promise<ToolAnswer>;
  /** Everything the server wrote to stderr so far. */
  stderr(): string;
  /** Where the harness keeps its files (config, and XDG_DATA_HOME unless overridden). */
  workDir: string;
  close(): Promise<void>;
}

export interface StartOptions {
  env?: Record<string, string>;
  /** Extra CLI arguments; by default `--config <written file>` when a config is given. */
  args?: string[];
  /** File name for the config (its extension picks YAML or JSON). */
  configFileName?: string;
  /** Keep workDir after close (the caller removes it). */
  keepWorkDir?: boolean;
  workDir?: string;
  /** Run the server as this user (the test runs as root): setpriv, environment kept. */
  runAs?: { user: string; group: string };
}

/** Starts the server with `config` (an object written as YAML/JSON), or the embedded default when null. */
export async function startMcpServer(config: object | null, options: StartOptions = {}): Promise<McpHarness> {
  const workDir = options.workDir ?? mkdtempSync(join(tmpdir(), 'cinderlib-mcp-e2e-'));
  const args = [BIN, ...(options.args ?? [])];
  if (config !== null) {
    const fileName = options.configFileName ?? 'config.yaml';
    const path = join(workDir, fileName);
    writeFileSync(path, fileName.endsWith('.json') ? JSON.stringify(config, null, 2) : stringify(config));
    if (!options.args) args.push('--config', path);
  }
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith('CINDERLIB_MCP_')) env[key] = value;
  }
  // Every toolset, so that suites reach every tool; a test of the default set passes CINDERLIB_MCP_TOOLSETS: '' (unset).
  Object.assign(env, { XDG_DATA_HOME: join(workDir, 'data'), CINDERLIB_MCP_TOOLSETS: 'all', ...options.env });
  const [command, commandArgs] = options.runAs
    ? ['setpriv', [`--reuid=${options.runAs.user}`, `--regid=${options.runAs.group}`, '--clear-groups', '--', process.execPath, ...args]]
    : [process.execPath, args];
  const transport = new StdioClientTransport({ command, args: commandArgs, env, stderr: 'pipe', cwd: REPO_ROOT });
  let stderrText = '';
  transport.stderr?.on('data', (chunk: Buffer) => (stderrText += chunk.toString()));
  const client = new Client({ name: 'cinderlib-mcp-tests', version: '1.0.0' });
  await client.connect(transport);
  return {
    client,
    workDir,
    stderr: () => stderrText,
    async call(name, callArgs = {}) {
      const result = (await client.callTool({ name, arguments: callArgs })) as {
        isError?: boolean;
        content: Array<{ type: string; text?: string }>;
        structuredContent?: unknown;
      };
      return { isError: result.isError === true, text: result.content[0]?.text ?? '', data: result.structuredContent };
    },
    async close() {
      await client.close();
      if (!options.keepWorkDir && !options.workDir) rmSync(workDir, { recursive: true, force: true });
    },
  };
}

/** Runs `test` against a server started with `setup`, and closes it whatever the test did. */
export async function withServer(setup: Parameters<typeof startMcpServer>, test: (server: McpHarness) => Promise<void>): Promise<void> {
  const server = await startMcpServer(...setup);
  try {
    await test(server);
  } finally {
    await server.close();
  }
}
