import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpsEmulator, sendJson } from '../https-emulator.js';

/**
 * An XtremIO Management Server (XMS) JSON REST API emulator, written from the API as Cinder's
 * XtremIO driver and its unit tests use it (no vendor code): /api/json/types (v1) and
 * /api/json/v2/types (v2), basic auth, collections answering {<type>: [{href, name}]}, objects
 * answering {content: ...}, creations answering {links: [{href}]}, HTTP 400 bodies
 * {"message": "obj_not_found" | "vol_obj_name_not_unique" | "system_is_busy", "error_code": 400}.
 * Cluster capacities are KiB; thin provisioning moves "vol-size" as volumes come and go.
 */
export interface XmsEmulatorOptions {
  username?: string;
  password?: string;
  clusterName?: string;
  clusterVersion?: string;
  xmsVersion?: string;
  /** Physical capacity of the cluster, GiB. */
  physicalGb?: number;
  usedGb?: number;
}

interface XmsVolume {
  index: number;
  name: string;
  sizeKib: number;
}

const KIB_PER_GIB = 1024 * 1024;

export class XmsEmulator extends HttpsEmulator {
  readonly clusterName: string;
  readonly volumes = new Map<string, XmsVolume>();
  private nextIndex = 1;
  private busyAnswers = 0;
  private busyMethod?: string;
  private errorAnswers = 0;
  private errorMethod?: string;
  private readonly clusterVersion: string;
  private readonly xmsVersion: string;
  private readonly physicalKib: number;
  private readonly usedKib: number;

  constructor(options: XmsEmulatorOptions = {}) {
    super(options.username ?? 'xtremio_user', options.password ?? 'xms-password');
    this.clusterName = options.clusterName ?? 'xtremio_cluster';
    this.clusterVersion = options.clusterVersion ?? '4.0.25-27';
    this.xmsVersion = options.xmsVersion ?? '4.2.4-10';
    this.physicalKib = (options.physicalGb ?? 8000) * KIB_PER_GIB;
    this.usedKib = (options.usedGb ?? 500) * KIB_PER_GIB;
  }

  /** The next `count` requests (of `method` only, when given) answer HTTP 400 system_is_busy. */
  answerBusy(count: number, method?: string): void {
    this.busyAnswers = count;
    this.busyMethod = method;
  }

  /** The next `count` requests (of `method` only, when given) answer HTTP 500. */
  answerServerError(count: number, method?: string): void {
    this.errorAnswers = count;
    this.errorMethod = method;
  }

  provisionedKib(): number {
    return [...this.volumes.values()].reduce((sum, volume) => sum + volume.sizeKib, 0);
  }

  protected handle(req: IncomingMessage, res: ServerResponse, url: URL, body: Record<string, unknown>): void {
    const send = (status: number, payload: unknown) => sendJson(res, status, payload);
    const fail = (message: string, status = 400) =>
      send(status, { message, error_code: status, ...(this.echoHeaders ? { request_headers: req.headers } : {}) });

    if (!this.authorized(req)) {
      const payload = { message: 'Unauthorized', error_code: 401, ...(this.echoHeaders ? { request_headers: req.headers } : {}) };
      return sendJson(res, 401, payload, { 'www-authenticate': 'Basic realm="XMS"' });
    }
    if (this.busyAnswers > 0 && (!this.busyMethod || this.busyMethod === req.method)) {
      this.busyAnswers--;
      return fail('system_is_busy');
    }
    if (this.errorAnswers > 0 && (!this.errorMethod || this.errorMethod === req.method)) {
      this.errorAnswers--;
      return fail('internal_error', 500);
    }

    const match = /^\/api\/json\/(v2\/)?types\/([a-z-]+)(?:\/(\d+))?\/?$/.exec(url.pathname);
    if (!match) return fail('obj_not_found', 404);
    const [, v2, collection, index] = match;
    const version = v2 ? 'v2' : 'v1';
    const href = (type: string, idx: number) => `https://${this.address}/api/json/${v2 ?? ''}types/${type}/${idx}`;
    const name = url.searchParams.get('name') ?? undefined;
    // v2 scopes requests to a cluster: by cluster-name in the query or cluster-id in the body.
    const clusterRef = url.searchParams.get('cluster-name') ?? (body['cluster-id'] as string | undefined);
    if (version === 'v2' && clusterRef !== undefined && clusterRef !== this.clusterName) return fail('obj_not_found');

    if (collection === 'xms') {
      if (req.method !== 'GET' || index !== '1') return fail('obj_not_found');
      return send(200, { content: { 'sw-version': this.xmsVersion, version: this.xmsVersion.split('-')[0], index: 1 }, links: [{ href: href('xms', 1), rel: 'self' }] });
    }
    if (collection === 'clusters') {
      if (req.method !== 'GET') return fail('invalid_method', 405);
      if (!name && !index) return send(200, { clusters: [{ href: href('clusters', 1), name: this.clusterName }], links: [] });
      if ((name && name !== this.clusterName) || (index && index !== '1')) return fail('obj_not_found');
      return send(200, {
        content: {
          name: this.clusterName,
          index: 1,
          'sys-sw-version': this.clusterVersion,
          'ud-ssd-space': String(this.physicalKib),
          'ud-ssd-space-in-use': String(this.usedKib),
          'vol-size': String(this.provisionedKib()),
          'num-of-vols': this.volumes.size,
          'chap-authentication-mode': 'disabled',
          'chap-discovery-mode': 'disabled',
        },
        links: [{ href: href('clusters', 1), rel: 'self' }],
      });
    }
    if (collection !== 'volumes') return fail('obj_not_found');

    const find = (): XmsVolume | undefined =>
      name !== undefined ? this.volumes.get(name) : [...this.volumes.values()].find((volume) => String(volume.index) === index);
    switch (req.method) {
      case 'GET': {
        if (!name && !index) return send(200, { volumes: [...this.volumes.values()].map((v) => ({ href: href('volumes', v.index), name: v.name })), links: [] });
        const volume = find();
        if (!volume) return fail('obj_not_found');
        return send(200, { content: describe(volume), links: [{ href: href('volumes', volume.index), rel: 'self' }] });
      }
      case 'POST': {
        const volumeName = body['vol-name'];
        const sizeKib = parseSize(body['vol-size']);
        if (typeof volumeName !== 'string' || !volumeName) return fail('vol_name_is_missing');
        if (sizeKib === undefined) return fail('invalid_vol_size');
        if (this.volumes.has(volumeName)) return fail('vol_obj_name_not_unique');
        const volume = { index: this.nextIndex++, name: volumeName, sizeKib };
        this.volumes.set(volumeName, volume);
        return send(201, { links: [{ href: href('volumes', volume.index), rel: 'self' }] });
      }
      case 'PUT': {
        const volume = find();
        if (!volume) return fail('obj_not_found');
        const sizeKib = parseSize(body['vol-size']);
        if (sizeKib === undefined) return fail('invalid_vol_size');
        if (sizeKib < volume.sizeKib) return fail('vol_size_cannot_be_reduced');
        volume.sizeKib = sizeKib;
        return send(200, undefined);
      }
      case 'DELETE': {
        const volume = find();
        if (!volume) return fail('obj_not_found');
        this.volumes.delete(volume.name);
        return send(200, undefined);
      }
      default:
        return fail('invalid_method', 405);
    }
  }
}

function describe(volume: XmsVolume) {
  return { name: volume.name, index: volume.index, 'vol-size': String(volume.sizeKib), 'vol-id': ['guid', volume.name, volume.index], 'lun-mapping-list': [] };
}

/** XMS sizes: a number with a unit suffix (k, m, g, t), as Cinder sends "<n>g". */
function parseSize(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const match = /^(\d+(?:\.\d+)?)([kmgt])$/i.exec(value.trim());
  if (!match) return undefined;
  const factor = { k: 1, m: 1024, g: 1024 ** 2, t: 1024 ** 3 }[match[2]!.toLowerCase() as 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(match[1]) * factor);
}
