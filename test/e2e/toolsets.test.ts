import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, withServer, type McpHarness } from '../helpers/server.js';

/**
 * Toolsets over a real stdio pipe with the SDK client (contract section 14): the default set, the
 * three ways to choose (global.toolsets, CINDERLIB_MCP_TOOLSETS, --toolsets) and their order, the
 * instructions sent at initialize, read-only as a filter over the same list, and the answer to a
 * tool that is not offered.
 */
const BACKENDS = ['list_backends', 'get_stats', 'pool_names'];
const VOLUMES = ['list_volumes', 'get_volume', 'create_volume', 'extend_volume', 'update_volume', 'delete_volume'];
const SNAPSHOTS = ['list_snapshots', 'get_snapshot', 'create_snapshot', 'delete_snapshot', 'revert_to_snapshot'];
const CONNECTIONS = ['validate_connector', 'connect_volume', 'list_connections', 'disconnect_volume', 'attach_volume', 'detach_volume'];
const DEFAULT = [...BACKENDS, ...VOLUMES, ...SNAPSHOTS, ...CONNECTIONS];
const ADOPTION = ['list_unmanaged', 'manage_volume', 'unmanage_volume'];

const dir = join(tmpdir(), `cinderlib-mcp-toolsets-${process.pid}`);
const config = (global: Record<string, unknown> = {}) => ({
  global: { persistence_config: { storage: 'memory' }, ...global },
  backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: dir }],
});
/** The harness enables every toolset unless told otherwise; '' leaves CINDERLIB_MCP_TOOLSETS unset. */
const UNSET = { CINDERLIB_MCP_TOOLSETS: '' };

const names = async (server: McpHarness) => (await server.client.listTools()).tools.map((tool) => tool.name);
// Tools the other toolsets will hold once defined (update_volume, revert_to_snapshot, adoption) are simply absent until then.
const defined = (list: string[]) => list.filter((name) => DEFAULT.includes(name) || name === 'list_supported_drivers');

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('toolsets', () => {
  it('offer backends, volumes, snapshots and connections by default, and say at initialize how to enable the others', async () => {
    await withServer([config(), { env: UNSET }], async (server) => {
      expect((await names(server)).sort()).toEqual(defined(DEFAULT).sort());
      const instructions = server.client.getInstructions() ?? '';
      expect(instructions).toMatch(/Toolsets offered: backends, volumes, snapshots, connections\./);
      expect(instructions).toMatch(/Not offered: discovery \(.*list_supported_drivers\)/);
      expect(instructions).toMatch(/--toolsets default,discovery/);
      expect(instructions).toMatch(/CINDERLIB_MCP_TOOLSETS=default,discovery/);
    });
  });

  it('answer a call of a tool not offered as an unknown tool, naming the toolset that has it', async () => {
    await withServer([config(), { env: UNSET }], async (server) => {
      const answer = await server.call('list_supported_drivers');
      expect(answer.isError).toBe(true);
      expect(answer.text).toMatch(
        /^NOT_FOUND: there is no tool "list_supported_drivers" in this session: it is in the "discovery" toolset, which is not enabled; start the server with --toolsets default,discovery/,
      );
      expect((await server.call('no_such_tool')).text).toMatch(/^NOT_FOUND: there is no tool "no_such_tool"; available tools: list_backends, /);
    });
  });

  it('are chosen with global.toolsets, backends always on', async () => {
    await withServer([config({ toolsets: ['volumes'] }), { env: UNSET }], async (server) => {
      expect((await names(server)).sort()).toEqual([...BACKENDS, ...VOLUMES].sort());
      expect(server.client.getInstructions()).toMatch(/Toolsets offered: backends, volumes\./);
      const refused = await server.call('create_snapshot', { volume_id: '0b5e3f0c-1d2e-4f5a-9b8c-7d6e5f4a3b2c' });
      expect(refused.text).toMatch(/^NOT_FOUND: .*"snapshots" toolset, which is not enabled; start the server with --toolsets default,snapshots/);
    });
  });

  it('take CINDERLIB_MCP_TOOLSETS over global.toolsets, and --toolsets over both', async () => {
    await withServer([config({ toolsets: ['volumes'] }), { env: { CINDERLIB_MCP_TOOLSETS: 'discovery' } }], async (server) => {
      expect((await names(server)).sort()).toEqual([...BACKENDS, 'list_supported_drivers'].sort());
      expect((await server.call('list_supported_drivers')).isError).toBe(false);
    });
    const workDir = join(dir, 'cli');
    await withServer([null, { env: { CINDERLIB_MCP_TOOLSETS: 'discovery' }, args: ['--toolsets', 'snapshots'], workDir }], async (server) => {
      expect((await names(server)).sort()).toEqual([...BACKENDS, ...SNAPSHOTS].sort());
    });
  });

  it('"all" offers every tool, "default,discovery" adds one', async () => {
    await withServer([config({ toolsets: 'all' }), { env: UNSET }], async (server) => {
      expect((await names(server)).sort()).toEqual([...DEFAULT, 'list_supported_drivers', ...ADOPTION].sort());
      expect(server.client.getInstructions()).not.toMatch(/Not offered/);
    });
    await withServer([config(), { env: { CINDERLIB_MCP_TOOLSETS: 'default,discovery' } }], async (server) => {
      expect((await names(server)).sort()).toEqual([...DEFAULT, 'list_supported_drivers'].sort());
    });
  });

  it('keep read-only a filter over the same list', async () => {
    await withServer([config({ read_only: true, toolsets: ['snapshots', 'discovery'] }), { env: UNSET }], async (server) => {
      expect((await names(server)).sort()).toEqual([...BACKENDS, 'list_snapshots', 'get_snapshot', 'list_supported_drivers'].sort());
      expect(server.client.getInstructions()).toMatch(/Read-only: the tools that change anything are not offered/);
      expect((await server.call('create_snapshot', { volume_id: '0b5e3f0c-1d2e-4f5a-9b8c-7d6e5f4a3b2c' })).text).toMatch(/^READ_ONLY: create_snapshot is disabled/);
      expect((await server.call('create_volume', { backend: 'files', size: 1 })).text).toMatch(/^NOT_FOUND: .*"volumes" toolset/);
    });
  });

  it('refuse an unknown toolset, naming the ones there are', async () => {
    const cli = spawnSync(process.execPath, [BIN, '--toolsets', 'volumes,bogus'], { encoding: 'utf8', input: '' });
    expect(cli.status).toBe(2);
    expect(cli.stderr).toMatch(/--toolsets: unknown toolset "bogus"; toolsets are backends, volumes, snapshots, connections, discovery, adoption, all, default/);
    await withServer([config({ toolsets: ['volumes', 'bogus'] }), { env: UNSET }], async (server) => {
      const listed = await server.call('list_backends');
      expect(listed.data.config_error).toMatch(/global option "toolsets": unknown toolset "bogus"/);
    });
    await withServer([config(), { env: { CINDERLIB_MCP_TOOLSETS: 'volume' } }], async (server) => {
      expect((await server.call('list_backends')).data.config_error).toMatch(/CINDERLIB_MCP_TOOLSETS: unknown toolset "volume"/);
    });
  });
});
