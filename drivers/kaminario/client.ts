import { z } from 'zod';
import { StorageError, type ErrorCode } from '../kit/base.js';
import { RestClient, httpsOrigin, type RestResponse } from '../kit/rest/client.js';
import type { DriverContext } from '../kit/types.js';
import { compareVersions, versionNumbers } from '../kit/units.js';

/**
 * The K2 REST API (/api/v2) as Cinder's Kaminario driver spoke it through krest: resources
 * discovered from the REST root, searches answering {hits, total, limit, offset}, references sent
 * as {"ref": "/volume_groups/<id>"}, updates by PATCH; and the shapes of its answers, checked
 * before use.
 */
const K2_MIN_VERSION = [2, 2, 0];

const discoverySchema = z.object({ resources: z.record(z.string(), z.object({ url: z.string() }).loose()) }).loose();
export const hitSchema = z.object({ id: z.number().int() }).loose();
export const searchSchema = z.object({ hits: z.array(hitSchema), total: z.number().int() }).loose();
const stateSchema = z.object({ rest_api_version: z.string() }).loose();
const errorSchema = z.object({ error_msg: z.string() }).loose();

export type Hit = z.infer<typeof hitSchema>;
export type Query = Record<string, string | number>;

export interface K2Settings {
  sanIp: string;
  login: string;
  password: string;
  verifyTls: boolean;
  caPath?: string;
  retries: number;
  retryIntervalSeconds: number;
}

export class K2Client {
  readonly rest: RestClient;
  /** Resource name -> URL path, from the REST root (krest's discover()). */
  private resources = new Map<string, string>();

  constructor(
    settings: K2Settings,
    readonly context: DriverContext,
  ) {
    this.rest = new RestClient({
      backendName: context.backendName,
      baseUrl: `${httpsOrigin(settings.sanIp)}/api/v2`,
      username: settings.login,
      password: settings.password,
      verifyTls: settings.verifyTls,
      caPath: settings.caPath,
      retry: {
        attempts: settings.retries,
        intervalMs: settings.retryIntervalSeconds * 1000,
        backoffRate: 2,
        isBusy: isK2Busy,
      },
      log: context.log,
      secrets: context.secrets,
    });
  }

  /** Cinder's check_for_setup_error: discover resources, then require REST API 2.2.0 or later. */
  async connect(): Promise<void> {
    const root = this.parse(discoverySchema, await this.rest.request('GET', '', { operation: 'discover resources' }), 'discover resources');
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

  async create(resource: string, body: Record<string, unknown>, operation: string): Promise<Hit> {
    const response = await this.rest.request('POST', this.url(resource), { operation, body });
    if (response.status >= 300) throw this.failure(operation, response);
    return this.parse(hitSchema, response, operation);
  }

  /** Deletes the object the one-field query finds; none found (or 404) counts as deleted. */
  async deleteFound(resource: string, query: Query): Promise<void> {
    const name = String(Object.values(query)[0]);
    const found = await this.find(resource, query, `look up ${name}`);
    if (!found) return;
    const operation = `delete ${name}`;
    const response = await this.rest.request('DELETE', `${this.url(resource)}/${found.id}`, { operation });
    if (response.status >= 300 && response.status !== 404) throw this.failure(operation, response);
  }

  async deleteById(resource: string, object: Hit, operation: string): Promise<void> {
    const response = await this.rest.request('DELETE', `${this.url(resource)}/${object.id}`, { operation });
    if (response.status >= 300 && response.status !== 404) throw this.failure(operation, response);
  }

  /** Cinder's _delete_host_by_name while undoing: logged, never thrown over the first error. */
  async deleteQuietly(resource: string, name: string, operation: string): Promise<void> {
    try {
      await this.deleteFound(resource, { name });
    } catch (error) {
      this.context.log.error(`${operation}: ${resource} ${name} may be left on the array: ${(error as Error).message}`);
    }
  }

  async find(resource: string, query: Query, operation: string): Promise<Hit | undefined> {
    return (await this.search(resource, query, operation)).hits[0];
  }

  async search(resource: string, query: Query, operation: string) {
    return this.parse(searchSchema, await this.rest.request('GET', this.url(resource), { operation, query }), operation);
  }

  /** A search answered in the given shape. */
  async searchAs<T extends z.ZodType>(schema: T, resource: string, query: Query | undefined, operation: string): Promise<z.output<T>> {
    return this.parse(schema, await this.rest.request('GET', this.url(resource), { operation, query }), operation);
  }

  /** How the K2 refers to one of its objects in a body or a search: "/volume_groups/7". */
  ref(resource: string, object: Hit): string {
    return `${this.url(resource)}/${object.id}`;
  }

  url(resource: string): string {
    const url = this.resources.get(resource);
    if (!url) throw this.error('BACKEND_UNAVAILABLE', `the K2 REST API offers no "${resource}" resource`);
    return url;
  }

  parse<T extends z.ZodType>(schema: T, response: RestResponse, operation: string): z.output<T> {
    if (response.status >= 300) throw this.failure(operation, response);
    const result = schema.safeParse(response.body);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw this.error('BACKEND_UNAVAILABLE', `${operation}: unexpected answer from the K2 (${issue?.path.join('.') || 'body'}: ${issue?.message})`);
    }
    return result.data;
  }

  /** The array's error_msg, with a code that says what the agent can do about it. */
  failure(operation: string, response: RestResponse): StorageError {
    const parsed = errorSchema.safeParse(response.body);
    const reason = parsed.success ? parsed.data.error_msg : undefined;
    if (response.status === 409 || (reason && /already exists/i.test(reason))) {
      return this.error('ALREADY_EXISTS', `${operation}: ${reason ?? 'the name is taken'}`);
    }
    return this.rest.fail(operation, response, reason);
  }

  error(code: ErrorCode, message: string): StorageError {
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
export function k2GroupName(volumeId: string): string {
  return `cvg-${volumeId}`;
}

export function k2VolumeName(volumeId: string): string {
  return `cv-${volumeId}`;
}

/** Cinder's get_view_name: the view of a snapshot made to fill new volume `volumeId`. */
export function k2ViewName(volumeId: string): string {
  return `cview-${volumeId}`;
}

/** Only a view this driver names (k2ViewName): a recorded provider_location is not trusted to name any other K2 object. */
export function isK2ViewName(name: string): boolean {
  return /^cview-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(name);
}

/** Cinder's snapshot short_name; the K2 names it "<group name>:<short_name>". */
export function k2SnapshotName(snapshotId: string): string {
  return `cs-${snapshotId}`;
}
