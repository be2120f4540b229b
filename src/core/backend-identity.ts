/**
 * A backend's fingerprint (contract section 16): what servers sharing a store compare so that one
 * volume_backend_name means one storage on every server. Each option is kept as the value compared
 * and the value shown when two servers differ.
 */
import { createHash } from 'node:crypto';
import { MASK, isSecretKey, type SecretRegistry } from '../base/secrets.js';
import type { BackendFingerprint } from '../store/store.js';

/**
 * Options that are not part of a backend's identity: they say how this server reaches or tunes
 * the same storage, and servers may differ in them.
 * - connection tuning: ssh pool sizes and time-outs, retry counts and intervals, initialization
 *   time-outs (a busier server may want a larger pool);
 * - what is local to each host: CA bundle paths and whether to verify (each host has its own
 *   trust store), known_hosts files and host-key policy, lvm.conf, target config directories, the
 *   address a local target listens on (each server exports from its own host), dd block sizes.
 * Secret options (passwords, tokens, keys: section 6) are left out altogether: never stored,
 * never compared, never shown; a password rotated on one server first is still the same array.
 * Options the driver does not use (kept with a warning) have no effect, so they are left out too.
 */
const NOT_IDENTITY = new Set([
  'volume_backend_name',
  'ssh_min_pool_conn',
  'ssh_max_pool_conn',
  'ssh_conn_timeout',
  'backend_init_timeout',
  'backend_init_retry_interval',
  'xtremio_array_busy_retry_count',
  'xtremio_array_busy_retry_interval',
  'kaminario_retry_count',
  'kaminario_retry_interval',
  'driver_ssl_cert_path',
  'driver_ssl_cert_verify',
  'ssh_hosts_key_file',
  'strict_ssh_host_key_policy',
  'lvm_conf_file',
  'lvm_suppress_fd_warnings',
  'target_config_dir',
  'iet_conf',
  'target_ip_address',
  'iscsi_secondary_ip_addresses',
  'volume_dd_blocksize',
  'spdk_max_queue_depth',
]);

/**
 * The fingerprint of a backend: every declared, non-secret, identity option of `options`
 * (defaults applied), the driver as its catalog alias, and what the driver itself says identifies
 * an option (the file driver's folder id for volumes_dir on a shared store).
 */
export function backendFingerprint(
  driverAlias: string,
  declared: readonly string[],
  options: Record<string, unknown>,
  secrets: SecretRegistry,
  driverIdentity: Record<string, string> = {},
): BackendFingerprint {
  const masked = secrets.maskOptions(options);
  const fingerprint: BackendFingerprint = { volume_driver: { compared: driverAlias, shown: driverAlias } };
  for (const name of declared) {
    if (NOT_IDENTITY.has(name) || isSecretKey(name)) continue;
    const value = options[name];
    if (value === undefined) continue;
    const text = canonicalJson(value);
    const maskedText = canonicalJson(masked[name]);
    // A value (or part of one) from ${env:} is a secret: compared by digest, shown masked.
    const hidden = maskedText !== text || maskedText.includes(MASK);
    const compared = driverIdentity[name] ?? (hidden ? `sha256:${createHash('sha256').update(text).digest('hex')}` : text);
    fingerprint[name] = { compared, shown: hidden ? MASK : text };
  }
  return fingerprint;
}

/** The options whose compared values differ between two fingerprints (one side may lack an option). */
export function differingOptions(here: BackendFingerprint, there: BackendFingerprint): Array<{ option: string; here: string; there: string }> {
  const names = [...new Set([...Object.keys(here), ...Object.keys(there)])].sort();
  return names
    .filter((name) => here[name]?.compared !== there[name]?.compared)
    .map((name) => ({ option: name, here: here[name]?.shown ?? '(unset)', there: there[name]?.shown ?? '(unset)' }));
}

function canonicalJson(value: unknown): string {
  return JSON.stringify(sorted(value)) ?? 'null';
}

function sorted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sorted);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, sorted((value as Record<string, unknown>)[key])]),
    );
  }
  return value;
}
