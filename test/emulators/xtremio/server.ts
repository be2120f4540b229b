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
 *
 * Exports, as Cinder's XtremIOISCSIDriver and its unit-test fake use them: `initiator-groups`
 * ({ig-name}), `initiators` ({initiator-name, ig-id, port-address} and the CHAP fields
 * initiator-authentication-user-name/-password, initiator-discovery-user-name/-password, read back
 * as chap-authentication-initiator-password and chap-discovery-initiator-password), `lun-maps`
 * ({vol-id, ig-id, tg-id?, lun?}; named "<vol index>_<ig index>_<tg index>", the LUN being the
 * group's lowest free one from 1 unless given), `target-groups` (one, "Default") and
 * `iscsi-portals` ({ip-addr "<ip>/<prefix>", ip-port, port-address: the target IQN}). Collections
 * take Cinder's query forms: `full=1` (whole objects instead of links), `filter=<field>:<op>:<value>`
 * (several filter parameters all apply; comma-separated terms in one parameter are alternatives, as
 * Cinder's XtremIOClient42 sends them) and `prop=<field>` (only those fields). The cluster's
 * chap-authentication-mode and chap-discovery-mode are set by tests (`chapAuthenticationMode`...).
 * Error messages Cinder names are used as it names them (obj_not_found, vol_obj_not_found,
 * already_mapped in "vol_already_mapped"); the others (ig_obj_name_not_unique,
 * initiator_port_address_not_unique, ig_has_lun_mappings) are the emulator's guesses.
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
  /** iSCSI portals: ip-addr with its prefix length ("127.0.0.11/8"), the target IQN, the port (3260). */
  iscsiPortals?: Array<{ ipAddr: string; portAddress: string; ipPort?: number }>;
}

export interface XmsInitiatorGroup {
  index: number;
  name: string;
}

export interface XmsInitiator {
  index: number;
  name: string;
  portAddress: string;
  group: XmsInitiatorGroup;
  chapAuthenticationUser?: string | null;
  chapAuthenticationPassword?: string | null;
  chapDiscoveryUser?: string | null;
  chapDiscoveryPassword?: string | null;
}

export interface XmsLunMap {
  index: number;
  volume: XmsVolume;
  group: XmsInitiatorGroup;
  lun: number;
}

export interface XmsIscsiPortal {
  index: number;
  ipAddr: string;
  ipPort: number;
  portAddress: string;
}

/** The one target group, as XMS has by default (Cinder's lun-map names end in its index, 1). */
const TARGET_GROUP = { index: 1, name: 'Default' };

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
  /** What the emulator pretends the blocks hold (tests set it): snapshots and refreshes copy it. */
  content?: string;
}

export interface XmsSnapshotSet {
  index: number;
  name: string;
}

type Send = (status: number, payload: unknown) => void;
type Fail = (message: string, status?: number) => void;
type Href = (type: string, idx: number) => string;
/** An object as the array shows it, for full listings, filters and props. */
type XmsObject = Record<string, unknown> & { index: number; name: string };

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
  readonly initiatorGroups = new Map<string, XmsInitiatorGroup>();
  /** Initiators by name (Cinder names them after their port address). */
  readonly initiators = new Map<string, XmsInitiator>();
  readonly lunMaps = new Map<number, XmsLunMap>();
  readonly iscsiPortals: XmsIscsiPortal[];
  /** The cluster's CHAP settings: 'disabled', or a mode such as 'initiator'. */
  chapAuthenticationMode = 'disabled';
  chapDiscoveryMode = 'disabled';
  private nextIndex = 1;
  private nextSanIndex = { 'initiator-groups': 1, initiators: 1, 'lun-maps': 1 };
  private errorAnswers: Array<{ method?: string; collection?: string; message: string; status: number; count: number }> = [];
  private nextSetIndex = 1;
  private busyAnswers = 0;
  private busyMethod?: string;
  private errorRules: Array<{ method?: string; count: number }> = [];
  private readonly clusterVersion: string;
  private readonly xmsVersion: string;
  private readonly physicalKib: number;
  private readonly usedKib: number;
  private readonly maxSnapshotsPerVolume: number;

  /** A Cinder XtremIO iSCSI backend pointed at this emulator (and its test CA), with `extra` options. */
  cinderBackend(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      volume_backend_name: name,
      volume_driver: 'cinder.volume.drivers.dell_emc.xtremio.XtremIOISCSIDriver',
      san_ip: this.address,
      xtremio_cluster_name: this.clusterName,
      san_login: this.username,
      san_password: this.password,
      driver_ssl_cert_path: this.certs.caPath,
      xtremio_array_busy_retry_interval: 0,
      ...extra,
    };
  }

  constructor(options: XmsEmulatorOptions = {}) {
    super(options.username ?? 'xtremio_user', options.password ?? 'xms-password');
    this.clusterName = options.clusterName ?? 'xtremio_cluster';
    this.clusterVersion = options.clusterVersion ?? '4.0.25-27';
    this.xmsVersion = options.xmsVersion ?? '4.2.4-10';
    this.physicalKib = (options.physicalGb ?? 8000) * KIB_PER_GIB;
    this.usedKib = (options.usedGb ?? 500) * KIB_PER_GIB;
    this.maxSnapshotsPerVolume = options.maxSnapshotsPerVolume ?? Infinity;
    const portals = options.iscsiPortals ?? [
      { ipAddr: '127.0.0.11/8', portAddress: 'iqn.2008-05.com.xtremio:001e67939c34' },
      { ipAddr: '127.0.0.12/8', portAddress: 'iqn.2008-05.com.xtremio:002e67939c34' },
    ];
    this.iscsiPortals = portals.map((portal, i) => ({ index: i + 1, ipPort: 3260, ...portal }));
  }

  /**
   * The next `count` requests (of `method` and on `collection` only, when given) answer `status`
   * (400) with {"message": message, "error_code": status}, as the XMS refuses.
   */
  answerError(message: string, rule: { method?: string; collection?: string; status?: number; count?: number } = {}): void {
    this.errorAnswers.push({ message, method: rule.method, collection: rule.collection, status: rule.status ?? 400, count: rule.count ?? 1 });
  }

  /** The lun-maps of a group. */
  groupMaps(group: XmsInitiatorGroup): XmsLunMap[] {
    return [...this.lunMaps.values()].filter((map) => map.group === group);
  }

  /** The initiators of a group. */
  groupInitiators(group: XmsInitiatorGroup): XmsInitiator[] {
    return [...this.initiators.values()].filter((initiator) => initiator.group === group);
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
    const fail = (message: string, status = 400) => send(status, { message, error_code: status, ...(this.echoHeaders ? { request_headers: req.headers } : {}) });

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
    const errorAnswer = this.errorAnswers.find((rule) => rule.count > 0 && (!rule.method || rule.method === req.method) && (!rule.collection || rule.collection === collection));
    if (errorAnswer) {
      errorAnswer.count--;
      return fail(errorAnswer.message, errorAnswer.status);
    }
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
          'chap-authentication-mode': this.chapAuthenticationMode,
          'chap-discovery-mode': this.chapDiscoveryMode,
        },
        links: [{ href: href('clusters', 1), rel: 'self' }],
      });
    }
    if (collection === 'snapshot-sets' && version === 'v2') return this.handleSnapshotSets(req.method, name, index, send, fail, href);
    if (SAN_COLLECTIONS.has(collection)) return this.handleSan(collection as SanCollection, req.method, url, name, index, body, send, fail, href);
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
        const content = pick(this.describe(volume), url.searchParams.getAll('prop'));
        return send(200, { content, links: [{ href: href(collection, volume.index), rel: 'self' }] });
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
      const snapshot = this.add({ name: snapshotName, sizeKib: ancestor.sizeKib, ancestor, content: ancestor.content });
      return send(201, { links: [{ href: href('snapshots', snapshot.index), rel: 'self' }] });
    }
    // A refresh (XMS 4): the target volume takes the source's blocks and size, keeping its name and mappings.
    if (body['to-volume-id'] !== undefined) {
      const from = this.lookup(body['from-volume-id']);
      const to = this.lookup(body['to-volume-id']);
      if (!from || !to) return fail(OBJ_NOT_FOUND);
      to.sizeKib = from.sizeKib;
      to.content = from.content;
      return send(201, { links: [{ href: href('volumes', to.index), rel: 'self' }] });
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
      this.add({ name: names[i], sizeKib: ancestor!.sizeKib, ancestor: ancestor!, snapshotType: type, snapshotSet: setName, content: ancestor!.content }),
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

  /** A volume made outside Cinder, for adoption tests; `mapped` maps it to an initiator group of its own. */
  addVolume(name: string, sizeGb: number, mapped = false): void {
    const volume = this.add({ name, sizeKib: sizeGb * KIB_PER_GIB });
    if (!mapped) return;
    const group = { index: this.nextSanIndex['initiator-groups']++, name: `${name}-ig` };
    this.initiatorGroups.set(group.name, group);
    const map = { index: this.nextSanIndex['lun-maps']++, volume, group, lun: 1 };
    this.lunMaps.set(map.index, map);
  }

  private add(fields: Omit<XmsVolume, 'index'>): XmsVolume {
    const volume = { index: this.nextIndex++, ...fields };
    this.volumes.set(volume.name, volume);
    return volume;
  }

  /** A snapshot set goes with its last snapshot. */
  private remove(volume: XmsVolume): void {
    this.volumes.delete(volume.name);
    // The emulator's choice: a deleted volume's mappings go with it.
    for (const [index, map] of this.lunMaps) if (map.volume === volume) this.lunMaps.delete(index);
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
      // [ig OID, tg OID, lun] per mapping, as Cinder's force detach reads it.
      'lun-mapping-list': [...this.lunMaps.values()].filter((map) => map.volume === volume).map((map) => [groupId(map.group), ['guid', TARGET_GROUP.name, TARGET_GROUP.index], map.lun]),
      'num-of-lun-mappings': [...this.lunMaps.values()].filter((map) => map.volume === volume).length,
    };
  }

  /**
   * initiator-groups, initiators, lun-maps, target-groups and iscsi-portals: listed (links, or
   * whole objects with full=1, narrowed by filter and prop), read by name or index, created,
   * modified (initiators) and deleted.
   */
  private handleSan(
    collection: SanCollection,
    method: string | undefined,
    url: URL,
    name: string | undefined,
    index: string | undefined,
    body: Record<string, unknown>,
    send: Send,
    fail: Fail,
    href: Href,
  ): void {
    const objects = this.sanObjects(collection);
    const props = url.searchParams.getAll('prop');
    if (method === 'GET' && !name && !index) {
      const filters = url.searchParams.getAll('filter').map(parseFilter);
      if (filters.some((filter) => filter === undefined)) return fail('invalid_filter');
      const matching = objects.filter((object) => filters.every((alternatives) => alternatives!.some((term) => term(object))));
      const listed =
        url.searchParams.get('full') === '1' ? matching.map((object) => pick(object, props)) : matching.map((object) => ({ href: href(collection, object.index), name: object.name }));
      return send(200, { [collection]: listed, links: [] });
    }
    if (method === 'POST') {
      if (name || index) return fail('invalid_method', 405);
      return this.createSan(collection, body, send, fail, href);
    }
    const object = objects.find((candidate) => (name !== undefined ? candidate.name === name : String(candidate.index) === index));
    if (!object) return fail(OBJ_NOT_FOUND);
    switch (method) {
      case 'GET':
        return send(200, { content: pick(object, props), links: [{ href: href(collection, object.index), rel: 'self' }] });
      case 'PUT':
        if (collection !== 'initiators') return fail('invalid_method', 405);
        return this.modifyInitiator(this.initiators.get(object.name)!, body, send, fail);
      case 'DELETE':
        return this.deleteSan(collection, object, send, fail);
      default:
        return fail('invalid_method', 405);
    }
  }

  private sanObjects(collection: SanCollection): XmsObject[] {
    switch (collection) {
      case 'initiator-groups':
        return [...this.initiatorGroups.values()].map((group) => ({
          name: group.name,
          index: group.index,
          'ig-id': groupId(group),
          'num-of-initiators': this.groupInitiators(group).length,
          'num-of-vols': this.groupMaps(group).length,
        }));
      case 'initiators':
        return [...this.initiators.values()].map((initiator) => ({
          name: initiator.name,
          index: initiator.index,
          'initiator-id': ['guid', initiator.name, initiator.index],
          'port-address': initiator.portAddress,
          'ig-id': groupId(initiator.group),
          'chap-authentication-initiator-user-name': initiator.chapAuthenticationUser ?? null,
          'chap-authentication-initiator-password': initiator.chapAuthenticationPassword ?? null,
          'chap-discovery-initiator-user-name': initiator.chapDiscoveryUser ?? null,
          'chap-discovery-initiator-password': initiator.chapDiscoveryPassword ?? null,
        }));
      case 'lun-maps':
        return [...this.lunMaps.values()].map((map) => {
          const mapName = lunMapName(map);
          return {
            name: mapName,
            index: map.index,
            'mapping-id': ['guid', mapName, map.index],
            lun: map.lun,
            'vol-name': map.volume.name,
            'vol-index': map.volume.index,
            'ig-name': map.group.name,
            'ig-index': map.group.index,
            'tg-name': TARGET_GROUP.name,
            'tg-index': TARGET_GROUP.index,
          };
        });
      case 'target-groups':
        return [{ ...TARGET_GROUP, 'tg-id': ['guid', TARGET_GROUP.name, TARGET_GROUP.index] }];
      case 'iscsi-portals':
        return this.iscsiPortals.map((portal) => ({
          name: portal.ipAddr,
          index: portal.index,
          'ip-addr': portal.ipAddr,
          'ip-port': portal.ipPort,
          'port-address': portal.portAddress,
        }));
    }
  }

  private createSan(collection: SanCollection, body: Record<string, unknown>, send: Send, fail: Fail, href: Href): void {
    const created = (type: string, idx: number) => send(201, { links: [{ href: href(type, idx), rel: 'self' }] });
    switch (collection) {
      case 'initiator-groups': {
        const groupName = body['ig-name'];
        if (typeof groupName !== 'string' || !groupName) return fail('ig_name_is_missing');
        if (this.initiatorGroups.has(groupName)) return fail('ig_obj_name_not_unique');
        const group = { index: this.nextSanIndex['initiator-groups']++, name: groupName };
        this.initiatorGroups.set(groupName, group);
        return created(collection, group.index);
      }
      case 'initiators': {
        const initiatorName = body['initiator-name'];
        const portAddress = body['port-address'];
        const group = this.lookupGroup(body['ig-id']);
        if (typeof initiatorName !== 'string' || !initiatorName) return fail('initiator_name_is_missing');
        if (typeof portAddress !== 'string' || !portAddress) return fail('port_address_is_missing');
        if (!group) return fail('ig_obj_not_found');
        if (this.initiators.has(initiatorName)) return fail('initiator_obj_name_not_unique');
        if ([...this.initiators.values()].some((other) => other.portAddress === portAddress)) return fail('initiator_port_address_not_unique');
        const initiator: XmsInitiator = { index: this.nextSanIndex.initiators++, name: initiatorName, portAddress, group };
        const problem = applyChap(initiator, body);
        if (problem) return fail(problem);
        this.initiators.set(initiatorName, initiator);
        return created(collection, initiator.index);
      }
      case 'lun-maps': {
        const volume = this.lookup(body['vol-id']);
        const group = this.lookupGroup(body['ig-id']);
        const tg = body['tg-id'];
        if (!volume) return fail('vol_obj_not_found');
        if (!group) return fail('ig_obj_not_found');
        if (tg !== undefined && tg !== TARGET_GROUP.name && tg !== TARGET_GROUP.index && !(Array.isArray(tg) && tg[1] === TARGET_GROUP.name)) {
          return fail('tg_obj_not_found');
        }
        const maps = this.groupMaps(group);
        if (maps.some((map) => map.volume === volume)) return fail('vol_already_mapped');
        let lun: number;
        if (body['lun'] !== undefined) {
          lun = Number(body['lun']);
          if (!Number.isInteger(lun) || lun < 0 || lun > 16383) return fail('invalid_lun');
          if (maps.some((map) => map.lun === lun)) return fail('lun_already_in_use');
        } else {
          lun = 1;
          while (maps.some((map) => map.lun === lun)) lun++;
        }
        const map = { index: this.nextSanIndex['lun-maps']++, volume, group, lun };
        this.lunMaps.set(map.index, map);
        return created(collection, map.index);
      }
      default:
        return fail('invalid_method', 405);
    }
  }

  private modifyInitiator(initiator: XmsInitiator, body: Record<string, unknown>, send: Send, fail: Fail): void {
    const changed = { ...initiator };
    const problem = applyChap(changed, body);
    if (problem) return fail(problem);
    Object.assign(initiator, changed);
    return send(200, undefined);
  }

  private deleteSan(collection: SanCollection, object: XmsObject, send: Send, fail: Fail): void {
    switch (collection) {
      case 'lun-maps':
        this.lunMaps.delete(object.index);
        return send(200, undefined);
      case 'initiators':
        this.initiators.delete(object.name);
        return send(200, undefined);
      case 'initiator-groups': {
        const group = this.initiatorGroups.get(object.name)!;
        if (this.groupMaps(group).length > 0) return fail('ig_has_lun_mappings');
        // Its initiators go with it.
        for (const initiator of this.groupInitiators(group)) this.initiators.delete(initiator.name);
        this.initiatorGroups.delete(group.name);
        return send(200, undefined);
      }
      default:
        return fail('invalid_method', 405);
    }
  }

  /** A group reference in a body: its name, its index, or an object id [guid, name, index]. */
  private lookupGroup(ref: unknown): XmsInitiatorGroup | undefined {
    if (typeof ref === 'string') return this.initiatorGroups.get(ref);
    if (typeof ref === 'number') return [...this.initiatorGroups.values()].find((group) => group.index === ref);
    if (Array.isArray(ref)) return this.lookupGroup(ref[1]);
    return undefined;
  }
}

const SAN_COLLECTIONS = new Set(['initiator-groups', 'initiators', 'lun-maps', 'target-groups', 'iscsi-portals']);
type SanCollection = 'initiator-groups' | 'initiators' | 'lun-maps' | 'target-groups' | 'iscsi-portals';

function groupId(group: XmsInitiatorGroup): [string, string, number] {
  return ['guid', group.name, group.index];
}

/** "<vol index>_<ig index>_<tg index>", as Cinder's terminate_connection names a mapping to delete it. */
function lunMapName(map: XmsLunMap): string {
  return `${map.volume.index}_${map.group.index}_${TARGET_GROUP.index}`;
}

/** CHAP fields of an initiator create or modify; an error message when one is not a string. */
function applyChap(initiator: XmsInitiator, body: Record<string, unknown>): string | undefined {
  const fields = [
    ['initiator-authentication-user-name', 'chapAuthenticationUser'],
    ['initiator-authentication-password', 'chapAuthenticationPassword'],
    ['initiator-discovery-user-name', 'chapDiscoveryUser'],
    ['initiator-discovery-password', 'chapDiscoveryPassword'],
  ] as const;
  for (const [field, key] of fields) {
    const value = body[field];
    if (value === undefined) continue;
    if (value !== null && typeof value !== 'string') return 'invalid_input';
    initiator[key] = value;
  }
  return undefined;
}

/** A filter parameter: "field:op:value" terms, comma-separated alternatives; undefined when malformed. */
function parseFilter(text: string): Array<(object: XmsObject) => boolean> | undefined {
  const terms = text.split(',').map((term) => {
    const match = /^([a-z0-9-]+):(eq|ne|gt|ge|lt|le|like):(.*)$/.exec(term);
    if (!match) return undefined;
    const [, field, op, value] = match;
    return (object: XmsObject) => {
      const raw = object[field];
      // Object ids compare by name, as XMS filters on ig-id and such.
      const actual = Array.isArray(raw) ? String(raw[1]) : raw === null || raw === undefined ? '' : String(raw);
      const numeric = actual !== '' && value !== '' && !Number.isNaN(Number(actual)) && !Number.isNaN(Number(value));
      const [a, b] = numeric ? [Number(actual), Number(value)] : [actual, value];
      switch (op) {
        case 'eq':
          return a === b;
        case 'ne':
          return a !== b;
        case 'gt':
          return a > b;
        case 'ge':
          return a >= b;
        case 'lt':
          return a < b;
        case 'le':
          return a <= b;
        default:
          return actual.includes(value);
      }
    };
  });
  return terms.every((term) => term !== undefined) ? terms : undefined;
}

/** Only the asked props (XMS `prop=`), or the whole object when none were asked. */
function pick(object: XmsObject, props: string[]): Record<string, unknown> {
  if (props.length === 0) return object;
  return Object.fromEntries(props.filter((prop) => prop in object).map((prop) => [prop, object[prop]]));
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
  const factor = { k: 1, m: 1024, g: 1024 ** 2, t: 1024 ** 3 }[match[2].toLowerCase() as 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(match[1]) * factor);
}
