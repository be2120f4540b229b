import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { BIN, REPO_ROOT, startMcpServer, type McpHarness } from '../helpers/server.js';

/**
 * Contract section 11: a dump (or a store row) is hostile until checked. A CHAP string carrying a
 * tgt config line, a connector with a quote, a device path outside /dev are refused by `load`,
 * naming the object and the field, with nothing written; a loaded attachment whose device is some
 * other file's loop device detaches nothing but its own volume's.
 */
let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-untrusted-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function writeConfig(name: string, volumesDir = join(root, `${name}-files`)): string {
  const path = join(root, `${name}.yaml`);
  writeFileSync(
    path,
    stringify({
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(root, `${name}.sqlite`)}` } },
      backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: volumesDir }],
    }),
  );
  return path;
}

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: REPO_ROOT, env: { ...process.env, XDG_DATA_HOME: join(root, 'xdg') } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const dataOf = (object: any) => object.ovo['versioned_object.data'];

/** A dump of one file volume made by the server itself (after `act` on it), to be tampered with. */
async function dumpOfOneVolume(name: string, act: (server: McpHarness, volumeId: string) => Promise<void> = async () => undefined): Promise<any[]> {
  const config = writeConfig(name);
  const server = await startMcpServer(null, { args: ['--config', config], workDir: mkdtempSync(join(root, 'server-')) });
  try {
    const volume = (await server.call('create_volume', { backend: 'files', size: 1, name: 'victim' })).data;
    await act(server, volume.id);
  } finally {
    await server.close();
  }
  const dumped = cli('dump', '--config', config);
  expect(dumped.code, dumped.stderr).toBe(0);
  return JSON.parse(dumped.stdout);
}

/** A volume_attachment list as cinderlib nests it in a Volume, holding one attachment. */
function attachmentList(volumeId: string, attachmentId: string, connector: Record<string, unknown>, conn: Record<string, unknown>, device: unknown): unknown {
  const ovo = (name: string, version: string, data: unknown) => ({
    'versioned_object.name': name,
    'versioned_object.namespace': 'cinder',
    'versioned_object.version': version,
    'versioned_object.data': data,
  });
  const attachment = { id: attachmentId, volume_id: volumeId, attach_status: 'attached', attach_mode: 'rw', connector, connection_info: { conn, connector, device } };
  return ovo('VolumeAttachmentList', '1.1', { objects: [ovo('VolumeAttachment', '1.3', attachment)] });
}

function loadInto(name: string, dump: unknown, volumesDir?: string): { code: number | null; stderr: string; config: string } {
  const config = writeConfig(name, volumesDir);
  const file = join(root, `${name}.json`);
  writeFileSync(file, JSON.stringify(dump));
  return { ...cli('load', file, '--config', config), config };
}

function storedVolumes(config: string): number {
  const dumped = cli('dump', '--config', config);
  return JSON.parse(dumped.stdout).flatMap((backend: any) => backend.volumes).length;
}

describe('load refuses what this server would never have written', () => {
  let base: any[];
  beforeAll(async () => {
    base = await dumpOfOneVolume('base');
  });

  const tampered = (change: (volume: any) => void) => {
    const copy = structuredClone(base);
    change(dataOf(copy[0].volumes[0]));
    return copy;
  };

  it('a provider_auth that carries a tgt config line (a backing-store of some other file)', () => {
    const dump = tampered((volume) => {
      volume.provider_auth = 'CHAP u000000000000000000 p000000000000000\n\tbacking-store\t/etc/shadow\n';
    });
    const loaded = loadInto('chap-injection', dump);
    expect(loaded.code).toBe(1);
    expect(loaded.stderr).toMatch(/\.ovo\.versioned_object\.data: volume [0-9a-f-]{36}: provider_auth must be "CHAP <username> <password>"/);
    expect(loaded.stderr).toMatch(/nothing was loaded/);
    expect(loaded.stderr).not.toContain('p000000000000000');
    expect(storedVolumes(loaded.config)).toBe(0);
  });

  it('a provider_location with control characters', () => {
    const loaded = loadInto(
      'location',
      tampered((volume) => (volume.provider_location = 'x\n<target evil>')),
    );
    expect(loaded.code).toBe(1);
    expect(loaded.stderr).toMatch(/provider_location must be printable ASCII/);
    expect(storedVolumes(loaded.config)).toBe(0);
  });

  const withAttachment = (connector: Record<string, unknown>, data: Record<string, unknown>, device: unknown = null) =>
    tampered((volume) => {
      volume.status = 'in-use';
      volume.volume_attachment = attachmentList(volume.id, '3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b', connector, { driver_volume_type: 'iscsi', data }, device);
    });
  const iscsiData = {
    target_discovered: false,
    target_iqn: 'iqn.2010-10.org.openstack:volume-x',
    target_portal: '127.0.0.1:3260',
    target_lun: 1,
    auth_method: 'CHAP',
    auth_username: 'u',
    auth_password: '***',
  };

  it('a connector whose initiator holds a quote, and accepts the same dump with a real IQN', () => {
    const bad = loadInto('quote', withAttachment({ host: 'h', initiator: 'iqn.1994-05.com.example:h"; rm -rf /' }, iscsiData));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/connection 3f1c2b4a-[^:]*: connector\.initiator must be an iSCSI name of RFC 3720's characters/);
    expect(storedVolumes(bad.config)).toBe(0);
    const good = loadInto('iqn', withAttachment({ host: 'h', initiator: 'iqn.1994-05.com.example:h' }, iscsiData));
    expect(good.code, good.stderr).toBe(0);
    expect(storedVolumes(good.config)).toBe(1);
  });

  it('iSCSI details a host would log in to that no driver answers, and a device outside /dev', () => {
    const portal = loadInto('portal', withAttachment({ host: 'h' }, { ...iscsiData, target_portal: '127.0.0.1:3260 --op delete' }));
    expect(portal.stderr).toMatch(/connection_info\.data\.target_portal: must be address:port/);
    const device = loadInto('device', withAttachment({ host: 'h' }, iscsiData, { type: 'block', path: '/dev/../etc/passwd' }));
    expect(device.stderr).toMatch(/device\.path must be a device node under \/dev/);
    expect([portal.code, device.code]).toEqual([1, 1]);
  });

  it('connect_volume refuses an initiator with a quote before anything is exported', async () => {
    const server = await startMcpServer({ backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'connect-files') }] });
    try {
      const volume = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
      const answer = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'h', initiator: 'iqn.1994-05.com.example:h"x' } });
      expect(answer.text).toMatch(/^INVALID_ARGUMENT: .*connector\.initiator must be an iSCSI name/);
      expect((await server.call('list_connections', { volume_id: volume.id })).data.connections).toEqual([]);
    } finally {
      await server.close();
    }
  });
});

const asRoot = process.getuid?.() === 0;
const needsRoot = !asRoot && process.env.CI !== 'true';

describe.skipIf(needsRoot)('detach_volume of a loaded attachment (root: loop devices)', () => {
  it("releases no loop device but its own volume's, whatever device and file the dump names", async () => {
    expect(asRoot, 'this test needs root to attach loop devices').toBe(true);
    const foreign = join(root, 'someone-elses.img');
    execFileSync('truncate', ['-s', '16M', foreign]);
    const foreignLoop = execFileSync('losetup', ['--find', '--show', foreign], { encoding: 'utf8' }).trim();
    try {
      const dump = await dumpOfOneVolume('attached', async (server, volumeId) => {
        const attached = await server.call('attach_volume', { volume_id: volumeId });
        expect(attached.isError, attached.text).toBe(false);
        // Detach for real, then forget the record: the dump still holds the attachment.
        const detached = await server.call('detach_volume', { connection_id: attached.data.id });
        expect(detached.isError, detached.text).toBe(false);
      });
      // The dump was taken after the detach, so add the attachment back, pointed at the foreign loop device and file.
      const volume = dataOf(dump[0].volumes[0]);
      volume.status = 'in-use';
      const here = { host: hostname() };
      volume.volume_attachment = attachmentList(
        volume.id,
        '6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d',
        here,
        { driver_volume_type: 'local', data: { device_path: foreign, volume_id: volume.id } },
        { type: 'block', path: foreignLoop },
      );
      const loaded = loadInto('attached-restore', dump, join(root, 'attached-files'));
      expect(loaded.code, loaded.stderr).toBe(0);
      const server = await startMcpServer(null, { args: ['--config', loaded.config], workDir: mkdtempSync(join(root, 'server-')) });
      try {
        const detached = await server.call('detach_volume', { connection_id: '6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d' });
        expect(detached.isError, detached.text).toBe(false);
      } finally {
        await server.close();
      }
      // The foreign file is still on its loop device.
      expect(execFileSync('losetup', ['--noheadings', '--output', 'BACK-FILE', foreignLoop], { encoding: 'utf8' }).trim()).toBe(foreign);
    } finally {
      spawnSync('losetup', ['--detach', foreignLoop]);
    }
    expect(existsSync(foreign)).toBe(true);
  });
});
