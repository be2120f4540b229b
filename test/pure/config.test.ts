import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { findDriver } from '../../drivers/catalog.js';
import pure from '../../drivers/pure/index.js';
import { convertCinderConf } from '../../src/cli/cinder-conf/index.js';
import { validateDriverOptions } from '../../src/config/driver-options.js';
import { listSupportedDrivers } from '../../src/core/driver-listing.js';
import { SecretRegistry } from '../../src/base/secrets.js';

/** A Pure section as Cinder's Pure Storage driver page writes one (values made up). */
const CINDER_CONF = `[DEFAULT]
enabled_backends = puredriver-1

[puredriver-1]
volume_backend_name = puredriver-1
volume_driver = cinder.volume.drivers.pure.PureISCSIDriver
san_ip = 10.20.30.40
pure_api_token = 7b3c2d1e-aaaa-bbbb-cccc-PURE-TOKEN-FILE
use_chap_auth = True
pure_eradicate_on_delete = yes
pure_automatic_max_oversubscription_ratio = False
max_over_subscription_ratio = 10
pure_host_personality = esxi
pure_iscsi_cidr_list = 10.20.0.0/16, fd00:20::/64
driver_ssl_cert_verify = False
pure_replication_pg_name = cinder-group
`;

const validate = (options: Record<string, unknown>) =>
  validateDriverOptions('p', pure, { volume_backend_name: 'p', volume_driver: 'pure', san_ip: '10.0.0.1', pure_api_token: 'x-token', ...options }, new SecretRegistry());

describe('Pure configuration', () => {
  it('is in the catalog under its Cinder class path and the alias pure', () => {
    expect(findDriver('cinder.volume.drivers.pure.PureISCSIDriver')?.alias).toBe('pure');
    expect(findDriver('pure')?.cinderPaths).toEqual(['cinder.volume.drivers.pure.PureISCSIDriver']);
  });

  it('converts a cinder.conf Pure section: typed options, the token behind an environment variable, unknown options named', async () => {
    const result = await convertCinderConf(CINDER_CONF, '/etc/cinder/cinder.conf');
    expect(result.converted).toBe(1);
    // use_chap_auth is a flag, not a credential: only the token travels by environment.
    expect(result.envNames).toEqual(['CINDERLIB_PUREDRIVER_1_PURE_API_TOKEN']);
    expect(result.yaml).not.toContain('PURE-TOKEN-FILE');
    expect(parseYaml(result.yaml).backends).toEqual([
      {
        volume_backend_name: 'puredriver-1',
        volume_driver: 'cinder.volume.drivers.pure.PureISCSIDriver',
        san_ip: '10.20.30.40',
        pure_api_token: '${env:CINDERLIB_PUREDRIVER_1_PURE_API_TOKEN}',
        use_chap_auth: true,
        pure_eradicate_on_delete: true,
        pure_automatic_max_oversubscription_ratio: false,
        max_over_subscription_ratio: 10,
        pure_host_personality: 'esxi',
        pure_iscsi_cidr_list: ['10.20.0.0/16', 'fd00:20::/64'],
        driver_ssl_cert_verify: false,
        // Cinder's replication options: kept as cinder_to_yaml keeps them, not used here.
        pure_replication_pg_name: 'cinder-group',
      },
    ]);
  });

  it("has Cinder's defaults, and refuses what Cinder's option types refuse, naming what is expected", () => {
    const { options } = validate({});
    expect(options).toMatchObject({
      use_chap_auth: false,
      pure_eradicate_on_delete: false,
      pure_automatic_max_oversubscription_ratio: true,
      pure_iscsi_cidr: '0.0.0.0/0',
      driver_ssl_cert_verify: true,
      max_over_subscription_ratio: 20,
      reserved_percentage: 0,
    });
    expect(options.pure_host_personality).toBeUndefined();
    expect(validate({ pure_iscsi_cidr_list: ['10.0.0.0/8', ' fd00::/8 '] }).options.pure_iscsi_cidr_list).toEqual(['10.0.0.0/8', 'fd00::/8']);
    expect(() => validate({ pure_iscsi_cidr: '10.0.0.0/33' })).toThrow(/pure_iscsi_cidr.*an IPv4 or IPv6 network written address\/prefix/);
    expect(() => validate({ pure_iscsi_cidr_list: '10.0.0.0/8,not-a-net' })).toThrow(/pure_iscsi_cidr_list.*a list of networks/);
    expect(() => validate({ pure_host_personality: 'linux' })).toThrow(/pure_host_personality.*one of "aix", "esxi"/);
    // As Cinder's option, the token is not required by the config; the driver says it is missing when it starts.
    const withoutToken = validateDriverOptions('p', pure, { volume_backend_name: 'p', volume_driver: 'pure', san_ip: '10.0.0.1' }, new SecretRegistry()).options;
    expect(() => pure.create(withoutToken, {} as never, 'pure')).toThrow(/pure_api_token is not set/);
  });

  it("is listed by list_supported_drivers with Cinder's options, the token a secret", async () => {
    const listing = await listSupportedDrivers(2);
    const entry = listing.PureISCSIDriver;
    expect(entry).toMatchObject({ class_fqn: 'cinder.volume.drivers.pure.PureISCSIDriver', class_name: 'PureISCSIDriver', version: '22.0.iscsi', ci_wiki_name: 'Pure_Storage_CI' });
    const byName = Object.fromEntries(entry.driver_options.map((option) => [option.name, option]));
    for (const name of [
      'san_ip',
      'pure_api_token',
      'driver_ssl_cert_verify',
      'driver_ssl_cert_path',
      'use_chap_auth',
      'pure_eradicate_on_delete',
      'pure_automatic_max_oversubscription_ratio',
      'pure_host_personality',
      'pure_iscsi_cidr',
      'pure_iscsi_cidr_list',
      'max_over_subscription_ratio',
      'reserved_percentage',
    ])
      expect(byName[name], name).toBeDefined();
    expect(byName.pure_api_token).toMatchObject({ secret: true, required: false });
    expect(byName.pure_eradicate_on_delete).toMatchObject({ default: false, help: expect.stringMatching(/Cinder default: false/) });
    expect(byName.pure_iscsi_cidr).toMatchObject({ default: '0.0.0.0/0' });
  });
});
