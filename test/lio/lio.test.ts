import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LioTarget, type LioSettings } from '../../drivers/kit/targets/index.js';
import { LocalRunner } from '../../drivers/kit/exec/local.js';
import type { CommandRunner } from '../../drivers/kit/exec/runner.js';
import { StorageError } from '../../src/base/errors.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { startMcpServer, type McpHarness } from '../helpers/server.js';
import { runBriefMarker, watchCommandLines } from '../iscsi/cmdline-watch.js';
import { lvmPrerequisites, makeVolumeGroup, type VolumeGroupFixture } from '../lvm/fixtures.js';
import { makeConfigfsStandin, type ConfigfsStandin } from './configfs-standin.js';
import { connectionSecret } from '../helpers/connection-secret.js';

/**
 * target_helper: lioadm against the configfs stand-in (configfs-standin.ts): these hosts have no
 * LIO, so what is checked is the tree a kernel would read, not a kernel's answer to it.
 */
const inCi = process.env.CI === 'true';
const PREFIX = 'iqn.2010-10.org.openstack:';
const HOST_A = 'iqn.1994-05.com.example:host-a';
const HOST_B = 'iqn.1994-05.com.example:host-b';
const GIB = 1024 ** 3;

function prerequisites(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (loop devices, device nodes)';
  for (const binary of ['/usr/bin/perl', '/usr/bin/cc', '/usr/sbin/losetup']) if (!existsSync(binary)) return `needs ${binary} (apt-get install perl gcc mount)`;
  return undefined;
}
const missing = prerequisites();

const refusal = async (attempt: Promise<unknown>) => {
  const error = await attempt.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(StorageError);
  return error as StorageError;
};

describe('lioadm on a host without LIO (this one: no /sys/kernel/config/target)', () => {
  it.skipIf(existsSync('/sys/kernel/config/target'))('answers UNSUPPORTED naming tgtadm before touching anything, and says so as the export being unavailable', async () => {
    const calls: string[][] = [];
    const local = new LocalRunner();
    const runner: CommandRunner = {
      target: 'this host',
      run: (argv, options) => (calls.push([...argv]), local.run(argv, options)),
      isRoot: async () => true,
      close: async () => undefined,
    };
    const target = new LioTarget(
      { backendName: 'nolio', ipAddress: '127.0.0.1', port: 3260, prefix: PREFIX, configfsRoot: '/sys/kernel/config/target' },
      { runner, privileged: async () => [], prepareBacking: async () => void calls.push(['prepare']) },
      () => '/nonexistent/volume',
      { secrets: new SecretRegistry(), log: createLogger('lio-test') },
    );
    await target.probe();
    expect(target.unavailable).toMatch(/^backend "nolio": target_helper "lioadm" needs the kernel's LIO target .*set target_helper: tgtadm/);
    const error = await refusal(target.createExport({ id: randomUUID(), size: 1, pool_name: 'p', provider_auth: null }));
    expect(error.code).toBe('UNSUPPORTED');
    expect(error.message).toContain('tgtadm');
    // Only the look for configfs ran: nothing was activated, nothing written.
    expect(calls.filter((argv) => argv[0] !== 'perl')).toEqual([]);
    expect(calls.length).toBe(2);
  });

  it.skipIf(existsSync('/sys/kernel/config/target'))('through the server: capabilities say no exports, connect_volume is UNSUPPORTED naming tgtadm', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-nolio-'));
    const server = await startMcpServer({ backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(dir, 'volumes'), target_helper: 'lioadm' }] });
    try {
      const backend = (await server.call('list_backends')).data.backends.find((b: { id: string }) => b.id === 'files');
      expect(backend.capabilities.exports).toBe(false);
      const volume = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
      const refused = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'a', initiator: HOST_A } });
      expect(refused.text).toMatch(
        /^UNSUPPORTED: backend "files": target_helper "lioadm" needs the kernel's LIO target \(configfs at \/sys\/kernel\/config\/target\).*target_helper: tgtadm/,
      );
      expect((await server.call('list_connections', { volume_id: volume.id })).data.connections).toEqual([]);
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

if (missing && !inCi) {
  describe.skip(`lioadm against the configfs stand-in (${missing})`, () => {
    it('runs where its prerequisites are', () => undefined);
  });
} else if (missing) {
  describe('lioadm against the configfs stand-in', () => {
    it('has its prerequisites under CI', () => {
      throw new Error(`the LIO suite ${missing}; .ci/run must install them`);
    });
  });
} else {
  let standin: ConfigfsStandin;
  let dir: string;
  const saved: Record<string, string | undefined> = {};
  beforeAll(() => {
    standin = makeConfigfsStandin();
    dir = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-lio-'));
    // The relay (this process's children, and the server's) loads the stand-in's shim.
    for (const [key, value] of Object.entries(standin.env)) {
      saved[key] = process.env[key];
      process.env[key] = value;
    }
  });
  afterAll(() => {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
    standin?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const iqnOf = (volumeId: string) => `${PREFIX}volume-${volumeId}`;
  const tpgOf = (volumeId: string) => `iscsi/${iqnOf(volumeId)}/tpgt_1`;
  /** Only what the kernel was told: the configfs tree minus the attribute files nobody wrote. */
  const leftover = () => standin.tree().filter((line) => !/^(core\/alua|iscsi\/discovery_auth|iscsi\/lio_version|version|dbroot|iscsi\/$|core\/$)/.test(line));

  const expectExported = (volumeId: string, backing: { plugin: 'fileio' | 'iblock'; path: string; control: string }) => {
    const object = `core/${backing.plugin}_0/${iqnOf(volumeId)}`;
    expect(standin.read(`${object}/udev_path`)).toBe(backing.path);
    expect(standin.read(`${object}/control`)).toBe(backing.control);
    expect(standin.read(`${object}/enable`)).toBe('1');
    expect(standin.read(`${object}/wwn/vpd_unit_serial`)).toBe(volumeId);
    const tpg = tpgOf(volumeId);
    expect(standin.read(`${tpg}/attrib/authentication`)).toBe('1');
    // rtstool leaves these at the kernel's defaults: no demo mode, only initiators with an ACL log in.
    expect(standin.read(`${tpg}/attrib/generate_node_acls`)).toBe('0\n');
    expect(standin.read(`${tpg}/attrib/demo_mode_write_protect`)).toBe('1\n');
    expect(standin.read(`${tpg}/enable`)).toBe('1');
    expect(standin.exists(`${tpg}/np/127.0.0.1:3260/iser`)).toBe(true);
    expect(standin.link(`${tpg}/lun/lun_0/${volumeId.slice(-10)}`)).toBe(join(standin.root, object));
  };
  const expectAcl = (volumeId: string, initiator: string, credentials: { username: string; password: string }) => {
    const acl = `${tpgOf(volumeId)}/acls/${initiator}`;
    expect(standin.read(`${acl}/auth/userid`)).toBe(credentials.username);
    expect(standin.read(`${acl}/auth/password`)).toBe(credentials.password);
    expect(standin.link(`${acl}/lun_0/${volumeId.slice(-10)}`)).toBe(join(standin.root, tpgOf(volumeId), 'lun/lun_0'));
    expect(standin.read(`${acl}/lun_0/write_protect`)).toBe('0');
  };

  it('the stand-in answers as configfs does: attributes appear with their object, misplaced mkdir, misspelt attribute, linked or non-empty rmdir refused', () => {
    const perl = (code: string) => spawnSync('perl', ['-e', code, standin.root], { encoding: 'utf8', env: process.env }).stdout.trim();
    const tpg = 'iscsi/iqn.2003-01.org.example:standin/tpgt_1';
    const script = [
      'my $r = shift; my @out;',
      'sub try { my ($ok) = @_; push @out, $ok ? "ok" : ($!{EPERM} ? "EPERM" : $!{ENOENT} ? "ENOENT" : $!{EBUSY} ? "EBUSY" : $!{ENOTEMPTY} ? "ENOTEMPTY" : "other") }',
      'try(mkdir "$r/iscsi"); try(mkdir "$r/iscsi/iqn.2003-01.org.example:standin"); try(mkdir "$r/iscsi/iqn.2003-01.org.example:standin/tpgt_1");',
      `try(mkdir "$r/${tpg}/attrib/extra");`,
      // As the relay opens an attribute (no O_CREAT): a misspelt name is ENOENT. (Creating files is not refused here; the relay never asks to.)
      `use Fcntl; try(sysopen(my $fh, "$r/${tpg}/attrib/authenticaton", O_WRONLY | O_TRUNC));`,
      'try(mkdir "$r/core/fileio_9"); try(mkdir "$r/core/fileio_9/so");',
      `try(mkdir "$r/${tpg}/lun/lun_0"); try(symlink "$r/core/fileio_9/so", "$r/${tpg}/lun/lun_0/x");`,
      'try(rmdir "$r/core/fileio_9/so");',
      `try(rmdir "$r/${tpg}");`,
      `try(unlink "$r/${tpg}/lun/lun_0/x"); try(rmdir "$r/${tpg}/lun/lun_0"); try(rmdir "$r/${tpg}"); try(rmdir "$r/core/fileio_9/so"); try(rmdir "$r/core/fileio_9"); try(rmdir "$r/iscsi/iqn.2003-01.org.example:standin");`,
      'print join(" ", @out);',
    ].join(' ');
    expect(perl(script).split(' ')).toEqual(['ok', 'ok', 'ok', 'EPERM', 'ENOENT', 'ok', 'ok', 'ok', 'ok', 'EBUSY', 'ENOTEMPTY', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
    expect(leftover()).toEqual([]);
  });

  describe('the file driver through the server', () => {
    let server: McpHarness;
    let configPath: string;
    const config = () => ({
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(dir, 'meta.sqlite')}` } },
      backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(dir, 'volumes'), target_helper: 'lioadm', target_ip_address: '127.0.0.1' }],
    });
    beforeAll(async () => {
      configPath = join(dir, 'config.yaml');
      // The server writes its config there, where connection-secret reads it.
      server = await startMcpServer(config(), { workDir: dir, keepWorkDir: true, env: { CINDERLIB_MCP_LIO_CONFIGFS_ROOT: standin.root } });
    });
    afterAll(async () => {
      await server?.close();
    });

    it('connects two initiators, extends, disconnects each, leaves nothing; no CHAP password on any command line', async () => {
      const watch = await watchCommandLines();
      const marker = `lio-marker-${process.pid}-${Date.now()}`;
      let seen: { scans: number; lines: string[] } | undefined;
      let password = '';
      try {
        runBriefMarker(marker);
        const volume = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
        expect((await server.call('list_backends')).data.backends[0].capabilities.exports).toBe(true);
        const path = join(dir, 'volumes', `volume-${volume.id}`);
        const a = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-a', initiator: HOST_A } });
        expect(a.isError, a.text).toBe(false);
        expect(a.data.connection_info).toEqual({
          driver_volume_type: 'iscsi',
          data: {
            target_discovered: false,
            target_iqn: iqnOf(volume.id),
            target_portal: '127.0.0.1:3260',
            target_lun: 0,
            volume_id: volume.id,
            auth_method: 'CHAP',
            auth_username: expect.stringMatching(/^[A-Za-z0-9]{20}$/),
            auth_password: '***',
            encrypted: false,
          },
        });
        const credentials = connectionSecret(configPath, a.data.id);
        password = credentials.password;
        expect(password).toHaveLength(16);
        expectExported(volume.id, { plugin: 'fileio', path, control: `fd_dev_name=${path},fd_dev_size=${GIB}` });
        expectAcl(volume.id, HOST_A, credentials);

        // A second host, its IQN in capitals: the ACL is named as rtslib-fb names it (lower case), same credentials.
        const b = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-b', initiator: HOST_B.toUpperCase().replace('IQN.', 'iqn.'), multipath: true } });
        expect(b.isError, b.text).toBe(false);
        expect(b.data.connection_info.data).toMatchObject({ target_iqns: [iqnOf(volume.id)], target_portals: ['127.0.0.1:3260'], target_luns: [0] });
        expectAcl(volume.id, HOST_B.toLowerCase(), credentials);

        const extended = await server.call('extend_volume', { volume_id: volume.id, new_size: 2 });
        expect(extended.isError, extended.text).toBe(false);
        expect(statSync(path).size).toBe(2 * GIB);
        expect(standin.read(`core/fileio_0/${iqnOf(volume.id)}/control`)).toBe(`fd_dev_size=${2 * GIB}`);

        expect((await server.call('disconnect_volume', { connection_id: a.data.id })).isError).toBe(false);
        expect(standin.exists(`${tpgOf(volume.id)}/acls/${HOST_A}`)).toBe(false);
        expectAcl(volume.id, HOST_B.toLowerCase(), credentials);
        expectExported(volume.id, { plugin: 'fileio', path, control: `fd_dev_size=${2 * GIB}` });

        expect((await server.call('disconnect_volume', { connection_id: b.data.id })).isError).toBe(false);
        expect(leftover()).toEqual([]);
        expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
      } finally {
        seen = await watch.stop();
      }
      expect(seen.scans).toBeGreaterThan(50);
      expect(seen.lines.some((line) => line.includes(marker))).toBe(true);
      // The relay ran (perl with the configfs root on its command line) and carried no secret there.
      expect(seen.lines.some((line) => line.startsWith('perl -e ') && line.endsWith(standin.root))).toBe(true);
      expect(seen.lines.filter((line) => line.includes(password)).map((line) => line.split(password).join('***'))).toEqual([]);
    });

    it('refuses hostile initiators at the tool, writing nothing to configfs', async () => {
      const volume = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
      for (const initiator of [`${HOST_A}/../../../core`, `${HOST_A}\nuserid`, 'iqn.1994-05.com.example:a,b']) {
        const refused = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'h', initiator } });
        expect(refused.text).toMatch(/^INVALID_ARGUMENT: .*connector\.initiator/);
      }
      expect(leftover()).toEqual([]);
      expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
    });
  });

  describe('LioTarget on this host', () => {
    const settings = (extra: Partial<LioSettings> = {}): LioSettings => ({
      backendName: 'direct',
      ipAddress: '127.0.0.1',
      port: 3260,
      prefix: PREFIX,
      configfsRoot: standin.root,
      ...extra,
    });
    const target = (extra: Partial<LioSettings> = {}, backing?: string) =>
      new LioTarget(settings(extra), { runner: new LocalRunner(), privileged: async () => [] }, (volume) => backing ?? join(dir, `direct-${volume.id}`), {
        secrets: new SecretRegistry(),
        log: createLogger('lio-test'),
      });
    const newVolume = (providerAuth: string | null = null) => {
      const id = randomUUID();
      execFileSync('truncate', ['-s', '64M', join(dir, `direct-${id}`)]);
      return { id, size: 1, pool_name: 'direct', provider_auth: providerAuth };
    };

    it('refuses hostile initiators, provider_auth, backing paths and prefixes, naming the field, leaving configfs as it was', async () => {
      const volume = newVolume('CHAP user2345 pass2345');
      const exporter = target();
      await exporter.createExport(volume);
      const before = standin.tree();
      for (const initiator of [`${HOST_A}/../../core`, `${HOST_A}\n`, 'iqn.1994-05.com.example:a b', '../iscsi', '']) {
        const error = await refusal(exporter.initializeConnection(volume, { host: 'h', initiator }));
        expect(error.code).toBe('INVALID_ARGUMENT');
        expect(error.message).toContain('connector.initiator');
        await refusal(exporter.terminateConnection(volume, { host: 'h', initiator }));
      }
      for (const auth of ['CHAP us\ner pass', 'CHAP user pa\u00e4ss', 'CHAP user pass extra']) {
        const error = await refusal(target().initializeConnection({ ...volume, provider_auth: auth }, { host: 'h', initiator: HOST_A }));
        expect(error.message).toContain('provider_auth');
      }
      expect(standin.tree()).toEqual(before);
      await exporter.removeExport(volume);
      for (const [extra, backing, field] of [
        [{}, `${dir}/x,fd_dev_size=1`, 'backing store path'],
        [{}, `${dir}/../etc/passwd`, 'backing store path'],
        [{}, 'relative/path', 'backing store path'],
        [{ prefix: 'iqn.2010-10.org.openstack:../../' }, undefined, 'target name'],
        [{ prefix: 'iqn.2010-10.org.openstack:\n' }, undefined, 'target name'],
        [{ ipAddress: 'evil/../../x' }, undefined, 'target address'],
      ] as const) {
        const error = await refusal(target(extra, backing).createExport(newVolume()));
        expect(error.code).toBe('INVALID_ARGUMENT');
        expect(error.message).toContain(field);
      }
      expect(leftover()).toEqual([]);
    });

    it('keeps the credentials its ACLs hold for a volume restored without provider_auth; refuses a missing backing store', async () => {
      const volume = newVolume();
      const exporter = target();
      const auth = ((await exporter.createExport(volume)) as { provider_auth: string }).provider_auth;
      await exporter.initializeConnection({ ...volume, provider_auth: auth }, { host: 'a', initiator: HOST_A });
      // As after load of a dump (no secrets): the live ACL's credentials are kept, nothing new is recorded.
      const again = (await exporter.createExport(volume)) as { provider_auth: string };
      expect(again.provider_auth).toBe(auth);
      await exporter.removeExport({ ...volume, provider_auth: auth });
      expect(leftover()).toEqual([]);
      // A backing store that is not there: refused before anything is made.
      const error = await refusal(target({}, join(dir, 'absent')).createExport(newVolume()));
      expect(error.code).toBe('BACKEND_UNAVAILABLE');
      expect(error.message).toMatch(/backing store .*absent does not exist/);
      expect(leftover()).toEqual([]);
    });
  });

  const lvmMissing = lvmPrerequisites();
  describe.skipIf(lvmMissing !== undefined && !inCi)('the LVM driver through the server', () => {
    let vg: VolumeGroupFixture;
    const vgName = `lio${process.pid}`;
    beforeAll(() => {
      if (lvmMissing) throw new Error(`the LVM part of the LIO suite ${lvmMissing}`);
      vg = makeVolumeGroup(vgName, 4);
    });
    afterAll(() => {
      rmSync(`/dev/${vgName}`, { recursive: true, force: true });
      vg?.cleanup();
    });

    it('exports an LV as a block backstore to two initiators and removes it all', async () => {
      const server = await startMcpServer(
        {
          backends: [
            {
              volume_backend_name: 'lvm',
              volume_driver: 'cinder.volume.drivers.lvm.LVMVolumeDriver',
              volume_group: vgName,
              target_protocol: 'iscsi',
              target_helper: 'lioadm',
              lvm_conf_file: vg.lvmConfFile,
              target_ip_address: '127.0.0.1',
            },
          ],
        },
        { env: { CINDERLIB_MCP_LIO_CONFIGFS_ROOT: standin.root } },
      );
      try {
        const volume = (await server.call('create_volume', { backend: 'lvm', size: 1 })).data;
        // This host has no device-mapper (activation is off in the fixture's lvm.conf): the LV's device
        // node is made by hand, on the loop device, as activation would make /dev/<vg>/<lv>.
        const device = `/dev/${vgName}/volume-${volume.id}`;
        const [major, minor] = execFileSync('stat', ['-c', '%t %T', vg.loop], { encoding: 'utf8' })
          .trim()
          .split(' ')
          .map((hex) => String(parseInt(hex, 16)));
        execFileSync('mkdir', ['-p', `/dev/${vgName}`]);
        execFileSync('mknod', [device, 'b', major, minor]);
        const a = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-a', initiator: HOST_A } });
        expect(a.isError, a.text).toBe(false);
        expect(a.data.connection_info.data).toMatchObject({ target_iqn: iqnOf(volume.id), target_portal: '127.0.0.1:3260', target_lun: 0, auth_method: 'CHAP' });
        expectExported(volume.id, { plugin: 'iblock', path: device, control: `udev_path=${device},readonly=0` });
        const b = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-b', initiator: HOST_B } });
        expect(b.isError, b.text).toBe(false);
        expect(standin.read(`${tpgOf(volume.id)}/acls/${HOST_B}/auth/userid`)).toBe(a.data.connection_info.data.auth_username);
        // A block backstore follows the device's size by itself (Cinder's LIO does nothing on extend either).
        expect((await server.call('extend_volume', { volume_id: volume.id, new_size: 2 })).isError).toBe(false);
        expect(standin.read(`core/iblock_0/${iqnOf(volume.id)}/control`)).toBe(`udev_path=${device},readonly=0`);
        for (const connection of [a, b]) expect((await server.call('disconnect_volume', { connection_id: connection.data.id })).isError).toBe(false);
        expect(leftover()).toEqual([]);
        rmSync(device);
        expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
      } finally {
        await server.close();
      }
    });
  });
}
