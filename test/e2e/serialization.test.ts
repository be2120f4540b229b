import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { SqliteVolumeStore } from '../../src/store/sqlite.js';
import { BIN, REPO_ROOT, startMcpServer } from '../helpers/server.js';
import { LOOP_ATTACH_HERE } from '../helpers/scenarios.js';

/**
 * Contract section 9's dump and load, through the built command: a dump written by hand from
 * Python cinderlib's sources (an LVM backend with a connected volume, its snapshot, and a volume
 * made from it carrying a volume type and metadata this project does not model) loads; nothing in
 * a dump is a secret; dump, load into an empty store, dump again gives the same JSON; and every
 * bad dump is refused naming what is wrong, with nothing written.
 */
const FIXTURE = join(REPO_ROOT, 'test', 'fixtures', 'cinderlib-lvm-dump.json');
const PYTHON_DUMP = JSON.parse(readFileSync(FIXTURE, 'utf8'));
const CHAP_PASSWORD = 'u7Kd9mXq2PbN4sLe';
let root: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-serialization-'));
});
afterAll(() => {
  detachLoopDevicesUnder(root);
  rmSync(root, { recursive: true, force: true });
});

/** The net under the round-trip test's own detach: a loop device left on a file of this test (a failed run) is detached before the file goes. */
function detachLoopDevicesUnder(dir: string): void {
  if (LOOP_ATTACH_HERE !== 'works') return;
  const listed = spawnSync('losetup', ['--list', '--noheadings', '--raw', '--output', 'NAME,BACK-FILE'], { encoding: 'utf8' });
  for (const line of listed.stdout?.split('\n') ?? []) {
    const [device, file] = line.split(/ (.*)/s);
    if (device && file?.startsWith(`${dir}/`)) spawnSync('losetup', ['--detach', device]);
  }
}

/** A config whose LVM backend cannot initialize here (no such volume group): dump and load never ask it. */
function writeConfig(name: string): string {
  const path = join(root, `${name}.yaml`);
  writeFileSync(
    path,
    stringify({
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(root, `${name}.sqlite`)}` }, host: 'storage02' },
      backends: [
        { volume_backend_name: 'lvm', volume_driver: 'cinder.volume.drivers.lvm.LVMVolumeDriver', volume_group: 'no-such-vg', lvm_conf_file: '/nonexistent' },
        { volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, `${name}-files`) },
      ],
    }),
  );
  return path;
}

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    cwd: REPO_ROOT,
    env: { ...process.env, XDG_DATA_HOME: join(root, 'xdg') },
    maxBuffer: 256 * 1024 * 1024,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const dump = (config: string, ...extra: string[]) => {
  const result = cli('dump', '--config', config, ...extra);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout);
};

function writeDumpFile(name: string, content: unknown): string {
  const path = join(root, name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

const volumesOf = (dumped: any[]) => dumped.flatMap((backend) => backend.volumes);
const dataOf = (object: any) => object.ovo['versioned_object.data'];

describe('cinderlib-mcp load and dump', () => {
  it('loads a dump written by Python cinderlib: volumes, snapshot and connection, served over MCP afterwards', async () => {
    const config = writeConfig('python');
    const loaded = cli('load', FIXTURE, '--config', config);
    expect(loaded.code, loaded.stderr).toBe(0);
    expect(loaded.stderr).toMatch(/loaded 2 volume\(s\), 1 snapshot\(s\) and 1 connection\(s\) for backend\(s\) lvm/);

    const server = await startMcpServer(null, { args: ['--config', config], workDir: mkdtempSync(join(root, 'server-')) });
    try {
      const volumes = (await server.call('list_volumes', { backend: 'lvm' })).data.volumes;
      expect(volumes).toEqual([
        expect.objectContaining({ id: '5b7c9a6e-2f1d-4c3b-9a8e-1d2c3b4a5f60', name: 'disk', size: 1, status: 'in-use', pool_name: 'lvm', created_at: '2023-09-14T10:21:33.123456Z' }),
        expect.objectContaining({
          id: '9d0e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a',
          name: '',
          description: 'restored copy',
          size: 2,
          status: 'available',
          bootable: true,
          snapshot_id: '7e8f9a0b-1c2d-4e3f-a4b5-c6d7e8f9a0b1',
        }),
      ]);
      const snapshot = (await server.call('get_snapshot', { snapshot_id: '7e8f9a0b-1c2d-4e3f-a4b5-c6d7e8f9a0b1' })).data;
      expect(snapshot).toMatchObject({ volume_id: '5b7c9a6e-2f1d-4c3b-9a8e-1d2c3b4a5f60', name: 'before-upgrade', volume_size: 1, status: 'available', backend: 'lvm' });
      const [connection] = (await server.call('list_connections', { volume_id: '5b7c9a6e-2f1d-4c3b-9a8e-1d2c3b4a5f60' })).data.connections;
      expect(connection).toMatchObject({
        id: '0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f',
        status: 'attached',
        connector: { host: 'compute01', initiator: 'iqn.1994-05.com.redhat:compute01' },
        connection_info: { driver_volume_type: 'iscsi', data: { target_lun: 0, auth_username: 'gZ8bKqxjN3pQ2hR7tWvY', auth_password: '***' } },
        device: { type: 'block', path: '/dev/sdb' },
      });
      expect(server.stderr()).not.toContain(CHAP_PASSWORD);
    } finally {
      await server.close();
    }
    // The host's administrator still reads the loaded credentials.
    const secret = cli('connection-secret', '0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f', '--config', config);
    expect(secret.stdout).toBe(`auth_username: gZ8bKqxjN3pQ2hR7tWvY\nauth_password: ${CHAP_PASSWORD}\n`);
  });

  it('dumps what it loaded byte for byte as cinderlib writes it, with no secret in it', () => {
    const config = join(root, 'python.yaml');
    const text = cli('dump', '--config', config).stdout;
    // Byte for byte cinderlib's compact JSON of what was loaded, but for the secrets, which read "***".
    const masked = structuredClone(PYTHON_DUMP[0]);
    dataOf(masked.volumes[0]).provider_auth = '***';
    dataOf(masked.volumes[0]).volume_attachment['versioned_object.data'].objects[0]['versioned_object.data'].connection_info.conn.data.auth_password = '***';
    expect(JSON.parse(cli('dump', '--config', config, '--backend', 'lvm').stdout)).toEqual(masked);
    expect(text).not.toContain(CHAP_PASSWORD);
    expect(text).not.toContain('gZ8bKqxjN3pQ2hR7tWvY u7Kd9mXq2PbN4sLe');
    const dumped = JSON.parse(text);
    expect(dumped.map((backend: any) => backend.backend)).toEqual([{ volume_backend_name: 'lvm' }, { volume_backend_name: 'files' }]);
    const [connected, restored] = volumesOf(dumped);
    const [pythonConnected, pythonRestored] = volumesOf(PYTHON_DUMP);
    // Field for field as Python wrote them, but for the secrets, which read "***".
    const expectedConnected = structuredClone(pythonConnected);
    dataOf(expectedConnected).provider_auth = '***';
    const attachment = dataOf(expectedConnected).volume_attachment['versioned_object.data'].objects[0]['versioned_object.data'];
    attachment.connection_info.conn.data.auth_password = '***';
    expect(connected).toEqual(expectedConnected);
    expect(restored).toEqual(pythonRestored);
  });

  it('round-trips exactly: dump, load into an empty store, dump again', async () => {
    const source = writeConfig('ours');
    // Records of this project's own, in every state a dump carries: made through the server ...
    const server = await startMcpServer(null, { args: ['--config', source], workDir: mkdtempSync(join(root, 'server-')) });
    let attached: string | undefined;
    try {
      const volume = (await server.call('create_volume', { backend: 'files', size: 1, name: 'ours', description: 'made here' })).data;
      await server.call('create_snapshot', { volume_id: volume.id, name: 'point' });
      await server.call('create_volume', { backend: 'files', size: 2 });
      if (LOOP_ATTACH_HERE === 'works') attached = (await server.call('attach_volume', { volume_id: volume.id })).data.id;
    } finally {
      await server.close();
    }
    try {
      await roundTrip(source, attached);
    } finally {
      // The attachment outlives the server, as a host's attachment should: detached here, or its loop device stays on a deleted file.
      if (attached) await detach(source, attached);
    }
  });

  async function detach(config: string, connectionId: string): Promise<void> {
    const server = await startMcpServer(null, { args: ['--config', config], workDir: mkdtempSync(join(root, 'server-')) });
    try {
      expect((await server.call('detach_volume', { connection_id: connectionId })).data).toEqual({ connection_id: connectionId, detached: true });
    } finally {
      await server.close();
    }
  }

  async function roundTrip(source: string, attached: string | undefined): Promise<void> {
    // ... and, written straight into the store, an error record and a CHAP-protected connection.
    const store = new SqliteVolumeStore(join(root, 'ours.sqlite'));
    const now = new Date().toISOString();
    await store.insert({
      id: '11111111-2222-4333-8444-555555555555',
      backend: 'lvm',
      name: 'broken',
      description: '',
      size: 3,
      status: 'error',
      pool_name: 'lvm',
      bootable: false,
      created_at: now,
      updated_at: now,
      status_reason: 'create failed: no such volume group',
      provider_location: null,
      provider_auth: 'CHAP userNameOf20Chars pass16CharsLong',
      failed_operation: 'create',
    });
    await store.insertConnection({
      id: '66666666-7777-4888-8999-aaaaaaaaaaaa',
      volume_id: '11111111-2222-4333-8444-555555555555',
      backend: 'lvm',
      status: 'attached',
      attach_mode: 'rw',
      connector: { host: 'h', initiator: 'iqn.1994-05.com.example:h' },
      connection_info: {
        driver_volume_type: 'iscsi',
        data: {
          target_iqn: 'iqn.2010-10.org.openstack:volume-1',
          target_portal: '127.0.0.1:3260',
          target_lun: 1,
          auth_method: 'CHAP',
          auth_username: 'userNameOf20Chars',
          auth_password: 'pass16CharsLong',
        },
      },
      device: null,
      created_at: now,
      updated_at: now,
      status_reason: null,
    });
    await store.close();

    const first = cli('dump', '--config', source).stdout;
    expect(first).not.toContain('pass16CharsLong');
    const firstDump = JSON.parse(first);
    const broken = volumesOf(firstDump).find((v: any) => dataOf(v).id === '11111111-2222-4333-8444-555555555555');
    // As cinderlib writes a failed create: Cinder's status, nothing of its own beside the object; connections never change attach_status.
    expect(broken.ovo).not.toHaveProperty('cinderlib.data');
    expect(dataOf(broken)).toMatchObject({ status: 'error', host: 'storage02@lvm#lvm', provider_auth: '***', attach_status: 'detached' });
    if (attached) expect(first).toContain('"device":{"type":"block","path":"/dev/loop');

    const file = writeDumpFile('ours.json', first);
    const copy = writeConfig('copy');
    const loaded = cli('load', file, '--config', copy);
    expect(loaded.code, loaded.stderr).toBe(0);
    expect(cli('dump', '--config', copy).stdout).toBe(first);
    // Both ways of writing one backend: cinderlib's backend.dumps, which load takes too.
    const files = dump(source, '--backend', 'files');
    expect(files).toEqual(firstDump[1]);
    const single = writeConfig('single');
    expect(cli('load', writeDumpFile('files.json', files), '--config', single).code).toBe(0);
    expect(dump(single, '--backend', 'files')).toEqual(files);
  }

  it('refuses a bad dump naming what is wrong, and writes nothing', () => {
    const config = writeConfig('refusals');
    const before = dump(config);
    const withVolume = (mutate: (volume: any) => void) => {
      const copy = structuredClone(PYTHON_DUMP);
      mutate(copy[0].volumes[0]);
      return copy;
    };
    const cases: Array<[string, unknown, RegExp]> = [
      ['not-json.json', '{"class": "Backend", ', /is not JSON/],
      [
        'unknown-backend.json',
        structuredClone(PYTHON_DUMP).map((b: any) => ({ ...b, backend: { volume_backend_name: 'ceph' } })),
        /backend "ceph" is not in this server's config \(its backends: lvm, files\)/,
      ],
      ['bad-size.json', withVolume((v) => (dataOf(v).size = 'big')), /\[0\]\.volumes\[0\]\.ovo\.versioned_object\.data\.size: size must be a whole number of GiB/],
      ['bad-id.json', withVolume((v) => (dataOf(v).id = '../../etc/passwd')), /data\.id: id must be a UUID/],
      ['duplicate.json', [...structuredClone(PYTHON_DUMP), ...structuredClone(PYTHON_DUMP)], /^.*ALREADY_EXISTS: .*volume 5b7c9a6e-2f1d-4c3b-9a8e-1d2c3b4a5f60 appears twice/],
      ['wrong-class.json', withVolume((v) => (v.class = 'Backup')), /class must be "Volume"/],
      [
        'foreign-snapshot.json',
        withVolume((v) => (dataOf(v).snapshots['versioned_object.data'].objects[0]['versioned_object.data'].volume_id = '9d0e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a')),
        /not of the volume it is nested in/,
      ],
      ['proto.json', '[{"class":"Backend","backend":{"volume_backend_name":"lvm"},"volumes":[],"__proto__":{"polluted":true}}]', /the key "__proto__" is not a field/],
      ['deep.json', `${'['.repeat(100_000)}${']'.repeat(100_000)}`, /nested deeper than 64 levels/],
      [
        'no-connection-info.json',
        withVolume((v) => (dataOf(v).volume_attachment['versioned_object.data'].objects[0]['versioned_object.data'].connection_info = null)),
        /connection_info must be cinderlib's \{conn, connector, device\?\}/,
      ],
    ];
    for (const [name, content, expected] of cases) {
      const result = cli('load', writeDumpFile(name, content), '--config', config);
      expect(result.code, name).toBe(1);
      expect(result.stderr, name).toMatch(expected);
      expect(result.stderr, name).toMatch(/nothing was loaded/);
      expect(result.stderr, name).not.toContain(CHAP_PASSWORD);
    }
    const huge = join(root, 'huge.json');
    spawnSync('truncate', ['-s', '600M', huge]);
    expect(cli('load', huge, '--config', config).stderr).toMatch(/larger than 500 MiB/);
    expect(cli('load', root, '--config', config).stderr).toMatch(/not a regular file \(a directory\)/);
    expect(cli('load', join(root, 'missing.json'), '--config', config).stderr).toMatch(/ENOENT/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();

    // A dump whose ids are already in the store writes nothing, not even its new objects.
    expect(cli('load', FIXTURE, '--config', config).code).toBe(0);
    const loadedOnce = dump(config);
    const again = withVolume(() => undefined);
    again[0].volumes.unshift(structuredClone(PYTHON_DUMP[0].volumes[1]));
    dataOf(again[0].volumes[0]).id = 'abcdefab-cdef-4abc-8def-abcdefabcdef';
    const refused = cli('load', writeDumpFile('again.json', again), '--config', config);
    expect(refused.stderr).toMatch(/ALREADY_EXISTS: volume 5b7c9a6e-2f1d-4c3b-9a8e-1d2c3b4a5f60 is already in the metadata store; nothing was loaded/);
    expect(dump(config)).toEqual(loadedOnce);
    expect(before.every((backend: any) => backend.volumes.length === 0)).toBe(true);
  });

  it('dumps beside a running server, names an unknown --backend, and refuses to load into a store a server holds', async () => {
    const config = writeConfig('python');
    const server = await startMcpServer(null, { args: ['--config', config], workDir: mkdtempSync(join(root, 'server-')) });
    try {
      await server.call('list_backends');
      expect(volumesOf(dump(config))).toHaveLength(2);
      const unknown = cli('dump', '--config', config, '--backend', 'ceph');
      expect(unknown).toMatchObject({ code: 1, stdout: '' });
      expect(unknown.stderr).toMatch(/backend "ceph" is not in the config; its backends: lvm, files/);
      const held = cli('load', FIXTURE, '--config', config);
      expect(held.code).toBe(1);
      expect(held.stderr).toMatch(/in use by cinderlib-mcp pid \d+.*stop the server that holds it first/);
    } finally {
      await server.close();
    }
  });
});
