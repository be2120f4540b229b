import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { formatDatetime } from '../../src/serialization/ovo.js';
import { SqliteVolumeStore } from '../../src/store/sqlite.js';
import { BIN, REPO_ROOT, startMcpServer } from '../helpers/server.js';

/**
 * Contract section 15 against dumps the real Python cinderlib 5.0.0 wrote, with Cinder 21's own
 * drivers (test/fixtures/cinderlib/README.md says how each was made): each loads, is served over
 * MCP, and dumps back byte for byte (cl.dumps() and Backend.dumps, each with its own separators);
 * a change made here afterwards rewrites that field alone.
 */
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'cinderlib');

interface Fixture {
  backend: string;
  driver: Record<string, unknown>;
  /** Secrets the fixture holds in clear, which any dump of ours shows as "***". */
  secrets: string[];
}

const FIXTURE_BACKENDS: Record<string, Fixture> = {
  xtremio: {
    backend: 'xtremio',
    // Never contacted: dump and load work from the store alone, and the tools below only read.
    driver: { volume_driver: 'cinder.volume.drivers.dell_emc.xtremio.XtremIOISCSIDriver', san_ip: '127.0.0.1:9', san_login: 'admin', san_password: 'fixture-password' },
    secrets: [],
  },
};

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-fixtures-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: REPO_ROOT, env: { ...process.env, XDG_DATA_HOME: join(root, 'xdg') }, maxBuffer: 64 * 1024 * 1024 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

function writeConfig(name: string, fixture: Fixture): { config: string; database: string } {
  const database = join(root, `${name}.sqlite`);
  const config = join(root, `${name}.yaml`);
  // The fixtures were made on a host named "vm": cinderlib's `host` field says so.
  writeFileSync(
    config,
    stringify({
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${database}` }, host: 'vm' },
      backends: [{ volume_backend_name: fixture.backend, ...fixture.driver }],
    }),
  );
  return { config, database };
}

const dataOf = (object: any) => object.ovo['versioned_object.data'];

function masked(text: string, secrets: string[]): string {
  return secrets.reduce((out, secret) => out.split(secret).join('***'), text);
}

describe.each(Object.entries(FIXTURE_BACKENDS))('a dump real cinderlib wrote with Cinder\'s %s driver', (name, fixture) => {
  const dumpFile = join(FIXTURES, `${name}-dump.json`);
  const backendDumpFile = join(FIXTURES, `${name}-backend-dump.json`);
  const python = readFileSync(dumpFile, 'utf8');
  const volumes: any[] = JSON.parse(python)[0].volumes;

  it('loads, is served over MCP, and dumps back byte for byte', async () => {
    const { config } = writeConfig(name, fixture);
    const loaded = cli('load', dumpFile, '--config', config);
    expect(loaded.code, loaded.stderr).toBe(0);

    const server = await startMcpServer(null, { args: ['--config', config], workDir: mkdtempSync(join(root, 'server-')) });
    try {
      const listed = (await server.call('list_volumes', { backend: fixture.backend })).data.volumes;
      expect(listed.map((volume: any) => [volume.id, volume.name, volume.size, volume.status])).toEqual(
        volumes.map((volume) => [dataOf(volume).id, dataOf(volume).display_name ?? '', dataOf(volume).size, dataOf(volume).status]),
      );
      const connected = volumes.find((volume) => dataOf(volume).volume_attachment['versioned_object.data'].objects.length > 0);
      const [attachment] = dataOf(connected).volume_attachment['versioned_object.data'].objects.map((object: any) => object['versioned_object.data']);
      const [connection] = (await server.call('list_connections', { volume_id: dataOf(connected).id })).data.connections;
      expect(connection).toMatchObject({ id: attachment.id, status: 'attached', connector: { initiator: attachment.connector.initiator } });
      const resource = await server.client.readResource({ uri: `cinderlib://volumes/${dataOf(connected).id}` });
      expect((resource.contents[0] as { text: string }).text).toBe(masked(JSON.stringify(connected), fixture.secrets));
    } finally {
      await server.close();
    }

    const dumped = cli('dump', '--config', config);
    expect(dumped.code, dumped.stderr).toBe(0);
    expect(dumped.stdout).toBe(masked(python, fixture.secrets));
    if (existsSync(backendDumpFile)) expect(cli('dump', '--config', config, '--backend', fixture.backend).stdout).toBe(masked(readFileSync(backendDumpFile, 'utf8'), fixture.secrets));
  });

  it('rewrites only what changed here since the load', async () => {
    const { config, database } = writeConfig(`${name}-changed`, fixture);
    expect(cli('load', dumpFile, '--config', config).code).toBe(0);
    const grown = volumes.find((volume) => dataOf(volume).status === 'available' && dataOf(volume).snapshots['versioned_object.data'].objects.length === 0);
    const id = dataOf(grown).id;
    const store = new SqliteVolumeStore(database);
    const record = (await store.volumes.get(id))!;
    const updated = (await store.volumes.update(id, { size: record.size + 3 }))!;
    await store.close();

    const expected = JSON.parse(python);
    const changed = expected[0].volumes.find((volume: any) => dataOf(volume).id === id);
    dataOf(changed).size += 3;
    dataOf(changed).updated_at = formatDatetime(updated.updated_at);
    expect(cli('dump', '--config', config).stdout).toBe(masked(JSON.stringify(expected), fixture.secrets));
  });
});
