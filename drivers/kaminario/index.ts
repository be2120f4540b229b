import { z } from 'zod';
import { StorageError, type ErrorCode } from '../../src/errors.js';
import { RestClient, httpsOrigin, type RestResponse } from '../../src/http/client.js';
import { boolOption, capacityOptions, intOption, sanIpOption, sanOptions, stringOption, textOption, tlsOptions } from '../options.js';
import { defineDriver, type BackendStats, type DriverContext, type DriverOptions, type VolumeDriver, type VolumeRef } from '../types.js';
import { KIB_PER_GIB, compareVersions, roundGb, versionNumbers } from '../units.js';

/**
 * Kaminario K2 over its REST API (/api/v2), spoken directly the way Cinder's Kaminario driver
 * (cinder/volume/drivers/kaminario/kaminario_common.py) spoke it through the vendor's krest
 * client: resources discovered from the REST root, searches answering {hits, total, limit,
 * offset}, references sent as {"ref": "/volume_groups/<id>"}, updates by PATCH. A Cinder volume
 * is a volume group "cvg-<id>" holding a volume "cv-<id>"; sizes and capacities are KiB.
 */
const DRIVER_VERSION = '1.0';
const K2_MIN_VERSION = [2, 2, 0];

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

type Hit = z.infer<typeof hitSchema>;

class KaminarioDriver implements VolumeDriver {
  private readonly client: RestClient;
  private readonly protocol: string;
  /** Resource name -> URL path, from the REST root (krest's discover()). */
  private resources = new Map<string, string>();

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
    for (const needed of ['system/state', 'system/capacity', 'volume_groups', 'volumes']) {
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
        { name: volumeName, size: volume.size * KIB_PER_GIB, volume_group: { ref: `${this.url('volume_groups')}/${group.id}` } },
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
    const found = await this.findByName('volumes', name, `look up ${name}`);
    if (!found) throw this.error('NOT_FOUND', `extend ${name}: the volume is not on the array`);
    const operation = `extend ${name} to ${newSizeGb} GiB`;
    const response = await this.client.request('PATCH', `${this.url('volumes')}/${found.id}`, { operation, body: { size: newSizeGb * KIB_PER_GIB } });
    if (response.status >= 300) throw this.failure(operation, response);
  }

  /** The volume, then its group; what is already gone counts as deleted. */
  async deleteVolume(volume: VolumeRef): Promise<void> {
    await this.deleteByName('volumes', k2VolumeName(volume.id));
    await this.deleteByName('volume_groups', k2GroupName(volume.id));
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  private async rollBack(volumeName: string, groupName: string): Promise<void> {
    for (const [resource, name] of [['volumes', volumeName], ['volume_groups', groupName]] as const) {
      try {
        await this.deleteByName(resource, name);
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

  private async deleteByName(resource: string, name: string): Promise<void> {
    const found = await this.findByName(resource, name, `look up ${name}`);
    if (!found) return;
    const operation = `delete ${name}`;
    const response = await this.client.request('DELETE', `${this.url(resource)}/${found.id}`, { operation });
    if (response.status >= 300 && response.status !== 404) throw this.failure(operation, response);
  }

  private async findByName(resource: string, name: string, operation: string): Promise<Hit | undefined> {
    return (await this.search(resource, { name }, operation)).hits[0];
  }

  private async search(resource: string, query: Record<string, string | number>, operation: string) {
    return this.parse(searchSchema, await this.client.request('GET', this.url(resource), { operation, query }), operation);
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




export default defineDriver({
  summary: "Kaminario K2 over its REST API, as Cinder's Kaminario iSCSI/FC drivers used it through krest (no krest needed).",
  options,
  create: (opts, context, volumeDriver) => new KaminarioDriver(opts, context, volumeDriver),
});
