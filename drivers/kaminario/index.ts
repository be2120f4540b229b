import { z } from 'zod';
import { StorageError, isStorageError, type ErrorCode } from '../kit/base.js';
import { LocalRunner } from '../kit/exec/local.js';
import { CommandTransportError, privilegedPrefix } from '../kit/exec/runner.js';
import { RestClient, httpsOrigin, type RestResponse } from '../kit/rest/client.js';
import { boolOption, capacityOptions, intOption, sanIpOption, sanOptions, stringOption, textOption, tlsOptions } from '../kit/options.js';
import {
  defineDriver,
  type BackendStats,
  type CloneOperations,
  type ConnectionInfo,
  type Connector,
  type CopyProgress,
  type CreateVolumeRequest,
  type DriverContext,
  type DriverOptions,
  type ExportOperations,
  type LocalAttachment,
  type SnapshotOperations,
  type SnapshotRef,
  type VolumeDriver,
  type VolumeRef,
} from '../kit/types.js';
import { KIB_PER_GIB, compareVersions, roundGb, versionNumbers } from '../kit/units.js';
import { CopyFailure, copyDevice } from '../kit/copy/host-copy.js';

/**
 * Kaminario K2 over its REST API (/api/v2), spoken directly the way Cinder's Kaminario driver
 * (cinder/volume/drivers/kaminario/kaminario_common.py) spoke it through the vendor's krest
 * client: resources discovered from the REST root, searches answering {hits, total, limit,
 * offset}, references sent as {"ref": "/volume_groups/<id>"}, updates by PATCH. A Cinder volume
 * is a volume group "cvg-<id>" holding a volume "cv-<id>"; sizes and capacities are KiB. A Cinder
 * snapshot is a K2 snapshot of that group with short_name "cs-<id>"; the K2 shares blocks between
 * a group and its snapshots, so a snapshot takes no space of its own when made.
 *
 * Connections as Cinder's kaminario_iscsi.py makes them: a K2 host per initiator (named by
 * get_initiator_host_name) holding the initiator's IQN, a mapping of the volume to that host, and
 * the LUN the array gave the mapping; the host goes when its last mapping goes. Copies (a volume
 * from a snapshot, a clone) go through this server's host as Cinder's do: attach the source (for a
 * snapshot, a "cview-<new volume id>" view of it) and the new volume here, dd, detach.
 */
const DRIVER_VERSION = '1.0';
const K2_MIN_VERSION = [2, 2, 0];
/** The retention policy Cinder's driver gives every snapshot (and view) it makes. */
const RETENTION_POLICY = 'Best_Effort_Retention';
/** Cinder's ISCSI_TCP_PORT: every portal is <net_ip>:3260. */
const ISCSI_TCP_PORT = 3260;
/** The host type Cinder's driver gives every host it creates. */
const HOST_TYPE = 'Linux';

const options = {
  san_ip: sanIpOption('Address of the K2 array, optionally host:port.', { required: true }),
  san_login: sanOptions.san_login,
  san_password: textOption('Password of san_login on the K2.', { default: '' }),
  kaminario_nodedup_substring: stringOption('Older Cinder releases: volume types containing this create nodedup volumes; cinderlib has no volume types, so volumes are dedup.', {
    default: 'K2-nodedup',
  }),
  unique_fqdn_network: boolOption(
    "Name the K2 host of a connection after the connector's host name (true) or after its reversed initiator IQN (false: for hosts whose names are not unique in the network).",
    { default: true },
  ),
  disable_discovery: boolOption('Disable iSCSI discovery (sendtargets) for multipath connections: connection info then lists every portal, IQN and LUN.', {
    default: false,
  }),
  auto_calc_max_oversubscription_ratio: boolOption('Compute max_over_subscription_ratio from the array\'s provisioned/used ratio.', { default: false }),
  kaminario_retry_count: intOption('Not a Cinder option: attempts when the K2 is busy (MC_ERR_BUSY and kin, or 5xx); Cinder tried 5 times.', {
    default: 5,
    min: 1,
  }),
  kaminario_retry_interval: intOption('Not a Cinder option: seconds before the first retry, doubling after each.', { default: 2, min: 0 }),
  ...tlsOptions,
  ...capacityOptions,
};

type KaminarioOptions = DriverOptions<typeof options>;

// What the K2 answers, checked before use.
const discoverySchema = z.object({ resources: z.record(z.string(), z.object({ url: z.string() }).loose()) }).loose();
const hitSchema = z.object({ id: z.number().int() }).loose();
const searchSchema = z.object({ hits: z.array(hitSchema), total: z.number().int() }).loose();
const stateSchema = z.object({ rest_api_version: z.string() }).loose();
const capacitySchema = z
  .object({ total: z.number(), free: z.number(), provisioned: z.number().optional(), provisioned_volumes: z.number() })
  .loose();
const errorSchema = z.object({ error_msg: z.string() }).loose();
const snapshotHitSchema = hitSchema.extend({ short_name: z.string() });
const netIpSchema = z.object({ ip_address: z.string().min(1), wan_port: z.unknown().optional() }).loose();
const netIpSearchSchema = searchSchema.extend({ hits: z.array(netIpSchema) });
const targetStateSchema = z.object({ iscsi_qualified_target_name: z.string().min(1) }).loose();
const mappingSchema = hitSchema.extend({ lun: z.number().int().min(0) });
const mappingSearchSchema = searchSchema.extend({ hits: z.array(mappingSchema) });
const snapshotSearchSchema = searchSchema.extend({ hits: z.array(snapshotHitSchema) });

type Hit = z.infer<typeof hitSchema>;
type Query = Record<string, string | number>;

/** The K2 object a VolumeRef stands for: a Cinder volume's "cv-<id>", or a "cview-..." view. */
interface Exposed {
  resource: 'volumes' | 'snapshots';
  name: string;
  object: Hit | undefined;
}

class KaminarioDriver implements VolumeDriver {
  private readonly client: RestClient;
  /** Runs dd on this host for copies (the shared local command runner). */
  private readonly runner = new LocalRunner();
  private readonly protocol: string;
  /** Resource name -> URL path, from the REST root (krest's discover()). */
  private resources = new Map<string, string>();

  /** initializeConnection and terminateConnection run one at a time, as under Cinder's k2_lock_name lock. */
  private connectionQueue: Promise<unknown> = Promise.resolve();

  /** Cinder's create_snapshot, delete_snapshot and create_volume_from_snapshot (a copy through this host). */
  readonly snapshots: SnapshotOperations = {
    createSnapshot: (snapshot) => this.createSnapshot(snapshot),
    deleteSnapshot: (snapshot) => this.deleteSnapshot(snapshot),
    createVolumeFromSnapshot: (volume, snapshot, progress) => this.createVolumeFromSnapshot(volume, snapshot, progress),
  };

  /** Cinder's create_cloned_volume: a copy through this host, refused for a mapped (in-use) source. */
  readonly clones: CloneOperations = {
    refusesConnectedSource: true,
    createClonedVolume: (volume, source, progress) => this.createClonedVolume(volume, source, progress),
  };

  /** kaminario_iscsi.py's exports (iSCSI only: the FC driver's are not built). */
  readonly exports?: ExportOperations;

  constructor(
    private readonly options: KaminarioOptions,
    private readonly context: DriverContext,
    volumeDriver: string,
  ) {
    this.protocol = /FCDriver$/.test(volumeDriver) ? 'FC' : 'iSCSI';
    if (this.protocol === 'iSCSI') {
      this.exports = {
        requiredConnectorKeys: ['initiator'],
        // As Cinder: create_export and remove_export do nothing; access is per host (mappings).
        createExport: async () => {},
        initializeConnection: (volume, connector) => this.serialized(() => this.initializeConnection(volume, connector)),
        terminateConnection: (volume, connector) => this.serialized(() => this.terminateConnection(volume, connector)),
        removeExport: async () => {},
      };
    }
    this.client = new RestClient({
      backendName: context.backendName,
      baseUrl: `${httpsOrigin(options.san_ip)}/api/v2`,
      username: options.san_login,
      password: options.san_password,
      verifyTls: options.driver_ssl_cert_verify,
      caPath: options.driver_ssl_cert_path,
      retry: {
        attempts: options.kaminario_retry_count,
        intervalMs: options.kaminario_retry_interval * 1000,
        backoffRate: 2,
        isBusy: isK2Busy,
      },
      log: context.log,
      secrets: context.secrets,
    });
  }

  /** Cinder's check_for_setup_error: discover resources, then require REST API 2.2.0 or later. */
  async setup(): Promise<void> {
    const root = this.parse(discoverySchema, await this.client.request('GET', '', { operation: 'discover resources' }), 'discover resources');
    this.resources = new Map(Object.entries(root.resources).map(([name, resource]) => [name, resource.url]));
    for (const needed of ['system/state', 'system/capacity', 'volume_groups', 'volumes', 'snapshots', 'retention_policies']) {
      if (!this.resources.has(needed)) throw this.error('BACKEND_UNAVAILABLE', `the K2 REST API offers no "${needed}" resource`);
    }
    const state = await this.search('system/state', {}, 'read system state');
    const version = state.hits[0] ? stateSchema.safeParse(state.hits[0]) : undefined;
    if (!version?.success) throw this.error('BACKEND_UNAVAILABLE', 'K2 rest api version search failed');
    if (compareVersions(versionNumbers(version.data.rest_api_version), K2_MIN_VERSION) < 0) {
      throw this.error('BACKEND_UNAVAILABLE', `K2 rest api version should be >= ${K2_MIN_VERSION.join('.')}, the array has ${version.data.rest_api_version}`);
    }
  }

  async getStats(): Promise<BackendStats> {
    const capacityHits = await this.search('system/capacity', {}, 'read system capacity');
    const parsed = capacitySchema.safeParse(capacityHits.hits[0]);
    if (!parsed.success) throw this.error('BACKEND_UNAVAILABLE', 'read system capacity: unexpected answer from the K2');
    const capacity = parsed.data;
    const volumes = await this.search('volumes', { __limit: 1 }, 'count volumes');
    const used = capacity.total - capacity.free;
    const ratio =
      this.options.auto_calc_max_oversubscription_ratio && capacity.provisioned && used !== 0
        ? capacity.provisioned_volumes / used
        : this.options.max_over_subscription_ratio;
    const pool = {
      QoS_support: false,
      free_capacity_gb: roundGb(capacity.free / KIB_PER_GIB),
      total_capacity_gb: roundGb(capacity.total / KIB_PER_GIB),
      thin_provisioning_support: true,
      sparse_copy_volume: true,
      total_volumes: Math.max(0, volumes.total - 1), // as Cinder: the K2 counts one volume of its own
      thick_provisioning_support: false,
      provisioned_capacity_gb: roundGb(capacity.provisioned_volumes / KIB_PER_GIB),
      max_over_subscription_ratio: roundGb(ratio),
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

  /** A volume group, then the volume inside it; any failure removes whatever was made. */
  async createVolume(volume: VolumeRef): Promise<{ provider_location: string }> {
    const groupName = k2GroupName(volume.id);
    const volumeName = k2VolumeName(volume.id);
    try {
      const group = await this.create('volume_groups', { name: groupName, quota: 0, is_dedup: true }, `create volume group ${groupName}`);
      await this.create(
        'volumes',
        { name: volumeName, size: volume.size * KIB_PER_GIB, volume_group: { ref: this.ref('volume_groups', group) } },
        `create volume ${volumeName}`,
      );
    } catch (error) {
      await this.rollBack(volumeName, groupName);
      throw error;
    }
    return { provider_location: volumeName };
  }

  async extendVolume(volume: VolumeRef, newSizeGb: number): Promise<void> {
    const name = k2VolumeName(volume.id);
    const found = await this.find('volumes', { name }, `look up ${name}`);
    if (!found) throw this.error('NOT_FOUND', `extend ${name}: the volume is not on the array`);
    const operation = `extend ${name} to ${newSizeGb} GiB`;
    const response = await this.client.request('PATCH', `${this.url('volumes')}/${found.id}`, { operation, body: { size: newSizeGb * KIB_PER_GIB } });
    if (response.status >= 300) throw this.failure(operation, response);
  }

  /**
   * The volume, then its group; what is already gone counts as deleted. A group that still has
   * snapshots is refused before anything is deleted: Cinder refuses such a delete above the
   * driver (or cascades through delete_snapshot first), and deletes a group's snapshots itself
   * before deleting the group rather than leaving that to the array.
   */
  async deleteVolume(volume: VolumeRef): Promise<void> {
    const groupName = k2GroupName(volume.id);
    const group = await this.find('volume_groups', { name: groupName }, `look up ${groupName}`);
    if (group) await this.refuseWhileSnapshotted(groupName, group);
    await this.deleteFound('volumes', { name: k2VolumeName(volume.id) });
    await this.deleteFound('volume_groups', { name: groupName });
  }

  /** Thin: the K2 shares blocks between a volume group and its snapshots. */
  snapshotSizeGb(): number {
    return 0;
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /** Cinder's create_snapshot: a snapshot of the volume's group, kept until Cinder deletes it. */
  private async createSnapshot(snapshot: SnapshotRef): Promise<{ provider_location: string }> {
    const snapshotName = k2SnapshotName(snapshot.id);
    const groupName = k2GroupName(snapshot.volume_id);
    const policy = await this.retentionPolicy();
    const group = await this.find('volume_groups', { name: groupName }, `look up ${groupName}`);
    if (!group) throw this.error('NOT_FOUND', `create snapshot ${snapshotName}: volume group ${groupName} is not on the array`);
    await this.create(
      'snapshots',
      {
        short_name: snapshotName,
        source: { ref: this.ref('volume_groups', group) },
        retention_policy: { ref: this.ref('retention_policies', policy) },
        // As Cinder: the policy may not expire a snapshot Cinder still tracks.
        is_auto_deleteable: false,
      },
      `create snapshot ${snapshotName} of ${groupName}`,
    );
    return { provider_location: snapshotName };
  }

  /** Cinder's delete_snapshot: found by short_name; a snapshot already gone counts as deleted. */
  private async deleteSnapshot(snapshot: SnapshotRef): Promise<void> {
    await this.deleteFound('snapshots', { short_name: k2SnapshotName(snapshot.id) });
  }

  /**
   * Cinder's create_volume_from_snapshot: a view "cview-<new volume id>" of the snapshot (an
   * exposable snapshot of it, with Best_Effort_Retention), the view and the new volume attached
   * here, dd from one to the other, both detached and the view deleted; on failure the new volume
   * is deleted too. Asks this host first, and touches nothing on the array when it cannot attach.
   */
  private async createVolumeFromSnapshot(volume: CreateVolumeRequest, snapshot: SnapshotRef, progress: CopyProgress): Promise<{ provider_location: string }> {
    const operation = `create volume ${volume.id} from snapshot ${snapshot.id}`;
    await this.refuseUnlessAttachable(
      operation,
      'attach a view of the snapshot and the new volume here, copy, detach',
      `keep the snapshot as a restore point on the array instead: the K2 can restore volume group ${k2GroupName(snapshot.volume_id)} from ${k2SnapshotName(snapshot.id)} in place`,
    );
    const snapshotName = k2SnapshotName(snapshot.id);
    const viewName = k2ViewName(volume.id);
    const policy = await this.retentionPolicy();
    const source = await this.find('snapshots', { short_name: snapshotName }, `look up ${snapshotName}`);
    if (!source) throw this.error('NOT_FOUND', `${operation}: snapshot ${snapshotName} is not on the array`);
    await this.create(
      'snapshots',
      { short_name: viewName, source: { ref: this.ref('snapshots', source) }, retention_policy: { ref: this.ref('retention_policies', policy) }, is_exposable: true },
      `create view ${viewName} of ${snapshotName}`,
    );
    // The view as a VolumeRef: its provider_location names the view, which is how exports find it.
    const view: VolumeRef = { id: viewName, size: snapshot.volume_size, pool_name: volume.pool_name, provider_location: viewName };
    return this.copyThroughHost(operation, volume, view, snapshot.volume_size, progress, () =>
      this.deleteFound('snapshots', { short_name: viewName }),
    );
  }

  /**
   * Cinder's create_cloned_volume: refused while the source is mapped to any host (the K2 driver
   * cannot clone an attached volume); otherwise the source and the new volume attached here, dd,
   * both detached; on failure the new volume is deleted.
   */
  private async createClonedVolume(volume: CreateVolumeRequest, sourceVolume: VolumeRef, progress: CopyProgress): Promise<{ provider_location: string }> {
    const operation = `clone volume ${sourceVolume.id} to ${volume.id}`;
    await this.refuseUnlessAttachable(
      operation,
      'attach the source and the new volume here, copy, detach',
      `take a snapshot of volume ${sourceVolume.id} instead and keep it as a restore point on the array`,
    );
    const sourceName = k2VolumeName(sourceVolume.id);
    const source = await this.find('volumes', { name: sourceName }, `look up ${sourceName}`);
    if (!source) throw this.error('NOT_FOUND', `${operation}: volume ${sourceName} is not on the array`);
    const mappings = await this.search('mappings', { 'volume.ref': this.ref('volumes', source), __limit: 1 }, `look up mappings of ${sourceName}`);
    if (mappings.total !== 0) {
      throw this.error(
        'IN_USE',
        `${operation}: the K2 driver does not support clone of an attached volume (${sourceName} is mapped to a host); ` +
          'disconnect it first, or create a snapshot of it and then a volume from the snapshot',
      );
    }
    return this.copyThroughHost(operation, volume, sourceVolume, sourceVolume.size, progress);
  }

  /** Throws UNSUPPORTED, touching nothing, when this host cannot attach K2 volumes (or no exports exist to attach with). */
  private async refuseUnlessAttachable(operation: string, how: string, instead: string): Promise<void> {
    const reason = this.exports
      ? await this.context.host.cannotAttach()
      : "copies need Fibre Channel connections, which this server's Kaminario FC driver does not make";
    if (reason === undefined) return;
    throw this.error(
      'UNSUPPORTED',
      `cannot ${operation}: the Kaminario K2 driver copies the data through this host, as Cinder's Kaminario driver does ` +
        `(${how}), and this host cannot attach K2 volumes: ${reason}. Nothing was created. To copy, run the server where ` +
        `it can attach them (an iSCSI initiator that reaches the K2's portals); or ${instead}.`,
    );
  }

  /**
   * The common part of Cinder's two copies: attach the source, create the new volume and attach
   * it, copy `sizeGb` GiB with dd, then detach both whatever happened and run `afterDetach` (the
   * view's delete). Any failure on the way (a detach, the view's delete included, as in Cinder's
   * try block) deletes the new volume from the array.
   */
  private async copyThroughHost(
    operation: string,
    volume: CreateVolumeRequest,
    source: VolumeRef,
    sizeGb: number,
    progress: CopyProgress,
    afterDetach?: () => Promise<void>,
  ): Promise<{ provider_location: string }> {
    const attachments: Array<{ what: string; attachment: LocalAttachment }> = [];
    let created: { provider_location: string } | undefined;
    let failure: unknown;
    try {
      const from = await this.context.host.attach(source);
      attachments.push({ what: `source ${source.provider_location ?? k2VolumeName(source.id)}`, attachment: from });
      created = await this.createVolume(volume);
      const to = await this.context.host.attach({ id: volume.id, size: volume.size, pool_name: volume.pool_name, provider_location: created.provider_location });
      attachments.push({ what: `new volume ${created.provider_location}`, attachment: to });
      await copyDevice(this.runner, {
        source: from.path,
        target: to.path,
        sizeMib: sizeGb * 1024,
        rootHelper: await privilegedPrefix(this.runner, this.context.rootHelper),
        progress,
        operation,
      });
    } catch (error) {
      failure = error;
    }
    for (const { what, attachment } of attachments.reverse()) {
      try {
        await attachment.detach();
      } catch (error) {
        this.context.log.error(`${operation}: detaching ${what} (${attachment.path}) failed: ${(error as Error).message}`);
        failure ??= error;
      }
    }
    if (afterDetach) {
      try {
        await afterDetach();
      } catch (error) {
        this.context.log.error(`${operation}: cleaning up failed: ${(error as Error).message}`);
        failure ??= error;
      }
    }
    if (failure === undefined) return created!;
    if (created) {
      try {
        await this.deleteVolume(volume);
      } catch (error) {
        this.context.log.error(`${operation} failed, and deleting the new volume ${created.provider_location} failed too: ${(error as Error).message}`);
      }
    }
    throw this.copyFailure(operation, failure);
  }

  private copyFailure(operation: string, failure: unknown): unknown {
    if (isStorageError(failure)) return failure;
    if (failure instanceof CopyFailure || failure instanceof CommandTransportError) {
      return this.error('BACKEND_UNAVAILABLE', `${operation}: ${failure.message}; the new volume was deleted`);
    }
    return failure;
  }

  /**
   * kaminario_iscsi.py's initialize_connection: the portals and target IQN (get_target_info), then
   * the K2 host of the connector (created with its IQN when absent), the volume (or view) mapped to
   * it, and the LUN of that mapping. A mapping already there is reused, so a second connect of the
   * same volume from the same host answers the same LUN.
   */
  private async initializeConnection(volume: VolumeRef, connector: Connector): Promise<ConnectionInfo> {
    const { portals, iqns } = await this.targetInfo();
    const lun = await this.mapToHost(volume, connector);
    const data: Record<string, unknown> = { target_iqn: iqns[0], target_portal: portals[0], target_lun: lun, target_discovered: true };
    if (this.options.disable_discovery && connector.multipath) {
      Object.assign(data, { target_iqns: iqns, target_portals: portals, target_luns: iqns.map(() => lun) });
    }
    return { driver_volume_type: 'iscsi', data };
  }

  /** Cinder's get_target_info: every net_ip that is not a WAN port, at 3260; the target IQN from system/state. */
  private async targetInfo(): Promise<{ portals: string[]; iqns: string[] }> {
    const ipOperation = 'look up iSCSI addresses';
    const ips = this.parse(netIpSearchSchema, await this.client.request('GET', this.url('system/net_ips'), { operation: ipOperation }), ipOperation);
    const portals = ips.hits.filter((ip) => !ip.wan_port).map((ip) => `${ip.ip_address}:${ISCSI_TCP_PORT}`);
    if (portals.length === 0) throw this.error('BACKEND_UNAVAILABLE', 'Unable to get ISCSI IP address from K2 (system/net_ips lists no iSCSI port)');
    const state = await this.search('system/state', {}, 'read the target iqn');
    const parsed = state.hits[0] ? targetStateSchema.safeParse(state.hits[0]) : undefined;
    if (!parsed?.success) throw this.error('BACKEND_UNAVAILABLE', 'Unable to get target iqn from K2 (system/state has no iscsi_qualified_target_name)');
    return { portals, iqns: portals.map(() => parsed.data.iscsi_qualified_target_name) };
  }

  /** Cinder's k2_initialize_connection; a host created here is deleted again if the mapping fails. */
  private async mapToHost(volume: VolumeRef, connector: Connector): Promise<number> {
    const target = await this.exposed(volume);
    if (!target.object) throw this.error('NOT_FOUND', `connect ${target.name}: Unable to find it on the K2`);
    const initiator = connector.initiator;
    if (typeof initiator !== 'string' || !initiator) throw this.error('INVALID_ARGUMENT', `connect ${target.name}: the connector has no initiator IQN`);
    const hostName = k2HostName(connector, this.options.unique_fqdn_network);
    let host = await this.find('hosts', { name: hostName }, `look up host ${hostName}`);
    const hostCreated = !host;
    if (!host) host = await this.createHost(hostName, initiator);
    const targetRef = this.ref(target.resource, target.object);
    const hostRef = this.ref('hosts', host);
    try {
      const existing = await this.mappingOf(targetRef, hostRef, `look up the mapping of ${target.name} to ${hostName}`);
      let lun = existing?.lun;
      if (!existing) {
        const operation = `map ${target.name} to host ${hostName}`;
        const response = await this.client.request('POST', this.url('mappings'), { operation, body: { volume: { ref: targetRef }, host: { ref: hostRef } } });
        if (response.status >= 300) throw this.failure(operation, response);
        lun = this.parse(mappingSchema, response, operation).lun;
      }
      // As Cinder's _get_lun_number: a view's LUN is that of its volsnap's mapping.
      return target.resource === 'snapshots' ? await this.viewLun(target, targetRef, hostRef, hostName) : lun!;
    } catch (error) {
      if (hostCreated) await this.deleteQuietly('hosts', hostName, `undo host ${hostName}`);
      throw error;
    }
  }

  /** Cinder's _get_host_object for an absent host: the host, then its IQN; a failure removes the host. */
  private async createHost(hostName: string, initiator: string): Promise<Hit> {
    try {
      const host = await this.create('hosts', { name: hostName, type: HOST_TYPE }, `create host ${hostName}`);
      await this.create('host_iqns', { iqn: initiator, host: { ref: this.ref('hosts', host) } }, `add iqn ${initiator} to host ${hostName}`);
      return host;
    } catch (error) {
      await this.deleteQuietly('hosts', hostName, `undo host ${hostName}`);
      throw error;
    }
  }

  private async viewLun(view: Exposed, viewRef: string, hostRef: string, hostName: string): Promise<number> {
    const volsnaps = await this.search('volsnaps', { 'snapshot.ref': viewRef }, `look up volsnaps of ${view.name}`);
    const volsnap = volsnaps.hits[0];
    if (!volsnap) throw this.error('BACKEND_UNAVAILABLE', `connect ${view.name}: the K2 lists no volsnap of the view`);
    const mapping = await this.mappingOf(this.ref('volsnaps', volsnap), hostRef, `look up the LUN of ${view.name} on ${hostName}`);
    if (!mapping) throw this.error('BACKEND_UNAVAILABLE', `connect ${view.name}: the K2 lists no mapping of its volsnap to host ${hostName}`);
    return mapping.lun;
  }

  /**
   * Cinder's terminate_connection: the mapping of the volume (or view) to the connector's host is
   * deleted, then the host when it has no mapping left (the K2 takes its IQNs with it). Whatever
   * is already gone counts as done.
   */
  private async terminateConnection(volume: VolumeRef, connector: Connector): Promise<void> {
    const target = await this.exposed(volume);
    const hostName = k2HostName(connector, this.options.unique_fqdn_network);
    const host = await this.find('hosts', { name: hostName }, `look up host ${hostName}`);
    if (!host) {
      this.context.log.warn(`disconnect ${target.name}: host ${hostName} is not on the K2; nothing to remove`);
      return;
    }
    const hostRef = this.ref('hosts', host);
    if (target.object) {
      const mapping = await this.mappingOf(this.ref(target.resource, target.object), hostRef, `look up the mapping of ${target.name} to ${hostName}`);
      if (mapping) await this.deleteById('mappings', mapping, `unmap ${target.name} from host ${hostName}`);
    }
    const left = await this.search('mappings', { 'host.ref': hostRef, __limit: 1 }, `look up mappings of host ${hostName}`);
    if (left.total === 0) await this.deleteById('hosts', host, `delete host ${hostName}`);
  }

  /** The volume's K2 object: a view when provider_location names one ("cview-..."), else "cv-<id>". */
  private async exposed(volume: VolumeRef): Promise<Exposed> {
    if (volume.provider_location && isK2ViewName(volume.provider_location)) {
      const name = volume.provider_location;
      return { resource: 'snapshots', name, object: await this.find('snapshots', { short_name: name }, `look up view ${name}`) };
    }
    const name = k2VolumeName(volume.id);
    return { resource: 'volumes', name, object: await this.find('volumes', { name }, `look up ${name}`) };
  }

  private async mappingOf(volumeRef: string, hostRef: string, operation: string) {
    const query = { 'volume.ref': volumeRef, 'host.ref': hostRef };
    return this.parse(mappingSearchSchema, await this.client.request('GET', this.url('mappings'), { operation, query }), operation).hits[0];
  }

  /** Runs connection work one at a time (Cinder's coordination lock on k2_lock_name). */
  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const run = this.connectionQueue.then(work, work);
    this.connectionQueue = run.catch(() => undefined);
    return run;
  }

  private async deleteById(resource: string, object: Hit, operation: string): Promise<void> {
    const response = await this.client.request('DELETE', `${this.url(resource)}/${object.id}`, { operation });
    if (response.status >= 300 && response.status !== 404) throw this.failure(operation, response);
  }

  /** Cinder's _delete_host_by_name while undoing: logged, never thrown over the first error. */
  private async deleteQuietly(resource: string, name: string, operation: string): Promise<void> {
    try {
      await this.deleteFound(resource, { name });
    } catch (error) {
      this.context.log.error(`${operation}: ${resource} ${name} may be left on the array: ${(error as Error).message}`);
    }
  }

  /** Cinder's get_policy. */
  private async retentionPolicy(): Promise<Hit> {
    const policy = await this.find('retention_policies', { name: RETENTION_POLICY }, `look up retention policy ${RETENTION_POLICY}`);
    if (!policy) throw this.error('BACKEND_UNAVAILABLE', `the K2 has no retention policy "${RETENTION_POLICY}", which Cinder's driver gives every snapshot`);
    return policy;
  }

  private async refuseWhileSnapshotted(groupName: string, group: Hit): Promise<void> {
    const operation = `look up snapshots of ${groupName}`;
    const query = { 'volume_group.ref': this.ref('volume_groups', group) };
    const found = this.parse(snapshotSearchSchema, await this.client.request('GET', this.url('snapshots'), { operation, query }), operation);
    if (found.total === 0) return;
    const names = found.hits.map((hit) => hit.short_name.replace(/^cs-/, ''));
    const more = found.total > names.length ? ` and ${found.total - names.length} more` : '';
    throw this.error(
      'IN_USE',
      `delete ${groupName}: it still has ${found.total} snapshot(s) on the array (${names.join(', ')}${more}); delete the snapshots first (or delete the volume with cascade)`,
    );
  }

  private async rollBack(volumeName: string, groupName: string): Promise<void> {
    for (const [resource, name] of [['volumes', volumeName], ['volume_groups', groupName]] as const) {
      try {
        await this.deleteFound(resource, { name });
      } catch (error) {
        this.context.log.error(`rolling back a failed create: ${resource} ${name} may be left on the array: ${(error as Error).message}`);
      }
    }
  }

  private async create(resource: string, body: Record<string, unknown>, operation: string): Promise<Hit> {
    const response = await this.client.request('POST', this.url(resource), { operation, body });
    if (response.status >= 300) throw this.failure(operation, response);
    return this.parse(hitSchema, response, operation);
  }

  /** Deletes the object the one-field query finds; none found (or 404) counts as deleted. */
  private async deleteFound(resource: string, query: Query): Promise<void> {
    const name = String(Object.values(query)[0]);
    const found = await this.find(resource, query, `look up ${name}`);
    if (!found) return;
    const operation = `delete ${name}`;
    const response = await this.client.request('DELETE', `${this.url(resource)}/${found.id}`, { operation });
    if (response.status >= 300 && response.status !== 404) throw this.failure(operation, response);
  }

  private async find(resource: string, query: Query, operation: string): Promise<Hit | undefined> {
    return (await this.search(resource, query, operation)).hits[0];
  }

  private async search(resource: string, query: Query, operation: string) {
    return this.parse(searchSchema, await this.client.request('GET', this.url(resource), { operation, query }), operation);
  }

  /** How the K2 refers to one of its objects in a body or a search: "/volume_groups/7". */
  private ref(resource: string, object: Hit): string {
    return `${this.url(resource)}/${object.id}`;
  }

  private url(resource: string): string {
    const url = this.resources.get(resource);
    if (!url) throw this.error('BACKEND_UNAVAILABLE', `the K2 REST API offers no "${resource}" resource`);
    return url;
  }

  private parse<T extends z.ZodType>(schema: T, response: RestResponse, operation: string): z.output<T> {
    if (response.status >= 300) throw this.failure(operation, response);
    const result = schema.safeParse(response.body);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw this.error('BACKEND_UNAVAILABLE', `${operation}: unexpected answer from the K2 (${issue?.path.join('.') || 'body'}: ${issue?.message})`);
    }
    return result.data;
  }

  /** The array's error_msg, with a code that says what the agent can do about it. */
  private failure(operation: string, response: RestResponse): StorageError {
    const parsed = errorSchema.safeParse(response.body);
    const reason = parsed.success ? parsed.data.error_msg : undefined;
    if (response.status === 409 || (reason && /already exists/i.test(reason))) {
      return this.error('ALREADY_EXISTS', `${operation}: ${reason ?? 'the name is taken'}`);
    }
    return this.client.fail(operation, response, reason);
  }

  private error(code: ErrorCode, message: string): StorageError {
    return new StorageError(code, this.context.secrets.redact(`backend "${this.context.backendName}": ${message}`));
  }
}

/**
 * Busy, as Cinder's later Kaminario driver recognised it: HTTP 400 whose text carries one of the
 * K2's MC_ERR_BUSY family of codes; and any 5xx, which krest itself retried.
 */
const K2_BUSY_CODES = /MC_ERR_(BUSY|BUSY_SPECIFIC|INPROGRESS|START_TIMEOUT)\b/;

function isK2Busy(response: RestResponse): boolean {
  return (response.status === 400 && K2_BUSY_CODES.test(response.text)) || response.status >= 500;
}

/** Cinder's names: the volume group and the volume are named after the Cinder volume id. */
function k2GroupName(volumeId: string): string {
  return `cvg-${volumeId}`;
}

function k2VolumeName(volumeId: string): string {
  return `cv-${volumeId}`;
}

/** Cinder's get_view_name: the view of a snapshot made to fill new volume `volumeId`. */
function k2ViewName(volumeId: string): string {
  return `cview-${volumeId}`;
}

/** Only a view this driver names (k2ViewName): a recorded provider_location is not trusted to name any other K2 object. */
function isK2ViewName(name: string): boolean {
  return /^cview-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(name);
}

/**
 * Cinder's get_initiator_host_name: the connector's host name, or, when unique_fqdn_network is
 * false (or the connector names no host), the initiator IQN reversed; cut to 32 characters, then
 * every character outside 0-9, a-z, A-Z, '-' and '_' replaced with '_'. Characters are counted
 * as Python counts them (code points).
 */
function k2HostName(connector: Connector, uniqueFqdnNetwork: boolean): string {
  const initiator = typeof connector.initiator === 'string' ? connector.initiator : (connector.wwnns?.[0] ?? '');
  let name = Array.from(initiator).reverse().join('');
  if (uniqueFqdnNetwork && typeof connector.host === 'string') name = connector.host;
  return Array.from(name).slice(0, 32).join('').replace(/[^0-9a-zA-Z_-]/gu, '_');
}

/** Cinder's snapshot short_name; the K2 names it "<group name>:<short_name>". */
function k2SnapshotName(snapshotId: string): string {
  return `cs-${snapshotId}`;
}

export default defineDriver({
  summary: "Kaminario K2 over its REST API, as Cinder's Kaminario iSCSI/FC drivers used it through krest (no krest needed).",
  options,
  version: DRIVER_VERSION,
  classDescriptions: {
    KaminarioISCSIDriver: 'Kaminario K2 over its REST API (no krest needed): volumes, snapshots, clones and copies through this host, iSCSI connections.',
    KaminarioFCDriver:
      'Kaminario K2 over its REST API (no krest needed): volumes and snapshots. Fibre Channel connections are not made here, nor the copies through this host that need them (clones, volumes from snapshots); the iSCSI driver (KaminarioISCSIDriver) makes both.',
  },
  create: (opts, context, volumeDriver) => new KaminarioDriver(opts, context, volumeDriver),
});
