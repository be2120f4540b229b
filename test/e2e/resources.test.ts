import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, REPO_ROOT, startMcpServer, type McpHarness } from '../helpers/server.js';

/**
 * Contract section 9's MCP resources over a real stdio pipe with the SDK's client: templates, a
 * paged resources/list of every backend, volume, snapshot and connection (at most 100 a page),
 * each read as the same cinderlib JSON as its entry in `cinderlib-mcp dump`, and -32002 for an
 * unknown one. The store holds a Python cinderlib dump (loaded) and 150 volumes made here.
 */
const FIXTURE = join(REPO_ROOT, 'test', 'fixtures', 'cinderlib-lvm-dump.json');
let root: string;
let server: McpHarness;
let configPath: string;
const MADE = 150;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-resources-'));
  const config = {
    global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(root, 'meta.sqlite')}` } },
    backends: [
      { volume_backend_name: 'lvm', volume_driver: 'cinder.volume.drivers.lvm.LVMVolumeDriver', volume_group: 'no-such-vg', lvm_conf_file: '/nonexistent' },
      { volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'files') },
    ],
  };
  server = await startMcpServer(config, { workDir: root, keepWorkDir: true });
  configPath = join(root, 'config.yaml');
  await server.close();
  const loaded = spawnSync(process.execPath, [BIN, 'load', FIXTURE, '--config', configPath], { encoding: 'utf8', cwd: REPO_ROOT });
  expect(loaded.status, loaded.stderr).toBe(0);
  server = await startMcpServer(config, { workDir: root, keepWorkDir: true });
  for (let i = 0; i < MADE; i++) expect((await server.call('create_volume', { backend: 'files', size: 1, name: `made-${i}` })).isError).toBe(false);
}, 120_000);
afterAll(async () => {
  await server?.close();
  rmSync(root, { recursive: true, force: true });
});

function dumpNow(): any[] {
  const result = spawnSync(process.execPath, [BIN, 'dump', '--config', configPath], { encoding: 'utf8', cwd: REPO_ROOT, maxBuffer: 64 * 1024 * 1024 });
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout);
}

describe('MCP resources', () => {
  it('declares the four resource templates', async () => {
    const { resourceTemplates } = await server.client.listResourceTemplates();
    expect(resourceTemplates.map((t) => t.uriTemplate)).toEqual(['cinderlib://backends/{id}', 'cinderlib://volumes/{id}', 'cinderlib://snapshots/{id}', 'cinderlib://connections/{id}']);
    for (const template of resourceTemplates) expect(template.mimeType).toBe('application/json');
  });

  it('lists every backend, volume, snapshot and connection, at most 100 a page', async () => {
    const uris: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await server.client.listResources(cursor ? { cursor } : {});
      expect(page.resources.length).toBeLessThanOrEqual(100);
      uris.push(...page.resources.map((resource) => resource.uri));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(2);
    expect(new Set(uris).size).toBe(uris.length);
    const kinds = uris.map((uri) => /^cinderlib:\/\/(\w+)\//.exec(uri)![1]);
    expect(kinds.filter((kind) => kind === 'backends')).toHaveLength(2);
    expect(kinds.filter((kind) => kind === 'volumes')).toHaveLength(MADE + 2);
    expect(uris).toContain('cinderlib://snapshots/7e8f9a0b-1c2d-4e3f-a4b5-c6d7e8f9a0b1');
    expect(uris).toContain('cinderlib://connections/0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f');
    await expect(server.client.listResources({ cursor: 'not-a-cursor' })).rejects.toThrow(/cursor is not one this server issued/);
  });

  it('reads each object as the same cinderlib JSON as its entry in dump; secrets masked', async () => {
    const dumped = dumpNow();
    const read = async (uri: string) => {
      const { contents } = await server.client.readResource({ uri });
      expect(contents).toHaveLength(1);
      expect(contents[0].mimeType).toBe('application/json');
      return JSON.parse(String((contents[0] as { text?: string }).text));
    };
    const connectedEntry = dumped[0].volumes[0];
    expect(await read('cinderlib://volumes/5b7c9a6e-2f1d-4c3b-9a8e-1d2c3b4a5f60')).toEqual(connectedEntry);
    const volumeData = connectedEntry.ovo['versioned_object.data'];
    const snapshot = await read('cinderlib://snapshots/7e8f9a0b-1c2d-4e3f-a4b5-c6d7e8f9a0b1');
    expect(snapshot).toEqual({ class: 'Snapshot', backend: { volume_backend_name: 'lvm' }, ovo: volumeData.snapshots['versioned_object.data'].objects[0] });
    const connection = await read('cinderlib://connections/0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f');
    expect(connection).toEqual({ class: 'Connection', backend: { volume_backend_name: 'lvm' }, ovo: volumeData.volume_attachment['versioned_object.data'].objects[0] });
    expect(connection.ovo['versioned_object.data'].connection_info.conn.data.auth_password).toBe('***');
    // A backend's resource stops at its first 100 volumes; list_volumes pages the rest.
    const files = await read('cinderlib://backends/files');
    expect(files.class).toBe('Backend');
    expect(files.volumes).toEqual(dumped[1].volumes.slice(0, 100));
    expect(await read('cinderlib://backends/lvm')).toEqual(dumped[0]);
  });

  it('answers an unknown resource with -32002, resource not found', async () => {
    for (const uri of [
      'cinderlib://volumes/00000000-0000-4000-8000-000000000000',
      'cinderlib://backends/ceph',
      'cinderlib://pools/x',
      'file:///etc/passwd',
      'cinderlib://volumes/%E0%A4%A',
      `cinderlib://backends/${'x'.repeat(100_000)}`,
    ]) {
      const failure = await server.client.readResource({ uri }).catch((error: unknown) => error);
      expect(failure, uri).toBeInstanceOf(McpError);
      expect((failure as McpError).code, uri).toBe(-32002);
    }
  });
});
