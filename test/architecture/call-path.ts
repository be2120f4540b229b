/**
 * The product files one create_snapshot passes through, measured at run time: a registry with a
 * file backend in a temporary folder, V8's precise coverage (node:inspector, in this process), and
 * the files whose functions ran during one create_snapshot called through its tool handler.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { parseConfig } from '../../src/config/load.js';
import { BackendRegistry } from '../../src/core/registry.js';
import { TOOLS } from '../../tools/index.js';

/** Product files (src/, tools/, drivers/, as their .ts sources) whose functions ran during one create_snapshot. */
export async function createSnapshotCallPath(): Promise<string[]> {
  process.env.CINDERLIB_MCP_LOG_LEVEL ??= 'warn'; // the figure, not the backend's start-up lines
  const dir = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-call-path-'));
  const secrets = new SecretRegistry();
  const config = parseConfig(
    { global: { persistence_config: { storage: 'memory' } }, backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(dir, 'volumes') }] },
    'call-path config',
    { secrets, env: {} },
  );
  const registry = await BackendRegistry.open(config, secrets, createLogger('call-path'));
  const session = new Session();
  session.connect();
  try {
    const call = async (name: string, args: Record<string, unknown>): Promise<Record<string, unknown>> => {
      const tool = TOOLS.find((candidate) => candidate.name === name);
      if (!tool) throw new Error(`no tool ${name}`);
      return tool.handler(tool.input.parse(args), registry);
    };
    const volume = await call('create_volume', { backend: 'files', size: 1 });
    // A first snapshot loads what a snapshot needs; the second one is the path every later one takes.
    await call('create_snapshot', { volume_id: volume.id });
    await session.post('Profiler.enable');
    await session.post('Profiler.startPreciseCoverage', { callCount: true, detailed: false });
    await session.post('Profiler.takePreciseCoverage'); // resets the counts
    await call('create_snapshot', { volume_id: volume.id });
    const { result } = await session.post('Profiler.takePreciseCoverage');
    await session.post('Profiler.stopPreciseCoverage');
    const distRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));
    const files = new Set<string>();
    for (const script of result) {
      if (!script.url.startsWith('file://') || !script.functions.some((fn) => fn.ranges[0]?.count > 0)) continue;
      const file = relative(distRoot, fileURLToPath(script.url)).replace(/\.js$/, '.ts');
      if (/^(src|tools|drivers)\//.test(file)) files.add(file);
    }
    return [...files].sort();
  } finally {
    session.disconnect();
    await registry.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
