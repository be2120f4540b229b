import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { DriverContext, DriverOptions } from '../types.js';
import type { TgtSettings } from './tgt.js';
import { enumOption, intOption, listOption, stringOption, textOption } from '../options.js';

/**
 * Cinder's target options, for drivers that export through a target on a host they command (LVM,
 * file). Each driver declares `target_helper` itself: Cinder's LVM defaults it to tgtadm, while
 * the file driver exports nothing until it is set.
 */
/** Cinder's default target_ip_address: oslo.config's substitution of [DEFAULT] my_ip. */
export const MY_IP = '$my_ip';

export const TARGET_HELPERS = ['tgtadm', 'lioadm', 'scstadmin', 'iscsictl', 'ietadm', 'nvmet', 'spdk-nvmeof', 'fake'] as const;
export type TargetHelper = (typeof TARGET_HELPERS)[number];

export const targetOptions = {
  target_ip_address: stringOption(
    "IP address the target listens on, given to connecting hosts as the portal; $my_ip (the default) is the target host's first non-loopback IPv4 address.",
    { listedDefault: MY_IP },
  ),
  target_port: intOption('Port the target listens on.', { default: 3260, min: 1, max: 65535, oslo: { kind: 'Port' } }),
  iscsi_secondary_ip_addresses: listOption('More addresses the target listens on, given to connecting hosts as more portals (multipath).', {
    default: [],
    check: (address: string) => /^[0-9A-Fa-f:.]+$/.test(address),
    itemHelp: 'IP addresses',
  }),
  target_prefix: stringOption('Prefix of target names: the target of a volume is <target_prefix>volume-<id>.', { default: 'iqn.2010-10.org.openstack:' }),
  target_config_dir: stringOption('Folder for the per-target tgt configuration files (0600: they hold CHAP passwords).', {
    defaultText: '$XDG_DATA_HOME/cinderlib-mcp/targets/<backend>',
    ours: "Cinder's LVM driver calls this folder volumes_dir (default $state_path/volumes); either name works there",
  }),
  iscsi_write_cache: enumOption('tgt write-back ("on") or write-through ("off") caching.', ['on', 'off'] as const, { default: 'on' }),
  iscsi_target_flags: textOption('tgt backing-store flags (bsoflags), passed as given; empty for none.', { default: '' }),
};

/**
 * Options Cinder's LVM driver lists for target helpers this server does not drive (IET, SCST, NVMe-oF,
 * SPDK): accepted, as Cinder's names, and not used.
 */
const unused = (helper: string) => `Used by Cinder's ${helper} target helper, which this server does not drive: accepted and not used.`;
export const otherTargetOptions = {
  iet_conf: stringOption(unused('ietadm'), { default: '/etc/iet/ietd.conf' }),
  iscsi_iotype: enumOption(unused('ietadm'), ['blockio', 'fileio', 'auto'] as const, { default: 'fileio' }),
  nvmet_port_id: intOption(unused('nvmet'), { default: 1, min: 0, max: 65535, oslo: { kind: 'Port' } }),
  nvmet_ns_id: intOption(unused('nvmet'), { default: 10, oslo: { kind: 'Integer' } }),
  scst_target_iqn_name: stringOption(unused('scstadmin')),
  scst_target_driver: stringOption(unused('scstadmin'), { default: 'iscsi' }),
  spdk_rpc_ip: stringOption(unused('spdk-nvmeof')),
  spdk_rpc_port: intOption(unused('spdk-nvmeof'), { default: 8000, min: 0, max: 65535, oslo: { kind: 'Port' } }),
  spdk_rpc_username: stringOption(unused('spdk-nvmeof')),
  spdk_rpc_password: textOption(unused('spdk-nvmeof')),
  spdk_max_queue_depth: intOption(unused('spdk-nvmeof'), { default: 64, min: 1, max: 128 }),
};

/** Cinder's $my_ip: the address other hosts reach this one at. */
export function thisHostAddress(): string {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) if (address.family === 'IPv4' && !address.internal) return address.address;
  }
  return '127.0.0.1';
}

/**
 * A driver's target settings from its target options: the address defaults to `hostAddress` (the
 * host the target runs on), the config folder to <data dir>/targets/<backend>.
 */
export function tgtSettings(options: DriverOptions<typeof targetOptions>, context: Pick<DriverContext, 'backendName' | 'dataDir'>, hostAddress: string): TgtSettings {
  return {
    backendName: context.backendName,
    ipAddress: options.target_ip_address === undefined || options.target_ip_address === MY_IP ? hostAddress : options.target_ip_address,
    secondaryIpAddresses: options.iscsi_secondary_ip_addresses,
    port: options.target_port,
    prefix: options.target_prefix,
    configDir: options.target_config_dir ?? join(context.dataDir, 'targets', context.backendName),
    writeCache: options.iscsi_write_cache,
    backingFlags: options.iscsi_target_flags,
  };
}
