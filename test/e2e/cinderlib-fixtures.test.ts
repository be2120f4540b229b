import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { SqliteVolumeStore } from '../../src/store/sqlite.js';
import { XmsEmulator } from '../emulators/xtremio/server.js';
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
  kaminario: {
    backend: 'kaminario',
    driver: { volume_driver: 'cinder.volume.drivers.kaminario.kaminario_iscsi.KaminarioISCSIDriver', san_ip: '127.0.0.1:9', san_login: 'admin', san_password: 'fixture-password' },
    secrets: [],
  },
  // As far as Cinder's LVM driver got here (no device-mapper): volumes, an extended one, a failed snapshot and clone.
  lvm: {
    backend: 'lvm',
    driver: { volume_driver: 'cinder.volume.drivers.lvm.LVMVolumeDriver', volume_group: 'no-such-vg', lvm_conf_file: '/nonexistent', target_helper: 'tgtadm' },
    secrets: [],
  },
};

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-fixtures-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    cwd: REPO_ROOT,
    env: { ...process.env, XDG_DATA_HOME: join(root, 'xdg') },
    maxBuffer: 64 * 1024 * 1024,
  });
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

describe.each(Object.entries(FIXTURE_BACKENDS))("a dump real cinderlib wrote with Cinder's %s driver", (name, fixture) => {
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
      if (connected) {
        const [attachment] = dataOf(connected).volume_attachment['versioned_object.data'].objects.map((object: any) => object['versioned_object.data']);
        const [connection] = (await server.call('list_connections', { volume_id: dataOf(connected).id })).data.connections;
        expect(connection).toMatchObject({ id: attachment.id, status: 'attached', connector: { initiator: attachment.connector.initiator } });
      }
      for (const volume of volumes) {
        const resource = await server.client.readResource({ uri: `cinderlib://volumes/${dataOf(volume).id}` });
        expect((resource.contents[0] as { text: string }).text).toBe(masked(JSON.stringify(volume), fixture.secrets));
      }
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
    await store.volumes.update(id, { size: record.size + 3 });
    await store.close();

    const expected = JSON.parse(python);
    const changed = expected[0].volumes.find((volume: any) => dataOf(volume).id === id);
    dataOf(changed).size += 3;
    expect(cli('dump', '--config', config).stdout).toBe(masked(JSON.stringify(expected), fixture.secrets));
  });
});

/** Ids, times and the portal Cinder's driver picks at random stand aside; every key, its place and every other value stay. */
function skeleton(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(skeleton);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, skeleton(item)]));
  if (typeof value !== 'string') return value;
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(value)) return '<uuid>';
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/.test(value)) return '<time>';
  if (/^iqn\.2008-05\.com\.xtremio:00[12]e67939c34$/.test(value)) return '<xms target>';
  if (/^127\.0\.0\.1[12]:3260$/.test(value)) return '<xms portal>';
  return value;
}

describe('objects made here, as real cinderlib makes them with the same driver', () => {
  it("XtremIO: each volume, snapshot and connection has cinderlib's fields, order and values", async () => {
    const xms = await new XmsEmulator({ password: 'fixture-password' }).start();
    const fixture = FIXTURE_BACKENDS.xtremio;
    const { config } = writeConfig('made-here', { ...fixture, driver: { ...fixture.driver, san_ip: xms.address, san_login: xms.username, driver_ssl_cert_path: xms.certs.caPath } });
    const connector = {
      platform: 'x86_64',
      os_type: 'linux',
      ip: '127.0.0.1',
      host: 'fixture-host',
      multipath: false,
      initiator: 'iqn.1993-08.org.debian:01:fixture0001',
      do_local_attach: false,
    };
    const server = await startMcpServer(null, { args: ['--config', config], workDir: mkdtempSync(join(root, 'server-')) });
    try {
      // The steps test/fixtures/cinderlib/make/make_array_dump.py took with cinderlib.
      const made = async (tool: string, args: Record<string, unknown>) => {
        const answer = await server.call(tool, args);
        expect(answer.isError, answer.text).toBe(false);
        return answer.data;
      };
      const available = await made('create_volume', { backend: 'xtremio', size: 1, name: 'available', description: 'an available volume' });
      const connected = await made('create_volume', { backend: 'xtremio', size: 1, name: 'connected' });
      await made('connect_volume', { volume_id: connected.id, connector });
      const snap = await made('create_snapshot', { volume_id: available.id, name: 'snap', description: 'a snapshot' });
      await made('create_volume', { backend: 'xtremio', size: 1, name: 'from-snapshot', snapshot_id: snap.id });
      await made('create_volume', { backend: 'xtremio', size: 1, name: 'clone', source_volume_id: available.id });
      const extended = await made('create_volume', { backend: 'xtremio', size: 1, name: 'extended' });
      await made('extend_volume', { volume_id: extended.id, new_size: 2 });
    } finally {
      await server.close();
      await xms.stop();
    }
    const ours = JSON.parse(cli('dump', '--config', config).stdout)[0].volumes;
    const python = JSON.parse(readFileSync(join(FIXTURES, 'xtremio-dump.json'), 'utf8'))[0].volumes.slice(0, ours.length);
    // As text, so that key order counts.
    expect(JSON.stringify(skeleton(ours), null, 1)).toBe(JSON.stringify(skeleton(python), null, 1));
  });
});
