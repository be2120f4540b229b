import { z } from 'zod';
import { boolOption, capacityOptionSet, dictOption, intOption, sanIpOption, sanOptions, stringOption, textOption, tlsOptionSet } from '../kit/options.js';
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
import { KIB_PER_GIB, roundGb } from '../kit/units.js';
import { K2Client } from './client.js';
import { K2Connections } from './exports.js';
import { K2Snapshots } from './snapshots.js';
import { K2Volumes } from './volumes.js';

/**
 * Kaminario K2 over its REST API (/api/v2), spoken directly the way Cinder's Kaminario driver
 * (cinder/volume/drivers/kaminario/kaminario_common.py) spoke it through the vendor's krest
 * client: the wire client (client.ts), volumes as "cvg-<id>" groups holding "cv-<id>" volumes
 * (volumes.ts), snapshots and the copies through this host (snapshots.ts), and iSCSI connections
 * through K2 hosts and mappings (exports.ts).
 */
/**
 * Cinder 21's KaminarioISCSIDriver.VERSION. Its 1.1 to 1.4 added manage/unmanage, replication and
 * retype, which cinderlib never calls (replication_device is accepted and not used).
 */
const DRIVER_VERSION = '1.4';

const options = {
  san_ip: sanIpOption('Address of the K2 array, optionally host:port (required).', { default: '' }),
  san_login: sanOptions.san_login,
  san_password: textOption('Password of san_login on the K2.', { default: '' }),
  kaminario_nodedup_substring: stringOption('Older Cinder releases: volume types containing this create nodedup volumes; cinderlib has no volume types, so volumes are dedup.', {
    default: 'K2-nodedup',
    ours: 'kept from Cinder releases before 21 for configs written for them',
  }),
  unique_fqdn_network: boolOption(
    "Name the K2 host of a connection after the connector's host name (true) or after its reversed initiator IQN (false: for hosts whose names are not unique in the network).",
    { default: true },
  ),
  disable_discovery: boolOption('Disable iSCSI discovery (sendtargets) for multipath connections: connection info then lists every portal, IQN and LUN.', {
    default: false,
  }),
  auto_calc_max_oversubscription_ratio: boolOption("Compute max_over_subscription_ratio from the array's provisioned/used ratio.", { default: false }),
  kaminario_retry_count: intOption('Attempts when the K2 is busy (MC_ERR_BUSY and kin, or 5xx); Cinder tried 5 times.', {
    default: 5,
    min: 1,
    ours: 'not a Cinder option',
  }),
  kaminario_retry_interval: intOption('Seconds before the first retry, doubling after each.', { default: 2, min: 0, ours: 'not a Cinder option' }),
  replication_device: dictOption('Replication target array (Cinder 1.2+): accepted and not used, as cinderlib never replicates.'),
  volume_dd_blocksize: stringOption("Block size of Cinder's generic dd copies; copies here go through the host in large sparse chunks, so it is accepted and not used.", {
    default: '1M',
  }),
  ...tlsOptionSet("Cinder's K2 driver has no TLS options (krest does not verify); this one verifies unless told not to"),
  ...capacityOptionSet("read by every Cinder driver (cinder/volume/driver.py), though the K2 driver's listing leaves them out"),
};

type KaminarioOptions = DriverOptions<typeof options>;

const capacitySchema = z.object({ total: z.number(), free: z.number(), provisioned: z.number().optional(), provisioned_volumes: z.number() }).loose();

class KaminarioDriver implements VolumeDriver {
  private readonly k2: K2Client;
  private readonly protocol: string;
  private readonly volumes: K2Volumes;

  /** Cinder's create_snapshot, delete_snapshot and create_volume_from_snapshot (a copy through this host). */
  readonly snapshots: SnapshotOperations;

  /** Cinder's create_cloned_volume: a copy through this host, refused for a mapped (in-use) source. */
  readonly clones: CloneOperations;
  readonly manage: ManageOperations;

  /** kaminario_iscsi.py's exports (iSCSI only: the FC driver's are not built). */
  readonly exports?: ExportOperations;

  constructor(
    private readonly options: KaminarioOptions,
    private readonly context: DriverContext,
    volumeDriver: string,
  ) {
    this.protocol = /FCDriver$/.test(volumeDriver) ? 'FC' : 'iSCSI';
    this.k2 = new K2Client(
      {
        sanIp: options.san_ip,
        login: options.san_login,
        password: options.san_password,
        verifyTls: options.driver_ssl_cert_verify,
        caPath: options.driver_ssl_cert_path,
        retries: options.kaminario_retry_count,
        retryIntervalSeconds: options.kaminario_retry_interval,
      },
      context,
    );
    this.volumes = new K2Volumes(this.k2);
    this.manage = { listManageable: () => this.volumes.listManageable(), manageExisting: (volume, name) => this.volumes.manageExisting(volume, name) };
    if (this.protocol === 'iSCSI') {
      const connections = new K2Connections(this.k2, { uniqueFqdnNetwork: options.unique_fqdn_network, disableDiscovery: options.disable_discovery });
      this.exports = {
        requiredConnectorKeys: ['initiator'],
        // As Cinder: create_export and remove_export do nothing; access is per host (mappings).
        createExport: async () => {},
        initializeConnection: (volume, connector) => connections.serialized(() => connections.initializeConnection(volume, connector)),
        terminateConnection: (volume, connector) => connections.serialized(() => connections.terminateConnection(volume, connector)),
        removeExport: async () => {},
      };
    }
    const copies = new K2Snapshots(this.k2, this.volumes, this.exports !== undefined);
    this.snapshots = {
      createSnapshot: (snapshot) => copies.createSnapshot(snapshot),
      deleteSnapshot: (snapshot) => copies.deleteSnapshot(snapshot),
      createVolumeFromSnapshot: (volume, snapshot, progress) => copies.createVolumeFromSnapshot(volume, snapshot, progress),
      revertToSnapshot: (volume, snapshot, progress) => copies.revertToSnapshot(volume, snapshot, progress),
      cannotRevert: () => copies.cannotRevert(),
    };
    this.clones = {
      refusesConnectedSource: true,
      createClonedVolume: (volume, source, progress) => copies.createClonedVolume(volume, source, progress),
    };
  }

  async setup(): Promise<void> {
    await this.k2.connect();
  }

  async getStats(): Promise<BackendStats> {
    const capacityHits = await this.k2.search('system/capacity', {}, 'read system capacity');
    const parsed = capacitySchema.safeParse(capacityHits.hits[0]);
    if (!parsed.success) throw this.k2.error('BACKEND_UNAVAILABLE', 'read system capacity: unexpected answer from the K2');
    const capacity = parsed.data;
    const volumes = await this.k2.search('volumes', { __limit: 1 }, 'count volumes');
    const used = capacity.total - capacity.free;
    const configured = this.options.max_over_subscription_ratio;
    const ratio =
      this.options.auto_calc_max_oversubscription_ratio && capacity.provisioned && used !== 0
        ? roundGb(capacity.provisioned_volumes / used)
        : configured === 'auto'
          ? configured
          : roundGb(configured);
    const pool = {
      QoS_support: false,
      free_capacity_gb: roundGb(capacity.free / KIB_PER_GIB),
      total_capacity_gb: roundGb(capacity.total / KIB_PER_GIB),
      thin_provisioning_support: true,
      sparse_copy_volume: true,
      total_volumes: Math.max(0, volumes.total - 1), // as Cinder: the K2 counts one volume of its own
      thick_provisioning_support: false,
      provisioned_capacity_gb: roundGb(capacity.provisioned_volumes / KIB_PER_GIB),
      max_over_subscription_ratio: ratio,
      reserved_percentage: this.options.reserved_percentage,
    };
    return {
      volume_backend_name: this.context.backendName,
      vendor_name: 'Kaminario',
      driver_version: DRIVER_VERSION,
      storage_protocol: this.protocol,
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

  /** Thin: the K2 shares blocks between a volume group and its snapshots. */
  snapshotSizeGb(): number {
    return 0;
  }

  async close(): Promise<void> {
    await this.k2.rest.close();
  }
}

export default defineDriver({
  summary: "Kaminario K2 over its REST API, as Cinder's Kaminario iSCSI/FC drivers used it through krest (no krest needed).",
  options,
  version: DRIVER_VERSION,
  ciWikiName: 'Kaminario_K2_CI',
  classDescriptions: {
    KaminarioISCSIDriver: 'Kaminario K2 over its REST API (no krest needed): volumes, snapshots, clones and copies through this host, iSCSI connections.',
    KaminarioFCDriver:
      'Kaminario K2 over its REST API (no krest needed): volumes and snapshots. Fibre Channel connections are not made here, nor the copies through this host that need them (clones, volumes from snapshots); the iSCSI driver (KaminarioISCSIDriver) makes both.',
  },
  create: (opts, context, volumeDriver) => new KaminarioDriver(opts, context, volumeDriver),
});
