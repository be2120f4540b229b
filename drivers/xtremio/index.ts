import { z } from 'zod';
import { StorageError, type ErrorCode } from '../../src/errors.js';
import { RestClient, httpsOrigin, type RestResponse } from '../../src/http/client.js';
import { capacityOptions, intOption, sanIpOption, sanOptions, stringOption, textOption, tlsOptions } from '../options.js';
import {
  defineDriver,
  type BackendStats,
  type CloneOperations,
  type CreateVolumeRequest,
  type DriverContext,
  type DriverOptions,
  type SnapshotOperations,
  type VolumeDriver,
  type VolumeRef,
} from '../types.js';
import { KIB_PER_GIB, compareVersions, roundGb, versionNumbers } from '../units.js';

/**
 * Dell EMC XtremIO over the XMS JSON REST API, as Cinder's driver
 * (cinder/volume/drivers/dell_emc/xtremio.py) uses it: v1 paths to find the cluster and the XMS
 * version, v2 paths (with cluster-name / cluster-id) from XMS 4 on; volumes named after the
 * volume id; sizes sent as "<n>g"; cluster capacities read in KiB.
 *
 * Snapshots, clones and volumes from snapshots are all XMS snapshots (which are volumes sharing
 * blocks with their ancestor), named after the Cinder object id, as Cinder's create_snapshot,
 * create_cloned_volume and create_volume_from_snapshot make them.
 */
const DRIVER_VERSION = '1.0.9';
const MIN_XMS_VERSION = [3, 0, 0];

const OBJ_NOT_FOUND = 'obj_not_found';
const SYSTEM_BUSY = 'system_is_busy';
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

class XtremioDriver implements VolumeDriver {
  private readonly client: RestClient;
  /** 'v1' until the XMS proves it speaks v2 (XMS 4.0 and up), as Cinder's client selection. */
  private api: 'v1' | 'v2' = 'v1';
  private clusterName: string;
  private readonly protocol: string;

  constructor(
    private readonly options: XtremioOptions,
    private readonly context: DriverContext,
    volumeDriver: string,
  ) {
    this.protocol = /FCDriver$/.test(volumeDriver) ? 'FC' : 'iSCSI';
    this.clusterName = options.xtremio_cluster_name;
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
    }
  }

  notes(): string[] {
    return [`XMS REST API ${this.api}${this.clusterName ? `, cluster ${this.clusterName}` : ''}`];
  }

  async getStats(): Promise<BackendStats> {
    if (this.api === 'v2' && !this.clusterName) {
      const clusters = this.parse(listSchema('clusters'), await this.request('GET', 'clusters', { operation: 'list clusters' }), 'list clusters');
      this.clusterName = (clusters.clusters as Array<{ name?: string }>)[0]?.name ?? '';
    }
    const cluster = this.api === 'v2' ? await this.cluster(this.clusterName, 'v2') : await this.clusterByIndex();
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
    request: { operation: string; query?: Record<string, string>; body?: unknown },
    api: 'v1' | 'v2' = this.api,
  ): Promise<RestResponse> {
    const path = api === 'v2' ? `/v2/types/${collection}` : `/types/${collection}`;
    return this.client.request(method, path, request);
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

/** Cinder treats any 400 whose message ends with obj_not_found as "not found". */
function isNotFound(response: RestResponse): boolean {
  return response.status === 400 && (arrayMessage(response)?.endsWith(OBJ_NOT_FOUND) ?? false);
}

export default defineDriver({
  summary: "Dell EMC XtremIO over the XMS REST API, as Cinder's XtremIO iSCSI/FC drivers use it.",
  options,
  create: (opts, context, volumeDriver) => new XtremioDriver(opts, context, volumeDriver),
});
