import { z } from 'zod';
import { StorageError, type ErrorCode } from '../../src/errors.js';
import { RestClient, httpsOrigin, type RestResponse } from '../../src/http/client.js';
import { boolOption, capacityOptions, intOption, sanIpOption, sanOptions, stringOption, textOption, tlsOptions } from '../options.js';
import {
  defineDriver,
  type BackendStats,
  type CreateVolumeRequest,
  type DriverContext,
  type DriverOptions,
  type SnapshotOperations,
  type SnapshotRef,
  type VolumeDriver,
  type VolumeRef,
} from '../types.js';
import { KIB_PER_GIB, compareVersions, roundGb, versionNumbers } from '../units.js';

/**
 * Kaminario K2 over its REST API (/api/v2), spoken directly the way Cinder's Kaminario driver
 * (cinder/volume/drivers/kaminario/kaminario_common.py) spoke it through the vendor's krest
 * client: resources discovered from the REST root, searches answering {hits, total, limit,
 * offset}, references sent as {"ref": "/volume_groups/<id>"}, updates by PATCH. A Cinder volume
 * is a volume group "cvg-<id>" holding a volume "cv-<id>"; sizes and capacities are KiB. A Cinder
 * snapshot is a K2 snapshot of that group with short_name "cs-<id>"; the K2 shares blocks between
 * a group and its snapshots, so a snapshot takes no space of its own when made.
 */
const DRIVER_VERSION = '1.0';
const K2_MIN_VERSION = [2, 2, 0];
/** The retention policy Cinder's driver gives every snapshot (and view) it makes. */
const RETENTION_POLICY = 'Best_Effort_Retention';

const options = {
  san_ip: sanIpOption('Address of the K2 array, optionally host:port.', { required: true }),
  san_login: sanOptions.san_login,
  san_password: textOption('Password of san_login on the K2.', { default: '' }),
  kaminario_nodedup_substring: stringOption('Older Cinder releases: volume types containing this create nodedup volumes; cinderlib has no volume types, so volumes are dedup.', {
    default: 'K2-nodedup',
  }),
  unique_fqdn_network: boolOption('Kept for config compatibility (host naming when attaching; volumes are not attached here).', { default: true }),
  disable_discovery: boolOption('Kept for config compatibility (iSCSI discovery when attaching; volumes are not attached here).', { default: false }),
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
const snapshotSearchSchema = searchSchema.extend({ hits: z.array(snapshotHitSchema) });

type Hit = z.infer<typeof hitSchema>;
type Query = Record<string, string | number>;

class KaminarioDriver implements VolumeDriver {
  private readonly client: RestClient;
  private readonly protocol: string;
  /** Resource name -> URL path, from the REST root (krest's discover()). */
  private resources = new Map<string, string>();

  /**
   * Cinder's create_snapshot and delete_snapshot. Its create_volume_from_snapshot (and
   * create_cloned_volume, hence no `clones` group) copy through the host and wait for connections.
   */
  readonly snapshots: SnapshotOperations = {
    createSnapshot: (snapshot) => this.createSnapshot(snapshot),
    deleteSnapshot: (snapshot) => this.deleteSnapshot(snapshot),
    createVolumeFromSnapshot: (volume, snapshot) => this.refuseVolumeFromSnapshot(volume, snapshot),
  };

  constructor(
    private readonly options: KaminarioOptions,
    private readonly context: DriverContext,
    volumeDriver: string,
  ) {
    this.protocol = /FCDriver$/.test(volumeDriver) ? 'FC' : 'iSCSI';
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
   * Cinder makes a view of the snapshot, attaches it and a new volume to its own host and copies
   * with dd; this server cannot attach anything yet, so it says so before touching the array.
   */
  private async refuseVolumeFromSnapshot(volume: CreateVolumeRequest, snapshot: SnapshotRef): Promise<never> {
    throw this.error(
      'UNSUPPORTED',
      `cannot create volume ${volume.id} from snapshot ${snapshot.id}: the Kaminario K2 driver copies the data through this host, ` +
        `as Cinder's Kaminario driver does (attach a view of the snapshot and the new volume, copy, detach), and that needs ` +
        `connections, which this server does not offer yet; nothing was created. Keep the snapshot as a restore point on the ` +
        `array instead: the K2 can restore volume group ${k2GroupName(snapshot.volume_id)} from ${k2SnapshotName(snapshot.id)} in place.`,
    );
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

/** Cinder's snapshot short_name; the K2 names it "<group name>:<short_name>". */
function k2SnapshotName(snapshotId: string): string {
  return `cs-${snapshotId}`;
}

export default defineDriver({
  summary: "Kaminario K2 over its REST API, as Cinder's Kaminario iSCSI/FC drivers used it through krest (no krest needed).",
  options,
  create: (opts, context, volumeDriver) => new KaminarioDriver(opts, context, volumeDriver),
});
