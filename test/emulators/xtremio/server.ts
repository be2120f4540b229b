import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpsEmulator, sendJson } from '../https-emulator.js';

/**
 * An XtremIO Management Server (XMS) JSON REST API emulator, written from the API as Cinder's
 * XtremIO driver and its unit tests use it (no vendor code): /api/json/types (v1) and
 * /api/json/v2/types (v2), basic auth, collections answering {<type>: [{href, name}]}, objects
 * answering {content: ...}, creations answering {links: [{href}]}, HTTP 400 bodies
 * {"message": "obj_not_found" | "vol_obj_name_not_unique" | "system_is_busy", "error_code": 400}.
 * Cluster capacities are KiB; thin provisioning moves "vol-size" as volumes come and go.
 *
 * Snapshots are volumes, as on the array: they share the volumes' names and indexes, carry
 * "ancestor-vol-id" ([guid, name, index] of the volume they were taken from) and, on v2, a
 * "snapshot-type" (readonly or regular) and a snapshot set. They share blocks with their
 * ancestor: a snapshot adds no used space, and deleting either one leaves the other intact.
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
  /** Snapshots a volume may have before the array answers too_many_snapshots_per_vol. */
  maxSnapshotsPerVolume?: number;
}

export interface XmsVolume {
  index: number;
  name: string;
  sizeKib: number;
  /** Set on snapshots: the volume they were taken from (kept after that volume is deleted). */
  ancestor?: XmsVolume;
  /** v2 snapshots only; v1 snapshots are writable volumes. */
  snapshotType?: 'readonly' | 'regular';
  /** Name of the v2 snapshot set the snapshot was created in. */
  snapshotSet?: string;
}

export interface XmsSnapshotSet {
  index: number;
  name: string;
}

type Collection = 'volumes' | 'snapshots';

const KIB_PER_GIB = 1024 * 1024;
const OBJ_NOT_FOUND = 'obj_not_found';
const VOL_NOT_UNIQUE = 'vol_obj_name_not_unique';
const TOO_MANY_SNAPSHOTS = 'too_many_snapshots_per_vol';
/** Cinder never names this one; the emulator's guess at the XMS answer for a reused snapshot-set-name. */
const SNAPSHOT_SET_NOT_UNIQUE = 'snapshot_set_obj_name_not_unique';

export class XmsEmulator extends HttpsEmulator {
  readonly clusterName: string;
  /** Volumes and snapshots, by name. */
  readonly volumes = new Map<string, XmsVolume>();
  readonly snapshotSets = new Map<string, XmsSnapshotSet>();
  private nextIndex = 1;
  private nextSetIndex = 1;
  private busyAnswers = 0;
  private busyMethod?: string;
  private errorRules: Array<{ method?: string; count: number }> = [];
  private readonly clusterVersion: string;
  private readonly xmsVersion: string;
  private readonly physicalKib: number;
  private readonly usedKib: number;
  private readonly maxSnapshotsPerVolume: number;

  constructor(options: XmsEmulatorOptions = {}) {
    super(options.username ?? 'xtremio_user', options.password ?? 'xms-password');
    this.clusterName = options.clusterName ?? 'xtremio_cluster';
    this.clusterVersion = options.clusterVersion ?? '4.0.25-27';
    this.xmsVersion = options.xmsVersion ?? '4.2.4-10';
    this.physicalKib = (options.physicalGb ?? 8000) * KIB_PER_GIB;
    this.usedKib = (options.usedGb ?? 500) * KIB_PER_GIB;
    this.maxSnapshotsPerVolume = options.maxSnapshotsPerVolume ?? Infinity;
  }

  /** The next `count` requests (of `method` only, when given) answer HTTP 400 system_is_busy. */
  answerBusy(count: number, method?: string): void {
    this.busyAnswers = count;
    this.busyMethod = method;
  }

  /**
   * The next `count` requests (of `method` only, when given) answer HTTP 500. Rules for different
   * methods add up (a failed rename and a failed revert); a count of 0 clears them all.
   */
  answerServerError(count: number, method?: string): void {
    if (count === 0) this.errorRules = [];
    else this.errorRules.push({ method, count });
  }

  provisionedKib(): number {
    return [...this.volumes.values()].reduce((sum, volume) => sum + volume.sizeKib, 0);
  }

  private snapshotCount(volume: XmsVolume): number {
    return [...this.volumes.values()].filter((other) => other.ancestor === volume).length;
  }

  /** The volumes of a snapshot set, as the array lists them. */
  snapshotSetVolumes(setName: string): XmsVolume[] {
    return [...this.volumes.values()].filter((volume) => volume.snapshotSet === setName);
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
    const errorRule = this.errorRules.find((rule) => rule.count > 0 && (!rule.method || rule.method === req.method));
    if (errorRule) {
      errorRule.count--;
      return fail('internal_error', 500);
    }

    const match = /^\/api\/json\/(v2\/)?types\/([a-z-]+)(?:\/(\d+))?\/?$/.exec(url.pathname);
    if (!match) return fail(OBJ_NOT_FOUND, 404);
    const [, v2, collection, index] = match;
    const version = v2 ? 'v2' : 'v1';
    const href = (type: string, idx: number) => `https://${this.address}/api/json/${v2 ?? ''}types/${type}/${idx}`;
    const name = url.searchParams.get('name') ?? undefined;
    // v2 scopes requests to a cluster: by cluster-name in the query or cluster-id in the body.
    const clusterRef = url.searchParams.get('cluster-name') ?? (body['cluster-id'] as string | undefined);
    if (version === 'v2' && clusterRef !== undefined && clusterRef !== this.clusterName) return fail(OBJ_NOT_FOUND);

    if (collection === 'xms') {
      if (req.method !== 'GET' || index !== '1') return fail(OBJ_NOT_FOUND);
      return send(200, { content: { 'sw-version': this.xmsVersion, version: this.xmsVersion.split('-')[0], index: 1 }, links: [{ href: href('xms', 1), rel: 'self' }] });
    }
    if (collection === 'clusters') {
      if (req.method !== 'GET') return fail('invalid_method', 405);
      if (!name && !index) return send(200, { clusters: [{ href: href('clusters', 1), name: this.clusterName }], links: [] });
      if ((name && name !== this.clusterName) || (index && index !== '1')) return fail(OBJ_NOT_FOUND);
      return send(200, {
        content: {
          name: this.clusterName,
          index: 1,
          'sys-sw-version': this.clusterVersion,
          'ud-ssd-space': String(this.physicalKib),
          // Thin: nothing is written on an emulator, and snapshots share their ancestor's blocks.
          'ud-ssd-space-in-use': String(this.usedKib),
          'vol-size': String(this.provisionedKib()),
          'num-of-vols': this.volumes.size,
          'chap-authentication-mode': 'disabled',
          'chap-discovery-mode': 'disabled',
        },
        links: [{ href: href('clusters', 1), rel: 'self' }],
      });
    }
    if (collection === 'snapshot-sets' && version === 'v2') return this.handleSnapshotSets(req.method, name, index, send, fail, href);
    if (collection !== 'volumes' && collection !== 'snapshots') return fail(OBJ_NOT_FOUND);

    // `snapshots` is the same objects as `volumes`, narrowed to those with an ancestor.
    const inCollection = (volume: XmsVolume) => collection === 'volumes' || volume.ancestor !== undefined;
    const find = (): XmsVolume | undefined => {
      const volume = name !== undefined ? this.volumes.get(name) : [...this.volumes.values()].find((v) => String(v.index) === index);
      return volume && inCollection(volume) ? volume : undefined;
    };
    switch (req.method) {
      case 'GET': {
        if (!name && !index) {
          const listed = [...this.volumes.values()].filter(inCollection).map((v) => ({ href: href(collection, v.index), name: v.name }));
          return send(200, { [collection]: listed, links: [] });
        }
        const volume = find();
        if (!volume) return fail(OBJ_NOT_FOUND);
        return send(200, { content: this.describe(volume), links: [{ href: href(collection, volume.index), rel: 'self' }] });
      }
      case 'POST': {
        if (collection === 'snapshots') return this.createSnapshots(version, body, send, fail, href);
        const volumeName = body['vol-name'];
        const sizeKib = parseSize(body['vol-size']);
        if (typeof volumeName !== 'string' || !volumeName) return fail('vol_name_is_missing');
        if (sizeKib === undefined) return fail('invalid_vol_size');
        if (this.volumes.has(volumeName)) return fail(VOL_NOT_UNIQUE);
        const volume = this.add({ name: volumeName, sizeKib });
        return send(201, { links: [{ href: href('volumes', volume.index), rel: 'self' }] });
      }
      case 'PUT': {
        const volume = find();
        if (!volume) return fail(OBJ_NOT_FOUND);
        // Cinder renames with "name" (snapshots, migration) or "vol-name" (manage, unmanage).
        const newName = body['name'] ?? body['vol-name'];
        const sizeKib = body['vol-size'] === undefined ? undefined : parseSize(body['vol-size']);
        if (newName === undefined && body['vol-size'] === undefined) return fail('invalid_input');
        if (newName !== undefined && (typeof newName !== 'string' || !newName)) return fail('vol_name_is_missing');
        if (body['vol-size'] !== undefined && sizeKib === undefined) return fail('invalid_vol_size');
        if (sizeKib !== undefined && sizeKib < volume.sizeKib) return fail('vol_size_cannot_be_reduced');
        if (typeof newName === 'string' && newName !== volume.name && this.volumes.has(newName)) return fail(VOL_NOT_UNIQUE);
        if (typeof newName === 'string') {
          this.volumes.delete(volume.name);
          volume.name = newName;
          this.volumes.set(newName, volume);
        }
        if (sizeKib !== undefined) volume.sizeKib = sizeKib;
        return send(200, undefined);
      }
      case 'DELETE': {
        const volume = find();
        if (!volume) return fail(OBJ_NOT_FOUND);
        this.remove(volume);
        return send(200, undefined);
      }
      default:
        return fail('invalid_method', 405);
    }
  }

  /**
   * POST snapshots. v2 (Cinder's XtremIOClient4): {volume-list, snapshot-set-name, snap-suffix,
   * snapshot-type}; one snapshot per listed volume, named "<volume>.<suffix>", in a new snapshot
   * set. v1 (XtremIOClient3): {snap-vol-name, ancestor-vol-id}; a writable volume named at once.
   */
  private createSnapshots(
    version: 'v1' | 'v2',
    body: Record<string, unknown>,
    send: (status: number, payload: unknown) => void,
    fail: (message: string) => void,
    href: (type: string, idx: number) => string,
  ): void {
    if (version === 'v1') {
      const snapshotName = body['snap-vol-name'];
      const ancestor = this.lookup(body['ancestor-vol-id']);
      if (typeof snapshotName !== 'string' || !snapshotName) return fail('vol_name_is_missing');
      if (!ancestor) return fail(OBJ_NOT_FOUND);
      if (this.snapshotCount(ancestor) >= this.maxSnapshotsPerVolume) return fail(TOO_MANY_SNAPSHOTS);
      if (this.volumes.has(snapshotName)) return fail(VOL_NOT_UNIQUE);
      const snapshot = this.add({ name: snapshotName, sizeKib: ancestor.sizeKib, ancestor });
      return send(201, { links: [{ href: href('snapshots', snapshot.index), rel: 'self' }] });
    }
    const volumeList = body['volume-list'];
    const setName = body['snapshot-set-name'] ?? `SnapshotSet.${this.nextSetIndex}`;
    const suffix = body['snap-suffix'] ?? `snapshot.${this.nextSetIndex}`;
    const type = body['snapshot-type'] ?? 'regular';
    if (!Array.isArray(volumeList) || volumeList.length === 0) return fail('invalid_input');
    if (typeof setName !== 'string' || typeof suffix !== 'string' || (type !== 'readonly' && type !== 'regular')) return fail('invalid_input');
    const ancestors = volumeList.map((ref) => this.lookup(ref));
    if (ancestors.some((ancestor) => !ancestor)) return fail(OBJ_NOT_FOUND);
    if (ancestors.some((ancestor) => this.snapshotCount(ancestor!) >= this.maxSnapshotsPerVolume)) return fail(TOO_MANY_SNAPSHOTS);
    if (this.snapshotSets.has(setName)) return fail(SNAPSHOT_SET_NOT_UNIQUE);
    const names = ancestors.map((ancestor) => `${ancestor!.name}.${suffix}`);
    if (names.some((snapshotName) => this.volumes.has(snapshotName))) return fail(VOL_NOT_UNIQUE);
    this.snapshotSets.set(setName, { index: this.nextSetIndex++, name: setName });
    const snapshots = ancestors.map((ancestor, i) =>
      this.add({ name: names[i]!, sizeKib: ancestor!.sizeKib, ancestor: ancestor!, snapshotType: type, snapshotSet: setName }),
    );
    return send(201, { links: snapshots.map((snapshot) => ({ href: href('snapshots', snapshot.index), rel: 'self' })) });
  }

  /** snapshot-sets (v2): listed, read, and deleted with their snapshots. */
  private handleSnapshotSets(
    method: string | undefined,
    name: string | undefined,
    index: string | undefined,
    send: (status: number, payload: unknown) => void,
    fail: (message: string, status?: number) => void,
    href: (type: string, idx: number) => string,
  ): void {
    if (method !== 'GET' && method !== 'DELETE') return fail('invalid_method', 405);
    if (method === 'GET' && !name && !index) {
      return send(200, { 'snapshot-sets': [...this.snapshotSets.values()].map((set) => ({ href: href('snapshot-sets', set.index), name: set.name })), links: [] });
    }
    const set = name !== undefined ? this.snapshotSets.get(name) : [...this.snapshotSets.values()].find((s) => String(s.index) === index);
    if (!set) return fail(OBJ_NOT_FOUND);
    const members = this.snapshotSetVolumes(set.name);
    if (method === 'DELETE') {
      for (const volume of members) this.remove(volume);
      this.snapshotSets.delete(set.name);
      return send(200, undefined);
    }
    return send(200, {
      content: { name: set.name, index: set.index, 'num-of-vols': members.length, 'vol-list': members.map((v) => objectId(v)) },
      links: [{ href: href('snapshot-sets', set.index), rel: 'self' }],
    });
  }

  private add(fields: Omit<XmsVolume, 'index'>): XmsVolume {
    const volume = { index: this.nextIndex++, ...fields };
    this.volumes.set(volume.name, volume);
    return volume;
  }

  /** A snapshot set goes with its last snapshot. */
  private remove(volume: XmsVolume): void {
    this.volumes.delete(volume.name);
    if (volume.snapshotSet && this.snapshotSetVolumes(volume.snapshotSet).length === 0) this.snapshotSets.delete(volume.snapshotSet);
  }

  /** A volume reference in a body: its name, its index, or an object id [guid, name, index]. */
  private lookup(ref: unknown): XmsVolume | undefined {
    if (typeof ref === 'string') return this.volumes.get(ref);
    if (typeof ref === 'number') return [...this.volumes.values()].find((volume) => volume.index === ref);
    if (Array.isArray(ref)) return this.lookup(ref[1]);
    return undefined;
  }

  private describe(volume: XmsVolume) {
    return {
      name: volume.name,
      index: volume.index,
      'vol-size': String(volume.sizeKib),
      'vol-id': objectId(volume),
      'ancestor-vol-id': volume.ancestor ? objectId(volume.ancestor) : null,
      'num-of-dest-snaps': this.snapshotCount(volume),
      ...(volume.snapshotType ? { 'snapshot-type': volume.snapshotType } : {}),
      'lun-mapping-list': [],
    };
  }
}

/** XMS object ids: [guid, name, index]. */
function objectId(volume: XmsVolume): [string, string, number] {
  return ['guid', volume.name, volume.index];
}

/** XMS sizes: a number with a unit suffix (k, m, g, t), as Cinder sends "<n>g". */
function parseSize(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const match = /^(\d+(?:\.\d+)?)([kmgt])$/i.exec(value.trim());
  if (!match) return undefined;
  const factor = { k: 1, m: 1024, g: 1024 ** 2, t: 1024 ** 3 }[match[2]!.toLowerCase() as 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(match[1]) * factor);
}
