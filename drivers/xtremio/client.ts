import { z } from 'zod';
import { StorageError, type ErrorCode } from '../kit/base.js';
import { RestClient, httpsOrigin, type RestResponse } from '../kit/rest/client.js';
import type { DriverContext } from '../kit/types.js';
import { compareVersions, versionNumbers } from '../kit/units.js';

/**
 * The XMS JSON REST API as Cinder's XtremIO clients speak it: v1 paths to find the cluster and
 * the XMS version, v2 paths (with cluster-name / cluster-id) from XMS 4 on; and the shapes of
 * what the XMS answers, checked before use.
 */
const MIN_XMS_VERSION = [3, 0, 0];
const OBJ_NOT_FOUND = 'obj_not_found';
const SYSTEM_BUSY = 'system_is_busy';

// Numbers may arrive as strings.
const kib = z.union([z.number(), z.string().regex(/^\d+(\.\d+)?$/)]).transform(Number);
export const count = z.union([z.number(), z.string().regex(/^\d+$/)]).transform(Number);
export const listSchema = (collection: string) => z.object({ [collection]: z.array(z.object({ name: z.string().optional(), href: z.string() }).loose()) }).loose();
export const contentOf = <T extends z.ZodType>(schema: T) => z.object({ content: schema }).loose();
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
export type Cluster = z.output<typeof clusterSchema>['content'];
const xmsSchema = z.object({ content: z.object({ 'sw-version': z.string() }).loose() }).loose();
const errorSchema = z.object({ message: z.string() }).loose();

export interface XmsRequest {
  operation: string;
  query?: Record<string, string>;
  body?: unknown;
  /** XMS filters: one `filter` parameter per term. */
  filters?: string[];
}

export interface XmsSettings {
  sanIp: string;
  login: string;
  password: string;
  verifyTls: boolean;
  caPath?: string;
  busyRetries: number;
  busyIntervalSeconds: number;
  clusterName: string;
}

export class XmsClient {
  readonly rest: RestClient;
  /** 'v1' until the XMS proves it speaks v2 (XMS 4.0 and up), as Cinder's client selection. */
  api: 'v1' | 'v2' = 'v1';
  clusterName: string;
  /** XMS 4.2 and up (Cinder's XtremIOClient42): an initiators' groups are read with one filtered request. */
  xms42 = false;

  constructor(
    settings: XmsSettings,
    readonly context: DriverContext,
  ) {
    this.clusterName = settings.clusterName;
    this.rest = new RestClient({
      backendName: context.backendName,
      baseUrl: `${httpsOrigin(settings.sanIp)}/api/json`,
      username: settings.login,
      password: settings.password,
      verifyTls: settings.verifyTls,
      caPath: settings.caPath,
      retry: {
        attempts: settings.busyRetries,
        intervalMs: settings.busyIntervalSeconds * 1000,
        backoffRate: 1,
        isBusy: (response) => response.status === 400 && arrayMessage(response) === SYSTEM_BUSY,
      },
      log: context.log,
      secrets: context.secrets,
    });
  }

  /** Cinder's check_for_setup_error: a cluster must exist and run XMS 3.0 or later; XMS 4 speaks v2. */
  async connect(): Promise<void> {
    const clusters = this.parse(listSchema('clusters'), await this.request('GET', 'clusters', { operation: 'list clusters' }), 'list clusters');
    const names = (clusters.clusters as Array<{ name?: string }>).map((cluster) => cluster.name).filter((name): name is string => !!name);
    if (names.length === 0) throw this.error('BACKEND_UNAVAILABLE', 'XtremIO not initialized correctly, no clusters found');
    if (this.clusterName && !names.includes(this.clusterName)) {
      throw this.error('BACKEND_UNAVAILABLE', `xtremio_cluster_name "${this.clusterName}" is not a cluster of this XMS; its clusters are: ${names.join(', ')}`);
    }
    const cluster = await this.cluster(this.clusterName || names[0], 'v1');
    const version = versionNumbers(cluster['sys-sw-version']);
    if (compareVersions(version, MIN_XMS_VERSION) < 0) {
      throw this.error('BACKEND_UNAVAILABLE', `XtremIO version ${cluster['sys-sw-version']} is too old; ${MIN_XMS_VERSION.join('.')} or later is required`);
    }
    if (version[0] >= 4) {
      const xms = this.parse(xmsSchema, await this.request('GET', 'xms/1', { operation: 'read XMS version' }), 'read XMS version');
      this.context.log.info(`XtremIO cluster ${cluster['sys-sw-version']}, XMS ${xms.content['sw-version']}: using the v2 API`);
      this.api = 'v2';
      this.xms42 = compareVersions(versionNumbers(xms.content['sw-version']), [4, 2]) >= 0;
    }
  }

  /** Cinder's get_cluster: v1 reads cluster 1; v2 the configured cluster, or the first one listed. */
  async currentCluster(): Promise<Cluster> {
    if (this.api === 'v2' && !this.clusterName) {
      const clusters = this.parse(listSchema('clusters'), await this.request('GET', 'clusters', { operation: 'list clusters' }), 'list clusters');
      this.clusterName = (clusters.clusters as Array<{ name?: string }>)[0]?.name ?? '';
    }
    return this.api === 'v2' ? this.cluster(this.clusterName, 'v2') : this.clusterByIndex();
  }

  private async cluster(name: string, api: 'v1' | 'v2'): Promise<Cluster> {
    const operation = `read cluster ${name}`;
    const query = api === 'v2' ? this.withClusterName({ name }) : { name };
    const response = await this.request('GET', 'clusters', { operation, query }, api);
    if (isNotFound(response)) throw this.error('BACKEND_UNAVAILABLE', `cluster "${name}" was not found on the XMS`);
    return this.parse(clusterSchema, response, operation).content;
  }

  /** The v1 API reads the (only) cluster by index, as Cinder's XtremIOClient3. */
  private async clusterByIndex(): Promise<Cluster> {
    return this.parse(clusterSchema, await this.request('GET', 'clusters/1', { operation: 'read cluster 1' }, 'v1'), 'read cluster 1').content;
  }

  request(method: 'GET' | 'POST' | 'PUT' | 'DELETE', collection: string, request: XmsRequest, api: 'v1' | 'v2' = this.api): Promise<RestResponse> {
    // XMS filters: one `filter` parameter per term, as Cinder's requests sends a list.
    const filters = request.filters?.length ? `?${new URLSearchParams(request.filters.map((filter): [string, string] => ['filter', filter])).toString()}` : '';
    const path = api === 'v2' ? `/v2/types/${collection}${filters}` : `/types/${collection}${filters}`;
    const { filters: _filters, ...rest } = request;
    return this.rest.request(method, path, rest);
  }

  withClusterName(query: Record<string, string>): Record<string, string> {
    return this.api === 'v2' && this.clusterName ? { ...query, 'cluster-name': this.clusterName } : query;
  }

  withClusterId(body: Record<string, unknown>): Record<string, unknown> {
    return this.api === 'v2' && this.clusterName ? { ...body, 'cluster-id': this.clusterName } : body;
  }

  parse<T extends z.ZodType>(schema: T, response: RestResponse, operation: string): z.output<T> {
    if (response.status >= 300) throw this.rest.fail(operation, response, arrayMessage(response));
    const result = schema.safeParse(response.body);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw this.error('BACKEND_UNAVAILABLE', `${operation}: unexpected answer from the XMS (${issue?.path.join('.') || 'body'}: ${issue?.message})`);
    }
    return result.data;
  }

  fail(operation: string, response: RestResponse, reason?: string): StorageError {
    return this.rest.fail(operation, response, reason);
  }

  error(code: ErrorCode, message: string): StorageError {
    return new StorageError(code, this.context.secrets.redact(`backend "${this.context.backendName}": ${message}`));
  }

  /** The object a POST answered a link to, as "<type>/<index>". */
  static linked(href: string): string {
    return href.replace(/\/$/, '').split('/').slice(-2).join('/');
  }
}

export function arrayMessage(response: RestResponse): string | undefined {
  const parsed = errorSchema.safeParse(response.body);
  return parsed.success ? parsed.data.message : undefined;
}

/** XMS names are unique per object type: "<type>_obj_name_not_unique" and such. */
export function isNotUnique(response: RestResponse): boolean {
  return response.status === 400 && (arrayMessage(response)?.endsWith('_not_unique') ?? false);
}

/** Cinder treats any 400 whose message ends with obj_not_found as "not found". */
export function isNotFound(response: RestResponse): boolean {
  return response.status === 400 && (arrayMessage(response)?.endsWith(OBJ_NOT_FOUND) ?? false);
}
