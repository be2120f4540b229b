import { describe, expect, it } from 'vitest';
import { DRIVER_CATALOG } from '../../drivers/catalog.js';
import { parseConfig } from '../../src/config/load.js';
import { CORE_OPTIONS } from '../../src/config/driver-options.js';
import { MASK, SecretRegistry, isSecretKey } from '../../src/base/secrets.js';

/**
 * Every option Cinder marks `secret=True` (oslo.config), read from openstack/cinder's tree:
 * cinder/volume/driver.py (chap_password, replication_device), san/san.py (san_password) and the
 * other drivers' and services' options. Any of these a driver declares, or a user passes to one
 * (cinderlib is free-form), must be masked.
 */
const CINDER_SECRET_OPTIONS = [
  'backend_url',
  'backup_gcs_proxy_url',
  'backup_s3_sse_customer_key',
  'backup_s3_store_access_key',
  'backup_s3_store_secret_key',
  'backup_swift_key',
  'chap_password',
  'cisco_fc_fabric_password',
  'fc_fabric_password',
  'fixed_key',
  'gpfs_user_password',
  'hitachi_mirror_auth_password',
  'hitachi_mirror_rest_password',
  'hpe3par_password',
  'macrosan_replication_password',
  'macrosan_sdas_password',
  'metro_san_password',
  'nas_password',
  'nec_ismcli_password',
  'netapp_password',
  'nexenta_password',
  'nexenta_rest_password',
  'password',
  'podm_password',
  'rbd_iscsi_api_password',
  'replication_device',
  'san_password',
  'secondary_san_password',
  'spdk_rpc_password',
  'synology_one_time_pass',
  'synology_password',
  'vast_api_token',
  'vmstore_password',
  'vmware_host_password',
  'zadara_access_key',
];

/** Contract section 6's name fragments; section 9: chap_username is not a secret, nor is use_chap_auth (a flag that switches CHAP on). */
function contractSecret(name: string): boolean {
  if (/password|secret|token|private_key|passphrase|credential/.test(name)) return true;
  return name.includes('chap') && !/(username|user|login)$/.test(name) && !name.startsWith('use_');
}

/** Names that point at a secret without holding it (libvirt's secret uuid, Cinder's rbd_secret_uuid, not secret in Cinder either). */
const POINTERS = new Set(['rbd_secret_uuid', 'secret_uuid', 'secret_type']);

function shown(name: string, value: unknown = `value-of-${name}`): unknown {
  return new SecretRegistry().maskOptions({ [name]: value })[name];
}

describe('masking by option name', () => {
  it('masks every option our drivers declare that Cinder or the contract calls secret, and shows the rest', async () => {
    const walked: string[] = [];
    for (const entry of DRIVER_CATALOG) {
      const definition = await entry.load();
      for (const name of [...Object.keys(definition.options), ...Object.keys(CORE_OPTIONS)]) {
        const secret = CINDER_SECRET_OPTIONS.includes(name) || (contractSecret(name) && !POINTERS.has(name));
        expect(shown(name), `${entry.alias}: ${name}`).toBe(secret ? MASK : `value-of-${name}`);
        walked.push(name);
      }
    }
    // The walk reached the options that matter on both sides.
    expect(walked).toEqual(expect.arrayContaining(['san_password', 'volume_group', 'san_ip', 'san_login', 'ssh_hosts_key_file', 'lvm_conf_file']));
  });

  it("masks Cinder's secret options wherever they are passed", () => {
    for (const name of CINDER_SECRET_OPTIONS) expect(shown(name), name).toBe(MASK);
    expect(shown('replication_device', { backend_id: 'peer', san_password: 'x' })).toBe(MASK);
  });

  it('keeps user names, addresses, paths and key-lookup names visible (chap_username included)', () => {
    for (const name of [
      'chap_username',
      'discovery_chap_username',
      'san_login',
      'san_ip',
      'volume_group',
      'ssh_hosts_key_file',
      'lvm_conf_file',
      'driver_ssl_cert_path',
      'xtremio_cluster_name',
      'target_prefix',
      'passthrough',
      'compass',
      'bypass_cache',
      'key_name',
      'sort_key',
      'public_key',
      'ssh_host_key',
      'encryption_key_id',
      'strict_ssh_host_key_policy',
    ]) {
      expect(isSecretKey(name), name).toBe(false);
      expect(shown(name), name).toBe(`value-of-${name}`);
    }
  });

  it('masks passwd, pass as a word of the name, and keys that are credentials', () => {
    for (const name of [
      'san_passwd',
      'passwd',
      'san_pass',
      'db_pass',
      'pass',
      'api_key',
      'apikey',
      'apiKey',
      'access_key',
      'secret_key',
      'auth_key',
      'x-api-key',
      'key',
      'chap_password',
      'target_chap_password',
      'provider_auth',
      'SAN_PASSWORD',
    ]) {
      expect(isSecretKey(name), name).toBe(true);
      expect(shown(name), name).toBe(MASK);
    }
  });
});

describe('masking by value', () => {
  it('masks the password of a URL in any value, whatever the scheme', () => {
    const secrets = new SecretRegistry();
    expect(secrets.redact('cannot reach https://admin:pw@10.0.0.1:8443/api')).toBe('cannot reach https://admin:***@10.0.0.1:8443/api');
    expect(secrets.redact('postgresql+psycopg2://cinder:s3cr3t@db/cinder and redis://:tok@cache')).toBe('postgresql+psycopg2://cinder:***@db/cinder and redis://:***@cache');
    // A raw @ in the password is masked whole; the text around a quoted URL stays intact.
    expect(secrets.redact('{"url":"https://u:p@ss@host/x","mail":"a@b"}')).toBe('{"url":"https://u:***@host/x","mail":"a@b"}');
    expect(secrets.redact('ssh://root@host and https://host:8443/path')).toBe('ssh://root@host and https://host:8443/path');
    expect(secrets.maskOptions({ proxy: 'http://me:hunter2@proxy:3128', list: ['ftp://x:y@z'] })).toEqual({
      proxy: 'http://me:***@proxy:3128',
      list: ['ftp://x:***@z'],
    });
  });

  it('masks a registered secret in any letter case and in the forms URL parsing gives it', () => {
    const secrets = new SecretRegistry();
    secrets.register('ArrayHost-Canary');
    secrets.register('Bücher-Canary');
    secrets.register('pä ss/wörd');
    const host = new URL('https://ArrayHost-Canary:8443').host;
    expect(host).toBe('arrayhost-canary:8443');
    expect(secrets.redact(`cannot reach https://${host}`)).toBe('cannot reach https://***:8443');
    expect(secrets.redact(`cannot reach https://${new URL('https://Bücher-Canary').hostname}`)).toBe('cannot reach https://***');
    const url = new URL('https://user@host/');
    url.password = 'pä ss/wörd';
    url.pathname = '/pä ss/wörd';
    expect(secrets.redact(url.href)).toBe('https://user:***@host/***');
  });
});

describe('masking by origin: ${env:} values', () => {
  it('masks every env-derived option value in the config view, however short', () => {
    const secrets = new SecretRegistry();
    const config = parseConfig(
      {
        backends: [
          {
            volume_backend_name: 'k2',
            volume_driver: 'kaminario',
            san_login: '${env:SHORT}',
            san_ip: '${env:HOST}:8443',
            xtremio_cluster_name: 'plain',
            list: ['${env:SHORT}', 'kept'],
          },
        ],
      },
      'test.yaml',
      { env: { SHORT: 'ab', HOST: 'Array-1' }, secrets },
    );
    const options = config.backends[0].options;
    expect(options.san_login).toBe('ab');
    expect(secrets.maskOptions(options)).toMatchObject({
      san_login: MASK,
      san_ip: `${MASK}:8443`,
      xtremio_cluster_name: 'plain',
      list: [MASK, 'kept'],
      volume_backend_name: 'k2',
    });
    // Free text keeps its minimum length: two letters are not hunted in prose.
    expect(secrets.redact('about abc')).toBe('about abc');
    expect(secrets.redact('https://array-1:8443')).toBe('https://***:8443');
  });
});
