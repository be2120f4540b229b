import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { DriverContext, DriverOptions } from '../types.js';
import type { TgtSettings } from './tgt.js';
import { enumOption, intOption, stringOption, textOption } from '../options.js';

/**
 * Cinder's target options, for drivers that export through a target on a host they command (LVM,
 * file). Each driver declares `target_helper` itself: Cinder's LVM defaults it to tgtadm, while
 * the file driver exports nothing until it is set.
 */
export const TARGET_HELPERS = ['tgtadm', 'lioadm', 'scstadmin', 'iscsictl', 'ietadm', 'nvmet', 'spdk-nvmeof', 'fake'] as const;
export type TargetHelper = (typeof TARGET_HELPERS)[number];

export const targetOptions = {
  target_ip_address: stringOption('IP address the target (tgtd) listens on, given to connecting hosts as the portal.', {
    defaultText: "this host's first non-loopback IPv4 address (Cinder's $my_ip)",
  }),
  target_port: intOption('Port the target listens on.', { default: 3260, min: 1, max: 65535 }),
  target_prefix: stringOption('Prefix of target names: the target of a volume is <target_prefix>volume-<id>.', { default: 'iqn.2010-10.org.openstack:' }),
  target_config_dir: stringOption('Folder for the per-target tgt configuration files (0600: they hold CHAP passwords).', {
    defaultText: '$XDG_DATA_HOME/cinderlib-mcp/targets/<backend>',
  }),
  iscsi_write_cache: enumOption('tgt write-back ("on") or write-through ("off") caching.', ['on', 'off'] as const, { default: 'on' }),
  iscsi_target_flags: textOption('tgt backing-store flags (bsoflags), passed as given; empty for none.', { default: '' }),
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
    ipAddress: options.target_ip_address ?? hostAddress,
    port: options.target_port,
    prefix: options.target_prefix,
    configDir: options.target_config_dir ?? join(context.dataDir, 'targets', context.backendName),
    writeCache: options.iscsi_write_cache,
    backingFlags: options.iscsi_target_flags,
  };
}
