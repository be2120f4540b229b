import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { findDriver } from '../../drivers/catalog.js';
import { convertCinderConf, runImportCinderConf } from '../../src/cli/cinder-conf/index.js';
import { CinderConfError, parseCinderConf } from '../../src/cli/cinder-conf/parse.js';
import { parseConfig } from '../../src/config/load.js';
import { readCoreOptions, validateDriverOptions } from '../../src/config/driver-options.js';
import { SecretRegistry } from '../../src/base/secrets.js';

/**
 * Written by hand after Cinder's sample cinder.conf (install guide: [DEFAULT], [database],
 * [keystone_authtoken], an [lvm] section) and the driver pages of XtremIO and Kaminario K2.
 */
const CINDER_CONF = `# Cinder's storage node, as the install guide writes it
[DEFAULT]
transport_url = rabbit://openstack:RABBIT_PASS_123@controller
auth_strategy = keystone
my_ip = 10.0.0.41
host = storage-node-1
root_helper = sudo cinder-rootwrap /etc/cinder/rootwrap.conf
enabled_backends = lvm, xtremio, k2, ceph, missing, nameless
glance_api_servers = http://controller:9292

[database]
connection = mysql+pymysql://cinder:CINDER_DBPASS_456@controller/cinder

[keystone_authtoken]
www_authenticate_uri = http://controller:5000
auth_type = password
username = cinder
password = KEYSTONE_PASS_789

[oslo_concurrency]
lock_path = /var/lib/cinder/tmp

[backend_defaults]
reserved_percentage = 5
image_upload_use_cinder_backend = true

[lvm]
volume_driver = cinder.volume.drivers.lvm.LVMVolumeDriver
volume_group = cinder-volumes
lvm_type = thin
target_protocol = iscsi
target_helper = lioadm
target_ip_address = $my_ip
volume_backend_name = LVM_iSCSI
volume_clear = zero
use_chap_auth = True
lvm_mirrors = 0
max_over_subscription_ratio = 1.5

[xtremio]
volume_driver = cinder.volume.drivers.dell_emc.xtremio.XtremIOISCSIDriver
san_ip = 10.10.10.1
san_login = xtremio_user
san_password = XIO_SECRET_pw1
xtremio_cluster_name = xtremio_cluster
driver_ssl_cert_verify = false
xtremio_array_busy_retry_count: 7
volume_backend_name = xtremio
image_volume_cache_enabled = True

[k2]
volume_driver = cinder.volume.drivers.kaminario.kaminario_iscsi.KaminarioISCSIDriver
san_ip = k2.example.com
san_login = k2admin
san_password = "K2_Quoted_Secret"
volume_backend_name = kaminario
disable_discovery = yes
unique_fqdn_network = false
; a comment in ini style

[ceph]
volume_driver = cinder.volume.drivers.netapp.common.NetAppDriver
volume_backend_name = ceph
rbd_pool = volumes
rbd_user = cinder
rbd_secret_uuid = 457eb676-33da-42ec-9a8c-9293d545c337

[nameless]
volume_group = stack-volumes-lvmdriver-1
`;

const FILE_SECRETS = ['RABBIT_PASS_123', 'CINDER_DBPASS_456', 'KEYSTONE_PASS_789', 'XIO_SECRET_pw1', 'K2_Quoted_Secret', '457eb676'];

const dir = mkdtempSync(join(tmpdir(), 'clmcp-cinder-conf-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function writeConf(name: string, content: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

/** Loads the YAML as the server does and validates every backend against its driver; returns the loaded config. */
async function loadConverted(yamlText: string, envNames: string[]) {
  const env = Object.fromEntries(envNames.map((name) => [name, `value-of-${name}`]));
  const secrets = new SecretRegistry();
  const config = parseConfig(parseYaml(yamlText), 'converted.yaml', { env, secrets });
  expect(config.warnings).toEqual([]);
  for (const spec of config.backends) {
    expect(spec.error, spec.name).toBeUndefined();
    expect(readCoreOptions(spec, secrets)).not.toHaveProperty('error');
    const entry = findDriver(String(spec.options.volume_driver));
    expect(entry, spec.name).toBeDefined();
    const { unknown } = validateDriverOptions(spec.name, await entry!.load(), spec.options, secrets);
    expect(unknown, spec.name).toEqual([]);
  }
  return config;
}

describe('cinder.conf parsing (oslo.config iniparser)', () => {
  it('reads sections, both separators, quotes, comments, continuations and repeated keys', () => {
    const ini = parseCinderConf(
      '[DEFAULT]\n# comment\n; other comment\na = 1\nb=two\nc: three = 3\nd = "quoted"\ne = \'x\'\nf = first\n  second\n\tthird\n\ng = 1\ng = 2\n[Mixed_Case]\nKey = v\n[DEFAULT]\nh = later\n',
    );
    const defaults = ini.sections.get('DEFAULT')!;
    expect(defaults.get('a')).toEqual(['1']);
    expect(defaults.get('b')).toEqual(['two']);
    expect(defaults.get('c')).toEqual(['three = 3']);
    expect(defaults.get('d')).toEqual(['quoted']);
    expect(defaults.get('e')).toEqual(['x']);
    expect(defaults.get('f')).toEqual(['first\nsecond\nthird']);
    expect(defaults.get('g')).toEqual(['1', '2']);
    expect(defaults.get('h')).toEqual(['later']);
    expect(ini.sections.get('Mixed_Case')!.get('Key')).toEqual(['v']);
  });

  it('accepts CRLF line ends and a byte order mark', async () => {
    const path = writeConf('crlf.conf', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('[DEFAULT]\r\nenabled_backends = lvm\r\n[lvm]\r\nvolume_group = vg\r\n')]));
    const outcome = await runImportCinderConf([path]);
    expect(outcome.code).toBe(0);
    expect(parseYaml(outcome.stdout).backends[0]).toMatchObject({ volume_backend_name: 'lvm', volume_group: 'vg' });
  });

  it('names the line of each syntax error, without echoing the line', () => {
    const cases: [string, RegExp][] = [
      ['[DEFAULT]\na = 1\nhunter2-secret-garble\n', /^line 3: no "=" or ":" found/],
      ['a = 1\n', /^line 1: an option before any \[section\]/],
      ['[DEFAULT\n', /^line 1: invalid section header/],
      ['[]\n', /^line 1: empty section name/],
      ['[DEFAULT]\n= value\n', /^line 2: empty option name/],
      ['[DEFAULT]\n\n   indented\n', /^line 3: unexpected continuation line/],
      ['[DEFAULT]\na = b\u0000c\n', /^line 2: control character U\+0000/],
      [`[DEFAULT]\n\na = ${'x'.repeat(70_000)}\n`, /^line 3: the line is longer than 65536 characters/],
    ];
    for (const [text, message] of cases) {
      let caught: unknown;
      try {
        parseCinderConf(text);
      } catch (error) {
        caught = error;
      }
      expect(caught, text.slice(0, 40)).toBeInstanceOf(CinderConfError);
      expect((caught as Error).message).toMatch(message);
      expect((caught as Error).message).not.toContain('hunter2');
    }
  });

  it('keeps __proto__, constructor and prototype as plain names', () => {
    const ini = parseCinderConf('[__proto__]\n__proto__ = polluted\nconstructor = c\nprototype = p\n[constructor]\nx = 1\n');
    expect(ini.sections.get('__proto__')!.get('__proto__')).toEqual(['polluted']);
    expect(ini.sections.get('constructor')!.get('x')).toEqual(['1']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('x');
  });
});

describe('import-cinder-conf (cinderlib cinder_to_yaml)', () => {
  it('converts LVM, XtremIO and K2 backends into a config the loader and drivers accept', async () => {
    const result = await convertCinderConf(CINDER_CONF, '/etc/cinder/cinder.conf');
    expect(result.converted).toBe(4);
    expect(result.envNames).toEqual(['CINDERLIB_XTREMIO_SAN_PASSWORD', 'CINDERLIB_K2_SAN_PASSWORD']);
    const doc = parseYaml(result.yaml);
    expect(doc.global).toEqual({ host: 'storage-node-1' }); // Cinder's rootwrap root_helper is not carried over
    expect(doc.backends).toEqual([
      {
        volume_backend_name: 'LVM_iSCSI',
        volume_driver: 'cinder.volume.drivers.lvm.LVMVolumeDriver',
        reserved_percentage: 5,
        volume_group: 'cinder-volumes',
        lvm_type: 'thin',
        target_protocol: 'iscsi',
        target_helper: 'lioadm',
        target_ip_address: '10.0.0.41',
        volume_clear: 'zero',
        use_chap_auth: true,
        lvm_mirrors: 0,
        max_over_subscription_ratio: 1.5,
      },
      {
        volume_backend_name: 'xtremio',
        volume_driver: 'cinder.volume.drivers.dell_emc.xtremio.XtremIOISCSIDriver',
        reserved_percentage: 5,
        san_ip: '10.10.10.1',
        san_login: 'xtremio_user',
        san_password: '${env:CINDERLIB_XTREMIO_SAN_PASSWORD}',
        xtremio_cluster_name: 'xtremio_cluster',
        driver_ssl_cert_verify: false,
        xtremio_array_busy_retry_count: 7,
      },
      {
        volume_backend_name: 'kaminario',
        volume_driver: 'cinder.volume.drivers.kaminario.kaminario_iscsi.KaminarioISCSIDriver',
        reserved_percentage: 5,
        san_ip: 'k2.example.com',
        san_login: 'k2admin',
        san_password: '${env:CINDERLIB_K2_SAN_PASSWORD}',
        disable_discovery: true,
        unique_fqdn_network: false,
      },
      // No volume_backend_name: the section's name; no volume_driver: Cinder's default, LVM.
      {
        volume_backend_name: 'nameless',
        volume_driver: 'cinder.volume.drivers.lvm.LVMVolumeDriver',
        reserved_percentage: 5,
        volume_group: 'stack-volumes-lvmdriver-1',
        // Cinder's default target_ip_address is [DEFAULT] my_ip.
        target_ip_address: '10.0.0.41',
      },
    ]);
    const config = await loadConverted(result.yaml, result.envNames);
    expect(config.backends.map((spec) => spec.name)).toEqual(['LVM_iSCSI', 'xtremio', 'kaminario', 'nameless']);
    expect(config.backends[1].options.san_password).toBe('value-of-CINDERLIB_XTREMIO_SAN_PASSWORD');
    expect(config.global.host).toBe('storage-node-1');
    expect(result.yaml).toMatch(/^# cinderlib-mcp config converted from \/etc\/cinder\/cinder\.conf/);
    expect(result.yaml).toContain('#   CINDERLIB_XTREMIO_SAN_PASSWORD  ([xtremio] san_password)');
  });

  it('reports unknown drivers, unknown options, missing sections and the database, one warning each', async () => {
    const { warnings } = await convertCinderConf(CINDER_CONF, 'cinder.conf');
    expect(warnings).toContainEqual(
      expect.stringMatching(/^\[ceph\]: volume_driver "cinder\.volume\.drivers\.netapp\.common\.NetAppDriver" is not a driver cinderlib-mcp has .*; backend skipped$/),
    );
    // Options Cinder's LVM driver reads are kept (volume_clear, use_chap_auth), as cinder_to_yaml keeps them.
    expect(warnings.filter((warning) => /volume_clear|use_chap_auth/.test(warning))).toEqual([]);
    expect(warnings).toContainEqual(expect.stringMatching(/^\[lvm\]: target_helper lioadm exports through the kernel's LIO target .* use tgtadm there$/));
    expect(warnings).toContain('[xtremio]: option "image_volume_cache_enabled" is not used by the xtremio driver; not converted');
    expect(warnings).toContain('[missing]: listed in [DEFAULT] enabled_backends but the file has no such section; skipped');
    expect(warnings).toContainEqual(expect.stringMatching(/^\[database\] connection not converted/));
    // A shared option is reported once per driver, not once per backend (two LVM backends here).
    expect(warnings.filter((warning) => warning.includes('image_upload_use_cinder_backend'))).toEqual([
      '[backend_defaults]: option "image_upload_use_cinder_backend" is not used by the lvm driver; not converted for its backends',
      '[backend_defaults]: option "image_upload_use_cinder_backend" is not used by the xtremio driver; not converted for its backends',
      '[backend_defaults]: option "image_upload_use_cinder_backend" is not used by the kaminario driver; not converted for its backends',
    ]);
    expect(warnings.some((warning) => warning.includes('rbd_pool'))).toBe(false); // the skipped backend's options are not judged
  });

  it('never writes a secret of the file, on stdout or stderr', async () => {
    const path = writeConf('full.conf', CINDER_CONF);
    const outcome = await runImportCinderConf([path]);
    expect(outcome.code).toBe(0);
    for (const secret of FILE_SECRETS) {
      expect(outcome.stdout).not.toContain(secret);
      expect(outcome.stderr).not.toContain(secret);
    }
    expect(outcome.stdout).not.toMatch(/rabbit:|mysql|controller|keystone/);
    expect(JSON.stringify(parseYaml(outcome.stdout))).not.toMatch(/transport_url|connection|persistence/);
    expect(outcome.stderr).toContain('CINDERLIB_XTREMIO_SAN_PASSWORD CINDERLIB_K2_SAN_PASSWORD');
    expect(outcome.stderr).toMatch(/import-cinder-conf: warning: \[ceph\]: volume_driver/);
    expect(outcome.stderr).toContain('4 backends converted');
  });

  it('turns an option holding another secret of the file into an environment reference too', async () => {
    const text = `[DEFAULT]
enabled_backends = x-io.1
[x-io.1]
volume_driver = xtremio
san_ip = 10.0.0.5
san_login = $san_password
san_password = admin-and-more
san_private_key =
xtremio_cluster_name = cluster@https://u:Url_Pw_42@h/
`;
    const result = await convertCinderConf(text, 'x.conf');
    expect(result.envNames).toEqual(['CINDERLIB_X_IO_1_SAN_LOGIN', 'CINDERLIB_X_IO_1_SAN_PASSWORD', 'CINDERLIB_X_IO_1_XTREMIO_CLUSTER_NAME']);
    const backend = parseYaml(result.yaml).backends[0];
    expect(backend.san_login).toBe('${env:CINDERLIB_X_IO_1_SAN_LOGIN}');
    expect(backend.xtremio_cluster_name).toBe('${env:CINDERLIB_X_IO_1_XTREMIO_CLUSTER_NAME}');
    expect(backend).not.toHaveProperty('san_private_key'); // empty: Cinder's "not set"
    expect(result.yaml).not.toContain('admin-and-more');
    expect(result.yaml).not.toContain('Url_Pw_42');
    expect(result.warnings.join('\n')).not.toContain('Url_Pw_42');
    await loadConverted(result.yaml, result.envNames);
  });

  it('treats chap_username as visible and every other chap option as a secret', async () => {
    // The file driver has no CHAP options: check the naming rule through an option the catalog knows.
    const text = '[DEFAULT]\nenabled_backends = f\n[f]\nvolume_driver = file\nvolumes_dir = /srv/volumes\nchap_username = visible-user\nchap_password = CHAP_SECRET_1\n';
    const result = await convertCinderConf(text, 'f.conf');
    expect(result.yaml).not.toContain('CHAP_SECRET_1');
    expect(result.warnings).toContain('[f]: option "chap_password" is not used by the file driver; not converted');
    expect(result.warnings.join('\n')).not.toContain('CHAP_SECRET_1');
  });

  it('resolves oslo substitutions, drops unresolvable ones and survives loops', async () => {
    const text = `[DEFAULT]
enabled_backends = lvm
state_path = /var/lib/cinder
[lvm]
volume_group = \${DEFAULT.state_path}-vg
target_ip_address = $unset_ip
lvm_conf_file = $a
a = $b
b = $a
target_prefix = iqn.2010-10.org.example$$:
`;
    const result = await convertCinderConf(text, 'l.conf');
    const backend = parseYaml(result.yaml).backends[0];
    expect(backend.volume_group).toBe('/var/lib/cinder-vg');
    expect(backend.target_prefix).toBe('iqn.2010-10.org.example$:');
    expect(backend).not.toHaveProperty('target_ip_address');
    expect(backend).not.toHaveProperty('lvm_conf_file');
    expect(result.warnings).toContain('[lvm]: option "target_ip_address" refers to $unset_ip, which the file does not set; not converted (this project\'s default applies)');
    expect(result.warnings).toContainEqual(expect.stringMatching(/^\[lvm\]: option "lvm_conf_file" substitutions nest more than 10 deep/));
    await loadConverted(result.yaml, result.envNames);
  });

  it('renames a backend whose volume_backend_name an earlier one took, and finds sections case-insensitively', async () => {
    const text = '[DEFAULT]\nenabled_backends = lvm-a,LVM-B\n[lvm-a]\nvolume_backend_name = lvm\n[lvm-b]\nvolume_backend_name = lvm\nvolume_group = vg-b\n';
    const result = await convertCinderConf(text, 'dup.conf');
    expect(parseYaml(result.yaml).backends.map((backend: { volume_backend_name: string }) => backend.volume_backend_name)).toEqual(['lvm', 'LVM-B']);
    expect(result.warnings).toContainEqual(expect.stringMatching(/^\[LVM-B\]: volume_backend_name "lvm" is taken by an earlier backend/));
    await loadConverted(result.yaml, result.envNames);
  });

  it('warns about a value the driver will refuse, without quoting a secret', async () => {
    const text = '[DEFAULT]\nenabled_backends = lvm\n[lvm]\nlvm_type = sparse\nlvm_mirrors = many\n';
    const result = await convertCinderConf(text, 'bad.conf');
    expect(result.converted).toBe(1);
    expect(result.warnings).toContainEqual(expect.stringMatching(/^\[lvm\]: backend "lvm": option "lvm_type" must be one of .*; fix it in the written config$/));
  });

  it('exits 1 when nothing converts: only unknown drivers, or no enabled_backends', async () => {
    const rbd = await runImportCinderConf([writeConf('rbd.conf', '[DEFAULT]\nenabled_backends = ceph\n[ceph]\nvolume_driver = cinder.volume.drivers.netapp.common.NetAppDriver\n')]);
    expect(rbd).toMatchObject({ code: 1, stdout: '' });
    expect(rbd.stderr).toMatch(/\[ceph\]: volume_driver "cinder\.volume\.drivers\.netapp\.common\.NetAppDriver" is not a driver cinderlib-mcp has/);
    expect(rbd.stderr).toMatch(/no backend converted/);
    const none = await runImportCinderConf([writeConf('none.conf', '[DEFAULT]\ndebug = true\n')]);
    expect(none).toMatchObject({ code: 1, stdout: '' });
    expect(none.stderr).toContain('[DEFAULT] enabled_backends is not set: no backend to convert');
  });

  it('gives clear errors for hostile or unusable files, never a crash', async () => {
    const big = await runImportCinderConf([writeConf('big.conf', Buffer.alloc(4 * 1024 * 1024 + 1, 0x61))]);
    expect(big.code).toBe(1);
    expect(big.stderr).toMatch(/cannot read ".*big\.conf": larger than 4 MiB/);

    const binary = Buffer.from(Array.from({ length: 4096 }, (_, index) => (index * 7919 + 13) % 256));
    const garbage = await runImportCinderConf([writeConf('garbage.bin', Buffer.concat([Buffer.from('[DEFAULT]\n'), binary]))]);
    expect(garbage.code).toBe(1);
    expect(garbage.stderr).toMatch(/is not a valid cinder\.conf: line \d+: (not UTF-8 text|control character)/);

    const directory = await runImportCinderConf([dir]);
    expect(directory).toMatchObject({ code: 1, stdout: '' });
    expect(directory.stderr).toMatch(/not a regular file \(a directory\)/);

    const missing = await runImportCinderConf([join(dir, 'nope.conf')]);
    expect(missing).toMatchObject({ code: 1, stdout: '' });
    expect(missing.stderr).toMatch(/cannot read ".*nope\.conf": ENOENT \(no such file\)/);

    const garbled = await runImportCinderConf([writeConf('garbled.conf', '[DEFAULT]\nenabled_backends = lvm\nsan_password hunter2\n')]);
    expect(garbled.code).toBe(1);
    expect(garbled.stderr).toMatch(/line 3: no "=" or ":" found/);
    expect(garbled.stderr).not.toContain('hunter2');

    const usage = await runImportCinderConf(['a.conf', 'b.conf']);
    expect(usage.code).toBe(1);
    expect(usage.stderr).toMatch(/expected at most one FILE/);
  });

  it('converts __proto__ sections and keys as data, polluting nothing', async () => {
    const text =
      '[DEFAULT]\nenabled_backends = __proto__, constructor\n[__proto__]\nvolume_driver = lvm\n__proto__ = x\nprototype = y\nvolume_group = vg-proto\n[constructor]\nvolume_driver = lvm\nconstructor = z\nvolume_group = vg-ctor\n';
    const outcome = await runImportCinderConf([writeConf('proto.conf', text)]);
    expect(outcome.code).toBe(0);
    const doc = parseYaml(outcome.stdout);
    expect(doc.backends.map((backend: Record<string, unknown>) => backend.volume_backend_name)).toEqual(['__proto__', 'constructor']);
    expect(outcome.stderr).toContain('[__proto__]: option "__proto__" is not used by the lvm driver; not converted');
    expect(outcome.stderr).toContain('[constructor]: option "constructor" is not used by the lvm driver; not converted');
    expect(({} as Record<string, unknown>).volume_group).toBeUndefined();
    await loadConverted(outcome.stdout, []);
  });

  it('prints usage for --help', async () => {
    const help = await runImportCinderConf(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/usage: cinderlib-mcp import-cinder-conf \[FILE\]/);
  });
});
