import { randomInt } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { z } from 'zod';
import { StorageError, type ErrorCode } from '../kit/base.js';
import { RestClient, httpsOrigin, type RestResponse } from '../kit/rest/client.js';
import { boolOption, capacityOptions, intOption, sanIpOption, sanOptions, textOption, tlsOptions } from '../kit/options.js';
import {
  defineDriver,
  type BackendStats,
  type CloneOperations,
  type ConnectionInfo,
  type Connector,
  type CreateVolumeRequest,
  type DriverContext,
  type DriverOptions,
  type ExportOperations,
  type SnapshotOperations,
  type VolumeDriver,
  type VolumeRef,
} from '../kit/types.js';
import { KIB_PER_GIB, compareVersions, roundGb, versionNumbers } from '../kit/units.js';

/**
 * Dell EMC XtremIO over the XMS JSON REST API, as Cinder's driver
 * (cinder/volume/drivers/dell_emc/xtremio.py) uses it: v1 paths to find the cluster and the XMS
 * version, v2 paths (with cluster-name / cluster-id) from XMS 4 on; volumes named after the
 * volume id; sizes sent as "<n>g"; cluster capacities read in KiB.
 *
 * Snapshots, clones and volumes from snapshots are all XMS snapshots (which are volumes sharing
 * blocks with their ancestor), named after the Cinder object id, as Cinder's create_snapshot,
 * create_cloned_volume and create_volume_from_snapshot make them.
 *
 * Connections are XtremIOISCSIDriver's: an initiator group and an initiator named after the IQN,
 * CHAP credentials generated for the initiator when the cluster asks for CHAP, a lun-map of the
 * volume to the group, and the portal chosen among the cluster's iSCSI portals. Exports are
 * nothing on the array (SanDriver's create_export and remove_export do nothing).
 */
const DRIVER_VERSION = '1.0.9';
const MIN_XMS_VERSION = [3, 0, 0];

const OBJ_NOT_FOUND = 'obj_not_found';
const SYSTEM_BUSY = 'system_is_busy';
const VOL_OBJ_NOT_FOUND = 'vol_obj_not_found';
/** Cinder's XtremIOAlreadyMappedError: any message containing it. */
const ALREADY_MAPPED = 'already_mapped';
/** Cinder's terminate_connection names lun-maps "<vol index>_<ig index>_<tg index>", the target group being the default one. */
const TARGET_GROUP_INDEX = 1;
const CHAP_USER = 'chap_user';
const FC_UNSUPPORTED = 'Fibre Channel connections (XtremIOFCDriver) are not implemented here; the iSCSI driver (XtremIOISCSIDriver) connects volumes';
/**
 * Cinder's _get_password calls volume_utils.generate_password(length=12, symbolgroups=
 * string.ascii_uppercase + string.digits): one string, so every character is a group of its own,
 * each is taken once, shuffled and cut to 12. Its passwords are 12 distinct characters of these.
 */
const PASSWORD_SYMBOLS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const PASSWORD_LENGTH = 12;
/** Cinder's XtremIOSnapshotsLimitExceeded. */
const SNAPSHOT_LIMITS = new Set(['too_many_objs', 'too_many_snapshots_per_vol']);

const options = {
  san_ip: sanIpOption('Address of the XMS, optionally host:port.', { required: true }),
  san_login: sanOptions.san_login,
  san_password: textOption('Password of san_login on the XMS.', { default: '' }),
  xtremio_cluster_name: textOption('XMS cluster name in a multi-cluster XMS; empty uses the first cluster.', { default: '' }),
  xtremio_array_busy_retry_count: intOption('Attempts when the array answers "system_is_busy".', { default: 5, min: 1 }),
  xtremio_array_busy_retry_interval: intOption('Seconds between attempts when the array is busy.', { default: 5, min: 0 }),
  xtremio_volumes_per_glance_cache: intOption('Kept for config compatibility (image cache is not used here).', { default: 100, min: 0 }),
  xtremio_clean_unused_ig: boolOption('Delete an initiator group once the last volume mapped to it is disconnected (Cinder leaves it by default).', {
    default: false,
  }),
  xtremio_ports: textOption('Comma-separated XtremIO iSCSI IPs or FC WWNs that connections may use; empty allows all ports.', { default: '' }),
  ...tlsOptions,
  ...capacityOptions,
};

type XtremioOptions = DriverOptions<typeof options>;

// What the XMS sends back, checked before use: numbers may arrive as strings.
const kib = z.union([z.number(), z.string().regex(/^\d+(\.\d+)?$/)]).transform(Number);
const listSchema = (collection: string) =>
  z.object({ [collection]: z.array(z.object({ name: z.string().optional(), href: z.string() }).loose()) }).loose();
const clusterSchema = z
  .object({
    content: z
      .object({
        name: z.string().optional(),
        'sys-sw-version': z.string(),
        'ud-ssd-space': kib,
        'ud-ssd-space-in-use': kib,
        'vol-size': kib,
        'chap-authentication-mode': z.string().nullish(),
        'chap-discovery-mode': z.string().nullish(),
      })
      .loose(),
  })
  .loose();
const xmsSchema = z.object({ content: z.object({ 'sw-version': z.string() }).loose() }).loose();
const errorSchema = z.object({ message: z.string() }).loose();
/** POST snapshots links to the new snapshots, "…/types/snapshots/<index>" (Cinder's unit-test fakes answer volumes/<index> too). */
const createdSnapshotSchema = z
  .object({
    links: z
      .array(z.object({ href: z.string().regex(/\/(snapshots|volumes)\/\d+\/?$/, 'a link to snapshots/<index>') }).loose())
      .min(1),
  })
  .loose();

const count = z.union([z.number(), z.string().regex(/^\d+$/)]).transform(Number);
/** XMS object ids: [guid, name, index]. */
const objectId = z.tuple([z.unknown(), z.string(), count]).rest(z.unknown());
const contentOf = <T extends z.ZodType>(schema: T) => z.object({ content: schema }).loose();
const initiatorSchema = z
  .object({
    index: count,
    'ig-id': objectId,
    'chap-authentication-initiator-password': z.string().nullish(),
    'chap-discovery-initiator-password': z.string().nullish(),
  })
  .loose();
type Initiator = z.output<typeof initiatorSchema>;
const initiatorListSchema = z.object({ initiators: z.array(initiatorSchema) }).loose();
const initiatorGroupIdsSchema = z.object({ initiators: z.array(z.object({ 'ig-id': objectId }).loose()) }).loose();
const groupSchema = contentOf(z.object({ 'ig-id': objectId }).loose());
const groupVolumesSchema = contentOf(z.object({ 'num-of-vols': count }).loose());
const volumeIndexSchema = contentOf(z.object({ index: count }).loose());
const lunMapSchema = z.object({ lun: count, 'ig-name': z.string().optional(), 'vol-name': z.string().optional() }).loose();
type LunMap = z.output<typeof lunMapSchema>;
const lunMapListSchema = z.object({ 'lun-maps': z.array(lunMapSchema) }).loose();
const portalSchema = z.object({ 'ip-addr': z.string(), 'ip-port': count, 'port-address': z.string() }).loose();
type Portal = z.output<typeof portalSchema>;
const portalListSchema = z.object({ 'iscsi-portals': z.array(portalSchema) }).loose();
/** What a POST answers: a link to the new object, "…/types/<type>/<index>". */
const createdSchema = z
  .object({ links: z.array(z.object({ href: z.string().regex(/\/[a-z-]+\/\d+\/?$/, 'a link to <type>/<index>') }).loose()).min(1) })
  .loose();

class XtremioDriver implements VolumeDriver {
  private readonly client: RestClient;
  /** 'v1' until the XMS proves it speaks v2 (XMS 4.0 and up), as Cinder's client selection. */
  private api: 'v1' | 'v2' = 'v1';
  private clusterName: string;
  /** XMS 4.2 and up (Cinder's XtremIOClient42): an initiators' groups are read with one filtered request. */
  private xms42 = false;
  private readonly protocol: string;
  /** Cinder's allowed_ports (xtremio_ports), lower-cased; empty allows all. */
  private readonly allowedPorts: string[];
  readonly exports: ExportOperations;

  constructor(
    private readonly options: XtremioOptions,
    private readonly context: DriverContext,
    volumeDriver: string,
  ) {
    this.protocol = /FCDriver$/.test(volumeDriver) ? 'FC' : 'iSCSI';
    this.clusterName = options.xtremio_cluster_name;
    this.allowedPorts = options.xtremio_ports
      .split(',')
      .map((port) => port.trim().toLowerCase())
      .filter((port) => port !== '');
    this.exports = {
      ...(this.protocol === 'FC' ? { unavailable: `backend "${context.backendName}": ${FC_UNSUPPORTED}` } : {}),
      // Cinder's validate_connector: iSCSIDriver needs the initiator, FibreChannelDriver the wwpns.
      requiredConnectorKeys: this.protocol === 'FC' ? ['wwpns'] : ['initiator'],
      createExport: async () => {},
      removeExport: async () => {},
      initializeConnection: (volume, connector) => this.initializeConnection(volume, connector),
      terminateConnection: (volume, connector) => this.terminateConnection(volume, connector),
    };
    this.client = new RestClient({
      backendName: context.backendName,
      baseUrl: `${httpsOrigin(options.san_ip)}/api/json`,
      username: options.san_login,
      password: options.san_password,
      verifyTls: options.driver_ssl_cert_verify,
      caPath: options.driver_ssl_cert_path,
      retry: {
        attempts: options.xtremio_array_busy_retry_count,
        intervalMs: options.xtremio_array_busy_retry_interval * 1000,
        backoffRate: 1,
        isBusy: (response) => response.status === 400 && arrayMessage(response) === SYSTEM_BUSY,
      },
      log: context.log,
      secrets: context.secrets,
    });
  }

  /** Cinder's check_for_setup_error: a cluster must exist and run XMS 3.0 or later. */
  async setup(): Promise<void> {
    const clusters = this.parse(listSchema('clusters'), await this.request('GET', 'clusters', { operation: 'list clusters' }), 'list clusters');
    const names = (clusters.clusters as Array<{ name?: string }>).map((cluster) => cluster.name).filter((name): name is string => !!name);
    if (names.length === 0) throw this.error('BACKEND_UNAVAILABLE', 'XtremIO not initialized correctly, no clusters found');
    if (this.clusterName && !names.includes(this.clusterName)) {
      throw this.error('BACKEND_UNAVAILABLE', `xtremio_cluster_name "${this.clusterName}" is not a cluster of this XMS; its clusters are: ${names.join(', ')}`);
    }
    const cluster = await this.cluster(this.clusterName || names[0]!, 'v1');
    const version = versionNumbers(cluster['sys-sw-version']);
    if (compareVersions(version, MIN_XMS_VERSION) < 0) {
      throw this.error('BACKEND_UNAVAILABLE', `XtremIO version ${cluster['sys-sw-version']} is too old; ${MIN_XMS_VERSION.join('.')} or later is required`);
    }
    if (version[0]! >= 4) {
      const xms = this.parse(xmsSchema, await this.request('GET', 'xms/1', { operation: 'read XMS version' }), 'read XMS version');
      this.context.log.info(`XtremIO cluster ${cluster['sys-sw-version']}, XMS ${xms.content['sw-version']}: using the v2 API`);
      this.api = 'v2';
      this.xms42 = compareVersions(versionNumbers(xms.content['sw-version']), [4, 2]) >= 0;
    }
  }

  notes(): string[] {
    return [`XMS REST API ${this.api}${this.clusterName ? `, cluster ${this.clusterName}` : ''}`];
  }

  async getStats(): Promise<BackendStats> {
    const cluster = await this.currentCluster();
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
      ...(this.api === 'v2' ? { consistencygroup_support: true } : {}),
      pools: [{ pool_name: this.context.backendName, ...capacity }],
    };
  }

  async createVolume(volume: VolumeRef): Promise<{ provider_location: string }> {
    const operation = `create volume ${volume.id}`;
    const response = await this.request('POST', 'volumes', {
      operation,
      body: this.withClusterId({ 'vol-name': volume.id, 'vol-size': `${volume.size}g` }),
    });
    if (response.status >= 300) throw this.creationFailure(operation, response, { name: volume.id });
    return { provider_location: volume.id };
  }

  async extendVolume(volume: VolumeRef, newSizeGb: number): Promise<void> {
    const operation = `extend volume ${volume.id} to ${newSizeGb} GiB`;
    const response = await this.request('PUT', 'volumes', {
      operation,
      query: { name: volume.id },
      body: this.withClusterId({ 'vol-size': `${newSizeGb}g` }),
    });
    if (response.status >= 300) {
      if (isNotFound(response)) throw this.error('NOT_FOUND', `${operation}: can't find the volume to extend on the array`);
      throw this.client.fail(operation, response);
    }
  }

  async deleteVolume(volume: VolumeRef): Promise<void> {
    await this.deleteNamed(volume.id, `delete volume ${volume.id}`);
  }

  /**
   * Cinder: snapshots are read-only XMS snapshots of the volume, deleted by name. XMS snapshots do
   * not depend on their ancestor nor it on them, so neither delete is ever refused here (the core
   * refuses deleting a volume that has snapshot records, as Cinder's manager does).
   */
  readonly snapshots: SnapshotOperations = {
    createSnapshot: async (snapshot, volume) => {
      await this.createArraySnapshot(volume.id, snapshot.id, 'readonly', `create snapshot ${snapshot.id} of volume ${volume.id}`);
      return { provider_location: snapshot.id };
    },
    deleteSnapshot: (snapshot) => this.deleteNamed(snapshot.id, `delete snapshot ${snapshot.id}`),
    createVolumeFromSnapshot: (volume, snapshot) =>
      this.createWritableSnapshot(snapshot.id, snapshot.volume_size, volume, `create volume ${volume.id} from snapshot ${snapshot.id}`),
  };

  /** Cinder: a clone is a regular (writable) XMS snapshot of the source volume. */
  readonly clones: CloneOperations = {
    createClonedVolume: (volume, source) => this.createWritableSnapshot(source.id, source.size, volume, `clone volume ${source.id} into ${volume.id}`),
  };

  /** Snapshots share blocks with their ancestor: they take nothing from the pool when made. */
  snapshotSizeGb(): number {
    return 0;
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /**
   * A volume from a snapshot or a clone (nothing is copied, so there is no progress to report):
   * Cinder extends it when it is to be larger than its source, and deletes it if that fails.
   */
  private async createWritableSnapshot(sourceName: string, sourceSizeGb: number, volume: CreateVolumeRequest, operation: string) {
    await this.createArraySnapshot(sourceName, volume.id, 'regular', operation);
    if (volume.size > sourceSizeGb) {
      try {
        await this.extendVolume(volume, volume.size);
      } catch (error) {
        await this.deleteVolume(volume).catch((cleanup: unknown) => this.context.log.warn(`${operation}: could not remove ${volume.id} after the failed extend: ${String(cleanup)}`));
        throw error;
      }
    }
    return { provider_location: volume.id };
  }

  /**
   * Cinder's XtremIOClient*.create_snapshot. XMS 3 (v1) names the snapshot at once. XMS 4 (v2)
   * makes it in a snapshot set named after the new object and names it "<source>.<suffix>", so
   * Cinder renames the object the answer links to and deletes it again if the rename fails.
   */
  private async createArraySnapshot(sourceName: string, newName: string, type: 'readonly' | 'regular', operation: string): Promise<void> {
    const subjects = { name: newName, source: sourceName };
    if (this.api === 'v1') {
      const response = await this.request('POST', 'snapshots', { operation, body: { 'snap-vol-name': newName, 'ancestor-vol-id': sourceName } });
      if (response.status >= 300) throw this.creationFailure(operation, response, subjects);
      return;
    }
    const response = await this.request('POST', 'snapshots', {
      operation,
      body: this.withClusterId({ 'snapshot-set-name': newName, 'snap-suffix': newName, 'volume-list': [sourceName], 'snapshot-type': type }),
    });
    if (response.status >= 300) throw this.creationFailure(operation, response, subjects);
    const created = this.parse(createdSnapshotSchema, response, operation).links[0]!.href.replace(/\/$/, '').split('/').slice(-2).join('/');
    const rename = `${operation}: rename ${created} to ${newName}`;
    try {
      const renamed = await this.request('PUT', created, { operation: rename, body: this.withClusterId({ name: newName }) });
      if (renamed.status >= 300) throw this.creationFailure(rename, renamed, { name: newName, source: created });
    } catch (error) {
      // Unlike Cinder (which reverts only on VolumeBackendAPIException), revert on any failure:
      // a snapshot left under the array's name would be an object nobody knows about.
      const reverted = await this.request('DELETE', created, { operation: `${operation}: revert`, query: this.withClusterName({}) }).catch(() => undefined);
      if (!reverted || (reverted.status >= 300 && !isNotFound(reverted))) {
        this.context.log.warn(`${operation}: could not remove ${created} after the failed rename; deleting ${newName} removes it`);
      }
      throw error;
    }
  }

  /**
   * Cinder's delete_volume and delete_snapshot: DELETE by name, a missing object counting as
   * deleted. On XMS 4, a create interrupted before its rename leaves a snapshot named
   * "<source>.<id>" in the snapshot set named after the id: deleting that set removes it.
   */
  private async deleteNamed(name: string, operation: string): Promise<void> {
    const response = await this.request('DELETE', 'volumes', { operation, query: this.withClusterName({ name }) });
    if (response.status < 300) return;
    if (!isNotFound(response)) throw this.client.fail(operation, response);
    if (this.api !== 'v2') return;
    const leftover = `${operation}: remove snapshot set ${name}`;
    const set = await this.request('DELETE', 'snapshot-sets', { operation: leftover, query: this.withClusterName({ name }) });
    if (set.status >= 300 && !isNotFound(set)) throw this.client.fail(leftover, set);
  }

  /** What a refused create means, as Cinder's handle_errors reads the XMS message. */
  private creationFailure(operation: string, response: RestResponse, subjects: { name: string; source?: string }): StorageError {
    const message = arrayMessage(response) ?? '';
    if (isNotFound(response)) {
      return this.error('NOT_FOUND', `${operation}: the array has no volume named ${subjects.source ?? subjects.name} (${message})`);
    }
    // vol_obj_name_not_unique, or a snapshot set of that name (XMS names are unique per type).
    if (response.status === 400 && message.endsWith('_not_unique')) {
      return this.error('ALREADY_EXISTS', `${operation}: the array already has an object named ${subjects.name} (${message})`);
    }
    if (response.status === 400 && SNAPSHOT_LIMITS.has(message)) {
      return this.error('OUT_OF_CAPACITY', `${operation}: the array's snapshot limit is reached (${message}); delete snapshots of ${subjects.source ?? subjects.name} first`);
    }
    return this.client.fail(operation, response);
  }

  /**
   * XtremIOISCSIDriver.initialize_connection. Finds the initiator by its port address (the IQN)
   * and uses its group; otherwise uses (or creates) the group named after the IQN and creates the
   * initiator, named after the IQN too, in it. With CHAP on, the initiator gets chap_user and
   * generated passwords (when it has none yet). Then the volume is mapped to the group, and the
   * answer names one portal chosen at random (and every portal, for multipath).
   */
  private async initializeConnection(volume: VolumeRef, connector: Connector): Promise<ConnectionInfo> {
    if (this.protocol === 'FC') {
      throw this.error('UNSUPPORTED', `connect volume ${volume.id}: ${FC_UNSUPPORTED}`);
    }
    const iqn = this.initiatorNames(connector)[0]!;
    const cluster = await this.currentCluster();
    const loginChap = (cluster['chap-authentication-mode'] ?? 'disabled') !== 'disabled';
    const discoveryChap = (cluster['chap-discovery-mode'] ?? 'disabled') !== 'disabled';

    let initiator = await this.findInitiator(iqn);
    let loginPassword: string | undefined;
    let discoveryPassword: string | undefined;
    let groupName: string;
    if (!initiator) {
      const group = (await this.findGroup(iqn)) ?? (await this.createGroup(iqn));
      groupName = group['ig-id'][1];
      const body: Record<string, unknown> = { 'initiator-name': iqn, 'ig-id': iqn, 'port-address': iqn };
      const passwords = this.addAuth(body, loginChap, discoveryChap);
      const operation = `create initiator ${iqn}`;
      const response = await this.request('POST', 'initiators', { operation, body: this.withClusterId(body) });
      if (response.status < 300) {
        [loginPassword, discoveryPassword] = passwords;
      } else {
        // Unlike Cinder: an initiator another connect made meanwhile is used as found.
        initiator = isNotUnique(response) ? await this.findInitiator(iqn) : undefined;
        if (!initiator) throw this.client.fail(operation, response, arrayMessage(response));
      }
    }
    if (initiator) {
      loginPassword = this.secret(initiator['chap-authentication-initiator-password']);
      discoveryPassword = this.secret(initiator['chap-discovery-initiator-password']);
      const name = initiator['ig-id'][1];
      const group = await this.findGroup(name);
      if (!group) throw this.error('NOT_FOUND', `connect volume ${volume.id}: initiator ${iqn} is in initiator group ${name}, which the XMS does not have`);
      groupName = group['ig-id'][1];
      // CHAP was turned on after the initiator was made: give it credentials now, as Cinder does.
      // Unlike Cinder, a missing discovery password is added even when the login one is there.
      const addLogin = loginChap && !loginPassword;
      const addDiscovery = discoveryChap && !discoveryPassword;
      if (addLogin || addDiscovery) {
        this.context.log.info(`initiator ${iqn} has no CHAP password while the cluster uses CHAP: adding it`);
        const body: Record<string, unknown> = {};
        const [login, discovery] = this.addAuth(body, addLogin, addDiscovery);
        const operation = `set CHAP credentials of initiator ${iqn}`;
        const response = await this.request('PUT', `initiators/${initiator.index}`, { operation, body: this.withClusterId(body) });
        if (response.status >= 300) throw this.client.fail(operation, response, arrayMessage(response));
        loginPassword = login ?? loginPassword;
        discoveryPassword = discovery ?? discoveryPassword;
      }
    }

    const lunMap = await this.createLunMap(volume, groupName!);
    const data: Record<string, unknown> = { ...(await this.iscsiProperties(lunMap)), volume_id: volume.id };
    if (loginChap) Object.assign(data, { auth_method: 'CHAP', auth_username: CHAP_USER, auth_password: loginPassword });
    if (discoveryChap) {
      Object.assign(data, { discovery_auth_method: 'CHAP', discovery_auth_username: CHAP_USER, discovery_auth_password: discoveryPassword });
    }
    return { driver_volume_type: 'iscsi', data };
  }

  /**
   * XtremIOVolumeDriver.terminate_connection: deletes the lun-map named "<vol index>_<ig index>_1"
   * of every group the connector's initiators are in (one already gone is a success), then, with
   * xtremio_clean_unused_ig, deletes each such group whose num-of-vols is 0 (a failure there is
   * only logged). A volume already gone from the array has no access left: that is a success here
   * (Cinder raises NotFound). Cinder keeps the map while other attachments of the volume on the
   * same host remain; the core only disconnects a connector whose connections are all gone.
   */
  private async terminateConnection(volume: VolumeRef, connector: Connector): Promise<void> {
    const names = this.initiatorNames(connector);
    const operation = `disconnect volume ${volume.id} from ${names.join(', ')}`;
    const found = await this.request('GET', 'volumes', { operation: `${operation}: read the volume`, query: this.withClusterName({ name: volume.id, prop: 'index' }) });
    if (isNotFound(found)) {
      this.context.log.warn(`${operation}: the volume is not on the array; nothing is mapped`);
      return;
    }
    const volumeIndex = this.parse(volumeIndexSchema, found, `${operation}: read the volume`).content.index;
    const groups = await this.initiatorGroupIndexes(names);
    for (const group of groups) {
      const mapName = `${volumeIndex}_${group}_${TARGET_GROUP_INDEX}`;
      const unmap = `${operation}: remove lun-map ${mapName}`;
      const response = await this.request('DELETE', 'lun-maps', { operation: unmap, query: this.withClusterName({ name: mapName }) });
      if (isNotFound(response)) this.context.log.warn(`${unmap}: lun map not found`);
      else if (response.status >= 300) throw this.client.fail(unmap, response, arrayMessage(response));
    }
    if (!this.options.xtremio_clean_unused_ig) return;
    for (const group of groups) {
      const clean = `${operation}: remove initiator group ${group} if unused`;
      try {
        const read = await this.request('GET', `initiator-groups/${group}`, { operation: clean, query: this.withClusterName({ prop: 'num-of-vols' }) });
        if (this.parse(groupVolumesSchema, read, clean).content['num-of-vols'] !== 0) continue;
        const removed = await this.request('DELETE', `initiator-groups/${group}`, { operation: clean, query: this.withClusterName({}) });
        if (removed.status >= 300) throw this.client.fail(clean, removed, arrayMessage(removed));
      } catch (error) {
        // Cinder only warns: the volume is disconnected either way.
        this.context.log.warn(`${clean}: failed to clean the initiator group without mappings: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }

  /** Cinder's _get_initiator_names: the IQN (iSCSI), or the WWPNs written with colons (FC). */
  private initiatorNames(connector: Connector): string[] {
    if (this.protocol === 'FC') {
      const wwpns = connector.wwpns;
      if (!Array.isArray(wwpns) || wwpns.length === 0 || wwpns.some((wwpn) => typeof wwpn !== 'string' || !wwpn)) {
        throw this.error('INVALID_ARGUMENT', 'the connector has no wwpns (a list of WWPNs), which Fibre Channel needs');
      }
      return wwpns.map((wwpn) => (wwpn.includes(':') ? wwpn : (wwpn.match(/.{1,2}/g) ?? []).join(':')));
    }
    if (typeof connector.initiator !== 'string' || !connector.initiator) {
      throw this.error('INVALID_ARGUMENT', 'the connector has no initiator (an iSCSI IQN), which iSCSI needs');
    }
    return [connector.initiator];
  }

  /** Cinder's _add_auth: chap_user and a new password for each CHAP kind asked. */
  private addAuth(body: Record<string, unknown>, login: boolean, discovery: boolean): [string | undefined, string | undefined] {
    let loginPassword: string | undefined;
    let discoveryPassword: string | undefined;
    if (login) {
      loginPassword = this.newPassword();
      Object.assign(body, { 'initiator-authentication-user-name': CHAP_USER, 'initiator-authentication-password': loginPassword });
    }
    if (discovery) {
      discoveryPassword = this.newPassword();
      Object.assign(body, { 'initiator-discovery-user-name': CHAP_USER, 'initiator-discovery-password': discoveryPassword });
    }
    return [loginPassword, discoveryPassword];
  }

  /** Cinder's _get_password (see PASSWORD_SYMBOLS), from a cryptographic source; registered as a secret at once. */
  private newPassword(): string {
    const symbols = [...PASSWORD_SYMBOLS];
    for (let i = symbols.length - 1; i > 0; i--) {
      const j = randomInt(i + 1);
      [symbols[i], symbols[j]] = [symbols[j]!, symbols[i]!];
    }
    return this.secret(symbols.slice(0, PASSWORD_LENGTH).join(''))!;
  }

  /** A CHAP password (made here or read from the array): registered so that logs and answers mask it. */
  private secret(value: string | null | undefined): string | undefined {
    if (!value) return undefined;
    this.context.secrets.register(value);
    return value;
  }

  /** Cinder's get_initiator: v1 reads it by name (the port address), v2 filters on port-address and wants exactly one. */
  private async findInitiator(portAddress: string): Promise<Initiator | undefined> {
    const operation = `find initiator ${portAddress}`;
    if (this.api === 'v1') {
      const response = await this.request('GET', 'initiators', { operation, query: { name: portAddress } });
      if (isNotFound(response)) return undefined;
      return this.parse(contentOf(initiatorSchema), response, operation).content;
    }
    const response = await this.request('GET', 'initiators', {
      operation,
      query: this.withClusterName({ full: '1' }),
      filters: [`port-address:eq:${portAddress}`],
    });
    const initiators = this.parse(initiatorListSchema, response, operation).initiators;
    return initiators.length === 1 ? initiators[0] : undefined;
  }

  /** Cinder's get_initiators_igs: the indexes of the groups the initiators are in (initiators not on the array have none). */
  private async initiatorGroupIndexes(portAddresses: string[]): Promise<number[]> {
    if (this.api === 'v2' && this.xms42) {
      const operation = `find the initiator groups of ${portAddresses.join(', ')}`;
      const response = await this.request('GET', 'initiators', {
        operation,
        query: this.withClusterName({ full: '1', prop: 'ig-id' }),
        filters: [portAddresses.map((address) => `port-address:eq:${address}`).join(',')],
      });
      return [...new Set(this.parse(initiatorGroupIdsSchema, response, operation).initiators.map((initiator) => initiator['ig-id'][2]))];
    }
    const indexes = new Set<number>();
    for (const address of portAddresses) {
      const initiator = await this.findInitiator(address);
      if (initiator) indexes.add(initiator['ig-id'][2]);
    }
    return [...indexes];
  }

  /** Cinder's _get_ig: the group's content, or undefined when the XMS has no group of that name. */
  private async findGroup(name: string) {
    const operation = `find initiator group ${name}`;
    const response = await this.request('GET', 'initiator-groups', { operation, query: this.withClusterName({ name }) });
    if (isNotFound(response)) return undefined;
    return this.parse(groupSchema, response, operation).content;
  }

  /** Cinder's _create_ig: POST {ig-name}, then read it back by name. */
  private async createGroup(name: string) {
    const operation = `create initiator group ${name}`;
    const response = await this.request('POST', 'initiator-groups', { operation, body: this.withClusterId({ 'ig-name': name }) });
    // Unlike Cinder, a group another connect made meanwhile is used as found.
    if (response.status >= 300 && !isNotUnique(response)) throw this.client.fail(operation, response, arrayMessage(response));
    const group = await this.findGroup(name);
    if (!group) throw this.error('BACKEND_UNAVAILABLE', `${operation}: failed to create the initiator group (the XMS does not list it)`);
    return group;
  }

  /**
   * Cinder's create_lun_map: POST {ig-id, vol-id} and read the new lun-map back through the link
   * answered; a volume already mapped to the group (already_mapped) is found instead.
   */
  private async createLunMap(volume: VolumeRef, groupName: string): Promise<LunMap> {
    const operation = `map volume ${volume.id} to initiator group ${groupName}`;
    const response = await this.request('POST', 'lun-maps', { operation, body: this.withClusterId({ 'ig-id': groupName, 'vol-id': volume.id }) });
    if (response.status >= 300) {
      const message = arrayMessage(response) ?? '';
      if (response.status === 400 && message.includes(ALREADY_MAPPED)) {
        this.context.log.info(`${operation}: volume already mapped, reading the lun-map`);
        return this.findLunMap(groupName, volume.id);
      }
      if (response.status === 400 && message === VOL_OBJ_NOT_FOUND) throw this.error('NOT_FOUND', `${operation}: the array has no volume named ${volume.id} (${message})`);
      if (isNotFound(response)) throw this.error('NOT_FOUND', `${operation}: the array has no such volume or initiator group (${message})`);
      throw this.client.fail(operation, response, message || undefined);
    }
    const link = this.parse(createdSchema, response, operation).links[0]!.href.replace(/\/$/, '').split('/').slice(-2).join('/');
    const read = `${operation}: read ${link}`;
    return this.parse(contentOf(lunMapSchema), await this.request('GET', link, { operation: read, query: this.withClusterName({}) }), read).content;
  }

  /** Cinder's find_lunmap: v2 filters on vol-name and ig-name; v1 reads every lun-map (skipping ones gone meanwhile). */
  private async findLunMap(groupName: string, volumeName: string): Promise<LunMap> {
    const operation = `find the lun-map of volume ${volumeName} to initiator group ${groupName}`;
    if (this.api === 'v2') {
      const response = await this.request('GET', 'lun-maps', {
        operation,
        query: this.withClusterName({ full: '1' }),
        filters: [`vol-name:eq:${volumeName}`, `ig-name:eq:${groupName}`],
      });
      const map = this.parse(lunMapListSchema, response, operation)['lun-maps'][0];
      if (!map) throw this.error('NOT_FOUND', `${operation}: the XMS said the volume is mapped but lists no such lun-map`);
      return map;
    }
    const links = this.parse(listSchema('lun-maps'), await this.request('GET', 'lun-maps', { operation }), operation)['lun-maps'] as Array<{ href: string }>;
    for (const { href } of links) {
      const index = href.replace(/\/$/, '').split('/').at(-1);
      const response = await this.request('GET', `lun-maps/${index}`, { operation });
      if (isNotFound(response)) continue;
      const map = this.parse(contentOf(lunMapSchema), response, operation).content;
      if (map['ig-name'] === groupName && map['vol-name'] === volumeName) return map;
    }
    throw this.error('NOT_FOUND', `${operation}: the XMS said the volume is mapped but lists no such lun-map`);
  }

  /**
   * Cinder's _get_iscsi_properties: portals' ip-addr without the prefix length, filtered by
   * xtremio_ports; one chosen at random for target_portal/target_iqn, and all of them (with the
   * LUN repeated) in target_portals/target_iqns/target_luns, which Cinder always returns.
   */
  private async iscsiProperties(lunMap: LunMap): Promise<Record<string, unknown>> {
    const allowed = (await this.iscsiPortals())
      .map((portal) => ({ ...portal, 'ip-addr': portal['ip-addr'].split('/')[0]! }))
      .filter((portal) => this.allowedPorts.length === 0 || this.allowedPorts.includes(portal['ip-addr'].toLowerCase()));
    if (allowed.length === 0) throw this.error('BACKEND_UNAVAILABLE', 'there are no accessible iSCSI targets on the system' + (this.allowedPorts.length ? ` (xtremio_ports allows ${this.allowedPorts.join(', ')})` : ''));
    const address = (portal: Portal) => `${isIPv6(portal['ip-addr']) ? `[${portal['ip-addr']}]` : portal['ip-addr']}:${portal['ip-port']}`;
    const chosen = allowed[randomInt(allowed.length)]!;
    return {
      target_discovered: false,
      target_iqn: chosen['port-address'],
      target_lun: lunMap.lun,
      target_portal: address(chosen),
      target_iqns: allowed.map((portal) => portal['port-address']),
      target_portals: allowed.map(address),
      target_luns: allowed.map(() => lunMap.lun),
    };
  }

  /** Cinder's get_iscsi_portals: v2 lists them in full; v1 lists their names and reads each. */
  private async iscsiPortals(): Promise<Portal[]> {
    const operation = 'list iSCSI portals';
    if (this.api === 'v2') {
      return this.parse(portalListSchema, await this.request('GET', 'iscsi-portals', { operation, query: this.withClusterName({ full: '1' }) }), operation)['iscsi-portals'];
    }
    const names = (this.parse(listSchema('iscsi-portals'), await this.request('GET', 'iscsi-portals', { operation }), operation)['iscsi-portals'] as Array<{ name?: string }>)
      .map((portal) => portal.name)
      .filter((name): name is string => !!name);
    const portals: Portal[] = [];
    for (const name of names) {
      const read = `read iSCSI portal ${name}`;
      const response = await this.request('GET', 'iscsi-portals', { operation: read, query: { name } });
      if (isNotFound(response)) throw this.error('BACKEND_UNAVAILABLE', `iscsi portal, ${name}, not found`);
      portals.push(this.parse(contentOf(portalSchema), response, read).content);
    }
    return portals;
  }

  /** Cinder's get_cluster: v1 reads cluster 1; v2 the configured cluster, or the first one listed. */
  private async currentCluster() {
    if (this.api === 'v2' && !this.clusterName) {
      const clusters = this.parse(listSchema('clusters'), await this.request('GET', 'clusters', { operation: 'list clusters' }), 'list clusters');
      this.clusterName = (clusters.clusters as Array<{ name?: string }>)[0]?.name ?? '';
    }
    return this.api === 'v2' ? this.cluster(this.clusterName, 'v2') : this.clusterByIndex();
  }

  private async cluster(name: string, api: 'v1' | 'v2') {
    const operation = `read cluster ${name}`;
    const query = api === 'v2' ? this.withClusterName({ name }) : { name };
    const response = await this.request('GET', 'clusters', { operation, query }, api);
    if (isNotFound(response)) throw this.error('BACKEND_UNAVAILABLE', `cluster "${name}" was not found on the XMS`);
    return this.parse(clusterSchema, response, operation).content;
  }

  /** The v1 API reads the (only) cluster by index, as Cinder's XtremIOClient3. */
  private async clusterByIndex() {
    return this.parse(clusterSchema, await this.request('GET', 'clusters/1', { operation: 'read cluster 1' }, 'v1'), 'read cluster 1').content;
  }

  private request(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    collection: string,
    request: { operation: string; query?: Record<string, string>; body?: unknown; filters?: string[] },
    api: 'v1' | 'v2' = this.api,
  ): Promise<RestResponse> {
    // XMS filters: one `filter` parameter per term, as Cinder's requests sends a list.
    const filters = request.filters?.length ? `?${new URLSearchParams(request.filters.map((filter): [string, string] => ['filter', filter])).toString()}` : '';
    const path = api === 'v2' ? `/v2/types/${collection}${filters}` : `/types/${collection}${filters}`;
    const { filters: _filters, ...rest } = request;
    return this.client.request(method, path, rest);
  }

  private withClusterName(query: Record<string, string>): Record<string, string> {
    return this.api === 'v2' && this.clusterName ? { ...query, 'cluster-name': this.clusterName } : query;
  }

  private withClusterId(body: Record<string, unknown>): Record<string, unknown> {
    return this.api === 'v2' && this.clusterName ? { ...body, 'cluster-id': this.clusterName } : body;
  }

  private parse<T extends z.ZodType>(schema: T, response: RestResponse, operation: string): z.output<T> {
    if (response.status >= 300) throw this.client.fail(operation, response, arrayMessage(response));
    const result = schema.safeParse(response.body);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw this.error('BACKEND_UNAVAILABLE', `${operation}: unexpected answer from the XMS (${issue?.path.join('.') || 'body'}: ${issue?.message})`);
    }
    return result.data;
  }

  private error(code: ErrorCode, message: string): StorageError {
    return new StorageError(code, this.context.secrets.redact(`backend "${this.context.backendName}": ${message}`));
  }
}

function arrayMessage(response: RestResponse): string | undefined {
  const parsed = errorSchema.safeParse(response.body);
  return parsed.success ? parsed.data.message : undefined;
}

/** XMS names are unique per object type: "<type>_obj_name_not_unique" and such. */
function isNotUnique(response: RestResponse): boolean {
  return response.status === 400 && (arrayMessage(response)?.endsWith('_not_unique') ?? false);
}

/** Cinder treats any 400 whose message ends with obj_not_found as "not found". */
function isNotFound(response: RestResponse): boolean {
  return response.status === 400 && (arrayMessage(response)?.endsWith(OBJ_NOT_FOUND) ?? false);
}

export default defineDriver({
  summary: "Dell EMC XtremIO over the XMS REST API, as Cinder's XtremIO iSCSI/FC drivers use it.",
  options,
  version: DRIVER_VERSION,
  classDescriptions: {
    XtremIOISCSIDriver: 'Dell EMC XtremIO over the XMS REST API: volumes, snapshots, clones and iSCSI connections (initiator groups, CHAP as the cluster requires).',
    XtremIOFCDriver: `Dell EMC XtremIO over the XMS REST API: volumes, snapshots and clones. ${FC_UNSUPPORTED}.`,
  },
  create: (opts, context, volumeDriver) => new XtremioDriver(opts, context, volumeDriver),
});
