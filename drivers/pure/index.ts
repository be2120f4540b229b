import { isIP } from 'node:net';
import { z } from 'zod';
import { boolOption, capacityOptions, dictOption, enumOption, intOption, listOption, sanIpOption, stringOption, tlsOptions } from '../kit/options.js';
import {
  defineDriver,
  type BackendStats,
  type CloneOperations,
  type DriverContext,
  type DriverOptions,
  type ExportOperations,
  type ManageOperations,
  type SnapshotOperations,
  type VolumeDriver,
  type VolumeRef,
} from '../kit/types.js';
import { BYTES_PER_GIB } from '../kit/units.js';
import { PureClient } from './client.js';
import { PureConnections } from './exports.js';
import { PureSnapshots } from './snapshots.js';
import { PureVolumes } from './volumes.js';

/**
 * Pure Storage FlashArray over its REST 2.x API, as Cinder's current PureISCSIDriver
 * (cinder/volume/drivers/pure.py) speaks it through py-pure-client: the wire client (client.ts),
 * volumes (volumes.ts), snapshots and array copies (snapshots.ts), and iSCSI connections through
 * array hosts (exports.ts). Exports are nothing on the array (create_export does nothing); sizes
 * are bytes. Replication, volume groups, QoS and volume tags are not built.
 */
/** Cinder's PureISCSIDriver.VERSION (the REST 2.x driver), in the stats and the listing as Cinder gives it. */
const DRIVER_VERSION = '22.0.iscsi';
const DEFAULT_CIDR = '0.0.0.0/0';
const CIDR_FORMS = 'an IPv4 or IPv6 network written address/prefix, such as 10.0.0.0/24 or fd00::/64';

/** Python's ipaddress.ip_network: an address and a prefix length its family allows. */
function isCidr(value: string): boolean {
  const [address, prefix, ...rest] = value.trim().split('/');
  const family = isIP(address ?? '');
  if (rest.length > 0 || family === 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 6 ? 128 : 32);
}

/** Cinder's replication and NVMe options of the Pure driver: cinderlib neither replicates nor connects NVMe here; accepted and not used. */
function replicationOptions() {
  const unused = (what: string) => `${what}: accepted and not used (cinderlib does not replicate; connections here are iSCSI).`;
  return {
    pure_replica_interval_default: intOption(unused('Replication interval in seconds'), { default: 3600, oslo: { kind: 'Integer' } }),
    pure_replica_retention_short_term_default: intOption(unused('Seconds all replicated snapshots are kept'), { default: 14400, oslo: { kind: 'Integer' } }),
    pure_replica_retention_long_term_per_day_default: intOption(unused('Snapshots kept per day'), { default: 3, oslo: { kind: 'Integer' } }),
    pure_replica_retention_long_term_default: intOption(unused('Days snapshots are kept beyond the short term'), { default: 7, oslo: { kind: 'Integer' } }),
    pure_replication_pg_name: stringOption(unused('Protection group of replicated volumes'), { default: 'cinder-group' }),
    pure_replication_pod_name: stringOption(unused('Pod of synchronously replicated volumes'), { default: 'cinder-pod' }),
    pure_nvme_cidr: stringOption(unused('Network of the NVMe portals'), { default: '0.0.0.0/0' }),
    pure_nvme_cidr_list: listOption(unused('Networks of the NVMe portals')),
    pure_nvme_transport: enumOption(unused('NVMe transport'), ['roce'] as const, { default: 'roce' }),
    replication_device: dictOption(unused('Replication target array')),
  };
}

const options = {
  san_ip: sanIpOption('Address of the FlashArray management interface, optionally host:port (required).', { default: '' }),
  pure_api_token: stringOption('REST API authorization token of the array user (required).', {
    ours: "a secret here by its name (contract section 6), though Cinder's option is not marked secret",
  }),
  use_chap_auth: boolOption('Give each host this driver creates CHAP credentials and send them with connections (Cinder default: false).', { default: false }),
  pure_eradicate_on_delete: boolOption(
    'Eradicate volumes and snapshots when they are deleted; data is then NOT recoverable. Off, they stay destroyed (pending eradication) and recoverable on the array (Cinder default: false).',
    { default: false },
  ),
  pure_automatic_max_oversubscription_ratio: boolOption(
    "Report the array's total data reduction as max_over_subscription_ratio (while it is below 100) instead of max_over_subscription_ratio (Cinder default: true).",
    { default: true },
  ),
  pure_host_personality: enumOption(
    'How Purity tunes the protocol for hosts this driver creates (Cinder default: none).',
    ['aix', 'esxi', 'hitachi-vsp', 'hpux', 'oracle-vm-server', 'solaris', 'vms'] as const,
    { ours: "Cinder's choices end with None (unset): leave the option out for that" },
  ),
  pure_iscsi_cidr: stringOption('Network of the iSCSI portals hosts may connect to; ignored when pure_iscsi_cidr_list is set (Cinder default: 0.0.0.0/0).', {
    default: DEFAULT_CIDR,
    check: isCidr,
    patternHelp: CIDR_FORMS,
  }),
  pure_iscsi_cidr_list: listOption('Networks of the iSCSI portals hosts may connect to; supersedes pure_iscsi_cidr (Cinder default: none).', {
    check: isCidr,
    itemHelp: 'networks (address/prefix)',
  }),
  ...replicationOptions(),
  ...tlsOptions,
  ...capacityOptions,
};

type PureOptions = DriverOptions<typeof options>;

const spaceSchema = z
  .object({
    capacity: z.number(),
    space: z.object({ total_physical: z.number(), total_provisioned: z.number().nullish(), used_provisioned: z.number().nullish(), total_reduction: z.number().nullish() }).loose(),
  })
  .loose();
const performanceFields = [
  'writes_per_sec',
  'reads_per_sec',
  'write_bytes_per_sec',
  'read_bytes_per_sec',
  'usec_per_read_op',
  'usec_per_write_op',
  'queue_depth',
  'queue_usec_per_mirrored_write_op',
  'queue_usec_per_read_op',
  'queue_usec_per_write_op',
] as const;
const performanceSchema = z.object(Object.fromEntries(performanceFields.map((field) => [field, z.number().nullish()]))).loose();
const performanceListSchema = z.object({ items: z.array(performanceSchema), total_item_count: z.number().nullish() }).loose();
const named = z.object({ name: z.string() }).loose();
const ONE_HOUR_MS = 3_600_000;
const THIRTY_SECONDS_MS = 30_000;

class PureDriver implements VolumeDriver {
  private readonly array: PureClient;
  private readonly volumes: PureVolumes;
  readonly snapshots: SnapshotOperations;
  readonly clones: CloneOperations;
  readonly manage: ManageOperations;
  readonly exports: ExportOperations;

  constructor(
    private readonly options: PureOptions,
    private readonly context: DriverContext,
  ) {
    if (!options.pure_api_token) throw new Error('pure_api_token is not set: give the API token of the array user the driver acts as (Purity: Settings > Users > API Tokens)');
    this.array = new PureClient({ sanIp: options.san_ip, apiToken: options.pure_api_token, verifyTls: options.driver_ssl_cert_verify, caPath: options.driver_ssl_cert_path }, context);
    this.volumes = new PureVolumes(this.array, options.pure_eradicate_on_delete);
    this.manage = { listManageable: () => this.volumes.listManageable(), manageExisting: (volume, name) => this.volumes.manageExisting(volume, name) };
    const copies = new PureSnapshots(this.array, this.volumes, options.pure_eradicate_on_delete);
    this.snapshots = copies.snapshots;
    this.clones = copies.clones;
    const cidrList = options.pure_iscsi_cidr_list ?? [];
    if (cidrList.length > 0 && options.pure_iscsi_cidr !== DEFAULT_CIDR) context.log.warn('pure_iscsi_cidr was ignored as pure_iscsi_cidr_list is set');
    const connections = new PureConnections(this.array, this.volumes, {
      useChap: options.use_chap_auth,
      personality: options.pure_host_personality,
      cidrs: cidrList.length > 0 ? cidrList : [options.pure_iscsi_cidr],
      apiToken: options.pure_api_token,
    });
    this.exports = {
      requiredConnectorKeys: ['initiator'],
      // As Cinder: create_export and remove_export do nothing; access is per host (connections).
      createExport: async () => {},
      removeExport: async () => {},
      initializeConnection: (volume, connector) => connections.serialized(connector, () => connections.initializeConnection(volume, connector)),
      terminateConnection: (volume, connector) => connections.serialized(connector, () => connections.terminateConnection(volume, connector)),
    };
  }

  /** Cinder's do_setup: the REST version, a session, and Purity 6.1.0 or later. */
  async setup(): Promise<void> {
    await this.array.connect();
  }

  notes(): string[] {
    return [`FlashArray ${this.array.arrayName}, Purity ${this.array.purityVersion}, REST API ${this.array.apiVersion}`];
  }

  /** Cinder's _update_volume_stats (one array, no replication). */
  async getStats(): Promise<BackendStats> {
    const array = this.array;
    const [space] = await array.items(spaceSchema, 'GET', '/arrays/space', {}, 'read the array space');
    if (!space) throw array.error('BACKEND_UNAVAILABLE', 'read the array space: GET /arrays/space listed nothing');
    const now = Date.now();
    const operation = 'read the array performance';
    const performance = array.parse(
      performanceListSchema,
      await array.request('GET', '/arrays/performance', { end_time: now, start_time: now - ONE_HOUR_MS, resolution: THIRTY_SECONDS_MS, total_item_count: true }, operation),
      operation,
    );
    const sample = performance.total_item_count !== 0 ? performance.items[0] : undefined;
    if (!sample) this.context.log.warn('No performance samples returned from array for the requested interval; reporting zeroed metrics.');
    const [hosts, volumes, snapshots, groups] = await Promise.all([
      array.list(named, '/hosts', {}, 'count hosts'),
      array.list(named, '/volumes', {}, 'count volumes'),
      array.list(named, '/volume-snapshots', {}, 'count snapshots'),
      array.list(named, '/protection-groups', {}, 'count protection groups'),
    ]);
    const total = space.capacity / BYTES_PER_GIB;
    const used = space.space.total_physical / BYTES_PER_GIB;
    // Evergreen//One arrays report used_provisioned instead, and no reduction (999: use the option).
    const provisioned = (space.space.total_provisioned ?? space.space.used_provisioned ?? 0) / BYTES_PER_GIB;
    const reduction = space.space.total_reduction ?? 999;
    const ratio = this.options.pure_automatic_max_oversubscription_ratio && reduction < 100 ? reduction : this.options.max_over_subscription_ratio;
    const pool = {
      total_capacity_gb: total,
      free_capacity_gb: total - used,
      provisioned_capacity_gb: provisioned,
      reserved_percentage: this.options.reserved_percentage,
      max_over_subscription_ratio: ratio,
      thin_provisioning_support: true,
      thick_provisioning_support: false,
      multiattach: true,
      QoS_support: false,
      consistencygroup_support: false,
      total_volumes: volumes.length,
      total_snapshots: snapshots.length,
      total_hosts: hosts.length,
      total_pgroups: groups.length,
      writes_per_sec: sample?.writes_per_sec ?? 0,
      reads_per_sec: sample?.reads_per_sec ?? 0,
      input_per_sec: sample?.write_bytes_per_sec ?? 0,
      output_per_sec: sample?.read_bytes_per_sec ?? 0,
      usec_per_read_op: sample?.usec_per_read_op ?? 0,
      usec_per_write_op: sample?.usec_per_write_op ?? 0,
      queue_depth: sample?.queue_depth ?? 0,
      queue_usec_per_mirrored_write_op: sample?.queue_usec_per_mirrored_write_op ?? 0,
      queue_usec_per_read_op: sample?.queue_usec_per_read_op ?? 0,
      queue_usec_per_write_op: sample?.queue_usec_per_write_op ?? 0,
      replication_enabled: false,
      replication_type: [],
      replication_count: 0,
      replication_targets: [],
    };
    return {
      volume_backend_name: this.context.backendName,
      vendor_name: 'Pure Storage',
      driver_version: DRIVER_VERSION,
      storage_protocol: 'iSCSI',
      // Cinder's Pure driver is not pool-aware: its stats are top-level, and the scheduler treats
      // the backend as one pool named after it. Both shapes are given.
      ...pool,
      pools: [{ pool_name: this.context.backendName, ...pool }],
    };
  }

  createVolume(volume: VolumeRef): Promise<void> {
    return this.volumes.createVolume(volume);
  }

  extendVolume(volume: VolumeRef, newSizeGb: number): Promise<void> {
    return this.volumes.extendVolume(volume, newSizeGb);
  }

  deleteVolume(volume: VolumeRef): Promise<void> {
    return this.volumes.deleteVolume(volume);
  }

  /** FlashArray snapshots share blocks with their volume: they take nothing from the pool when made. */
  snapshotSizeGb(): number {
    return 0;
  }

  async close(): Promise<void> {
    await this.array.close();
  }
}

export default defineDriver({
  summary: "Pure Storage FlashArray over its REST 2.x API, as Cinder's PureISCSIDriver uses it through py-pure-client (no py-pure-client needed).",
  options,
  version: DRIVER_VERSION,
  ciWikiName: 'Pure_Storage_CI',
  classDescriptions: {
    PureISCSIDriver:
      'Pure Storage FlashArray over its REST 2.x API (no py-pure-client needed): volumes, snapshots, array copies (clones, volumes from snapshots) and iSCSI connections through array hosts, CHAP with use_chap_auth.',
  },
  create: (opts, context) => new PureDriver(opts, context),
});
