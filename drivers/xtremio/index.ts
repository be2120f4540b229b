import { boolOption, capacityOptions, chapOptionSet, intOption, listOption, sanIpOption, sanOptions, textOption, tlsOptions } from '../kit/options.js';
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
import { XmsClient } from './client.js';
import { FC_UNSUPPORTED, XtremioConnections } from './exports.js';
import { XtremioSnapshots } from './snapshots.js';
import { XtremioVolumes } from './volumes.js';

/**
 * Dell EMC XtremIO over the XMS JSON REST API, as Cinder's driver
 * (cinder/volume/drivers/dell_emc/xtremio.py) uses it: the wire client (client.ts), volumes
 * (volumes.ts), snapshots and clones as XMS snapshots (snapshots.ts), and iSCSI connections
 * through initiator groups and lun-maps (exports.ts). Exports are nothing on the array
 * (SanDriver's create_export and remove_export do nothing); sizes are "<n>g", capacities KiB.
 */
/** Cinder 21's XtremIOVolumeDriver.VERSION, whose behaviour this follows. */
const DRIVER_VERSION = '1.0.13';

const options = {
  san_ip: sanIpOption('Address of the XMS, optionally host:port (required).', { default: '' }),
  san_login: sanOptions.san_login,
  san_password: textOption('Password of san_login on the XMS.', { default: '' }),
  xtremio_cluster_name: textOption('XMS cluster name in a multi-cluster XMS; empty uses the first cluster.', { default: '' }),
  xtremio_array_busy_retry_count: intOption('Attempts when the array answers "system_is_busy".', { default: 5, min: 1, oslo: { kind: 'Integer' } }),
  xtremio_array_busy_retry_interval: intOption('Seconds between attempts when the array is busy.', { default: 5, min: 0, oslo: { kind: 'Integer' } }),
  xtremio_volumes_per_glance_cache: intOption('Kept for config compatibility (image cache is not used here).', { default: 100, min: 0, oslo: { kind: 'Integer' } }),
  xtremio_clean_unused_ig: boolOption('Delete an initiator group once the last volume mapped to it is disconnected (Cinder leaves it by default).', {
    default: false,
  }),
  xtremio_ports: listOption('XtremIO iSCSI IPs or FC WWNs that connections may use; empty allows all ports.', { default: [] }),
  ...chapOptionSet("accepted and not read, as Cinder's XtremIO driver: CHAP follows the cluster's own CHAP modes"),
  ...tlsOptions,
  ...capacityOptions,
};

type XtremioOptions = DriverOptions<typeof options>;

class XtremioDriver implements VolumeDriver {
  private readonly xms: XmsClient;
  private readonly protocol: string;
  private readonly volumes: XtremioVolumes;
  readonly exports: ExportOperations;
  readonly snapshots: SnapshotOperations;
  readonly clones: CloneOperations;
  readonly manage: ManageOperations;

  constructor(
    private readonly options: XtremioOptions,
    private readonly context: DriverContext,
    volumeDriver: string,
  ) {
    this.protocol = /FCDriver$/.test(volumeDriver) ? 'FC' : 'iSCSI';
    this.xms = new XmsClient(
      {
        sanIp: options.san_ip,
        login: options.san_login,
        password: options.san_password,
        verifyTls: options.driver_ssl_cert_verify,
        caPath: options.driver_ssl_cert_path,
        busyRetries: options.xtremio_array_busy_retry_count,
        busyIntervalSeconds: options.xtremio_array_busy_retry_interval,
        clusterName: options.xtremio_cluster_name,
      },
      context,
    );
    this.volumes = new XtremioVolumes(this.xms);
    this.manage = { listManageable: () => this.volumes.listManageable(), manageExisting: (volume, name) => this.volumes.manageExisting(volume, name) };
    const copies = new XtremioSnapshots(this.xms, this.volumes);
    this.snapshots = copies.snapshots;
    this.clones = copies.clones;
    const allowedPorts = options.xtremio_ports.map((port) => port.toLowerCase());
    const connections = new XtremioConnections(this.xms, this.protocol, allowedPorts, options.xtremio_clean_unused_ig);
    this.exports = {
      ...(this.protocol === 'FC' ? { unavailable: `backend "${context.backendName}": ${FC_UNSUPPORTED}` } : {}),
      // Cinder's validate_connector: iSCSIDriver needs the initiator, FibreChannelDriver the wwpns.
      requiredConnectorKeys: this.protocol === 'FC' ? ['wwpns'] : ['initiator'],
      createExport: async () => {},
      removeExport: async () => {},
      initializeConnection: (volume, connector) => connections.initializeConnection(volume, connector),
      terminateConnection: (volume, connector) => connections.terminateConnection(volume, connector),
    };
  }

  /** Cinder's check_for_setup_error. */
  async setup(): Promise<void> {
    await this.xms.connect();
  }

  notes(): string[] {
    return [`XMS REST API ${this.xms.api}${this.xms.clusterName ? `, cluster ${this.xms.clusterName}` : ''}`];
  }

  async getStats(): Promise<BackendStats> {
    const cluster = await this.xms.currentCluster();
    // Cinder: capacities arrive in KiB and are divided by units.Mi to give GiB.
    const total = roundGb(cluster['ud-ssd-space'] / KIB_PER_GIB);
    const used = roundGb(cluster['ud-ssd-space-in-use'] / KIB_PER_GIB);
    const capacity = {
      total_capacity_gb: total,
      free_capacity_gb: roundGb(total - used),
      provisioned_capacity_gb: roundGb(cluster['vol-size'] / KIB_PER_GIB),
      max_over_subscription_ratio: this.options.max_over_subscription_ratio,
      thin_provisioning_support: true,
      thick_provisioning_support: false,
      reserved_percentage: this.options.reserved_percentage,
      QoS_support: false,
      multiattach: false,
    };
    return {
      volume_backend_name: this.context.backendName,
      vendor_name: 'Dell EMC',
      driver_version: DRIVER_VERSION,
      storage_protocol: this.protocol,
      // Cinder's XtremIO driver is not pool-aware: its stats are top-level, and the scheduler
      // treats the backend as one pool named after it. Both shapes are given.
      ...capacity,
      ...(this.xms.api === 'v2' ? { consistencygroup_support: true } : {}),
      pools: [{ pool_name: this.context.backendName, ...capacity }],
    };
  }

  /** Cinder's XtremIO driver sets no provider_location: the array object is named by the volume id. */
  createVolume(volume: VolumeRef): Promise<void> {
    return this.volumes.createVolume(volume);
  }

  extendVolume(volume: VolumeRef, newSizeGb: number): Promise<void> {
    return this.volumes.extendVolume(volume, newSizeGb);
  }

  deleteVolume(volume: VolumeRef): Promise<void> {
    return this.volumes.deleteVolume(volume);
  }

  /** Snapshots share blocks with their ancestor: they take nothing from the pool when made. */
  snapshotSizeGb(): number {
    return 0;
  }

  async close(): Promise<void> {
    await this.xms.rest.close();
  }
}

export default defineDriver({
  summary: "Dell EMC XtremIO over the XMS REST API, as Cinder's XtremIO iSCSI/FC drivers use it.",
  options,
  version: DRIVER_VERSION,
  ciWikiName: 'DellEMC_XtremIO_CI',
  classDescriptions: {
    XtremIOISCSIDriver: 'Dell EMC XtremIO over the XMS REST API: volumes, snapshots, clones and iSCSI connections (initiator groups, CHAP as the cluster requires).',
    XtremIOFCDriver: `Dell EMC XtremIO over the XMS REST API: volumes, snapshots and clones. ${FC_UNSUPPORTED}.`,
  },
  create: (opts, context, volumeDriver) => new XtremioDriver(opts, context, volumeDriver),
});
