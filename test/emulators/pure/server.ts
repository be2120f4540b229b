import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpsEmulator, sendJson } from '../https-emulator.js';
import { matchesFilter } from './filter.js';

/**
 * A Pure Storage FlashArray REST 2.x emulator, written from the API as Cinder's driver
 * (cinder/volume/drivers/pure.py) calls it through py-pure-client (pypureclient.flasharray) and
 * from py-pure-client's models; no vendor code, no live array behind it.
 *
 * - `GET /api/api_version` (no session) answers `{version: [...]}`; `POST /api/<v>/login` with the
 *   `api-token` header answers a session in `x-auth-token`; every other call needs that header
 *   (401 otherwise, and after `endSessions()`). Paths outside the versions listed are 404.
 * - Objects are addressed by query parameters (`names`, `source_names`, `host_names`,
 *   `volume_names`: comma-separated), bodies are py-pure-client's models (VolumePost
 *   `{provisioned}` or `{source: {name}}`, VolumePatch `{provisioned}`/`{destroyed}`,
 *   VolumeSnapshotPost `{suffix}`, HostPost `{iqns}`, HostPatch `{chap: {host_user, host_password}}`
 *   or `{personality}`), sizes are bytes (multiples of 512).
 * - Refusals are HTTP 400 `{"errors": [{"context": <name>, "message": <text>}]}`; the texts Cinder
 *   matches are kept ("already exists", "does not exist", "has been destroyed", "already in use",
 *   "cannot be deleted due to existing connections"); the rest of each sentence is the emulator's.
 * - Lists answer `{items, continuation_token, more_items_remaining, total_item_count}`, `pageSize`
 *   items at a time (`limit` may ask fewer); `total_item_count` only when asked for, as the array.
 * - Names: 1 to 63 letters, digits and '-', starting with a letter or digit; snapshots are
 *   `<volume>.<suffix>`. Destroyed volumes and snapshots keep their names and their space (used
 *   physical space) until eradicated (DELETE), and are listed unless `destroyed=false`.
 * - Connections get the host's lowest free LUN from 1. Ports come from the ready controllers
 *   (`GET /controllers?filter=status='ready'`, `GET /ports?filter=name='CT0.*'`).
 * - Faults: `inject` (a status and message on the Nth matching call, optionally after the array
 *   acted, as a proxy failing after the array), `slowDown` (latency, from the scaffold),
 *   `endSessions` (expired sessions).
 */
export const PURE_API_TOKEN_HEADER = 'api-token';
export const PURE_SESSION_HEADER = 'x-auth-token';
const GIB = 1024 ** 3;
const NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,62}$/;
const NAME_RULE = 'must be 1 to 63 characters long, contain only letters, digits and "-", and begin with a letter or digit';

export interface PureEmulatorOptions {
  apiToken?: string;
  /** REST versions the array lists (GET /api/api_version); the last one is the newest. */
  apiVersions?: string[];
  purityVersion?: string;
  capacityGb?: number;
  /** Physical space used by data that is not the emulator's objects, GiB. */
  baseUsedGb?: number;
  /** The array's total data reduction ratio (space.total_reduction). */
  totalReduction?: number;
  /** Items per list page. */
  pageSize?: number;
  /** iSCSI ports of each controller; FC ports (no iqn) are added to show they are filtered out. */
  iscsiPorts?: Array<{ name: string; portal: string }>;
}

export interface PureVolume {
  id: string;
  name: string;
  serial: string;
  provisioned: number;
  created: number;
  destroyed: boolean;
  source: { name: string; id: string } | null;
  /** Bytes of physical space the volume holds (tests write "data" with `write`). */
  physical: number;
  qos?: Record<string, unknown>;
  /** What the emulator pretends the blocks hold (tests set it): snapshots and copies take it along. */
  content?: string;
}

export interface PureSnapshot {
  id: string;
  name: string;
  serial: string;
  suffix: string;
  provisioned: number;
  created: number;
  destroyed: boolean;
  source: { name: string; id: string };
  physical: number;
  content?: string;
}

export interface PureHost {
  name: string;
  iqns: string[];
  personality: string | null;
  chap: { host_user?: string; host_password?: string };
}

export interface PureConnection {
  host: string;
  volume: string;
  lun: number;
}

interface Fault {
  method: string;
  pathIncludes: string;
  status: number;
  message: string;
  /** Matching calls let through before the fault. */
  skip: number;
  times: number;
  /** The array acts first, then answers the fault (a gateway failing after the array). */
  afterActing: boolean;
}

type Items = Array<Record<string, unknown>>;

class Refusal extends Error {
  constructor(
    readonly context: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

export class PureEmulator extends HttpsEmulator {
  readonly apiToken: string;
  readonly apiVersions: string[];
  readonly arrayName = 'pure-emulated';
  readonly arrayId = randomUUID();
  purityVersion: string;
  capacityBytes: number;
  baseUsedBytes: number;
  totalReduction: number;
  pageSize: number;
  readonly volumes = new Map<string, PureVolume>();
  readonly snapshots = new Map<string, PureSnapshot>();
  readonly hosts = new Map<string, PureHost>();
  readonly connections: PureConnection[] = [];
  /** Protection groups (names only): Cinder counts them in its stats. */
  readonly protectionGroups: string[] = [];
  readonly controllers = [
    { name: 'CT0', status: 'ready', mode: 'primary', type: 'array_controller' },
    { name: 'CT1', status: 'ready', mode: 'secondary', type: 'array_controller' },
  ];
  readonly ports: Array<{ name: string; iqn: string | null; portal: string | null; wwn: string | null; nqn: null; failover: null }>;
  readonly targetIqn = 'iqn.2010-06.com.purestorage:flasharray.5c9b0d2e1a7f3e21';
  private faults: Fault[] = [];

  constructor(options: PureEmulatorOptions = {}) {
    super('pureuser', '');
    this.apiToken = options.apiToken ?? 'e7c0d2a4-5f1b-4b8e-9d3a-0123456789ab';
    this.apiVersions = options.apiVersions ?? ['1.19', '2.0', '2.1', '2.2', '2.4', '2.26'];
    this.purityVersion = options.purityVersion ?? '6.5.8';
    this.capacityBytes = (options.capacityGb ?? 10_240) * GIB;
    this.baseUsedBytes = (options.baseUsedGb ?? 1_024) * GIB;
    this.totalReduction = options.totalReduction ?? 4.2;
    this.pageSize = options.pageSize ?? 1000;
    const iscsi = options.iscsiPorts ?? [
      { name: 'CT0.ETH4', portal: '127.0.0.31:3260' },
      { name: 'CT1.ETH4', portal: '127.0.0.32:3260' },
    ];
    this.ports = [
      ...iscsi.map((port) => ({ name: port.name, iqn: this.targetIqn, portal: port.portal, wwn: null, nqn: null, failover: null })),
      { name: 'CT0.FC0', iqn: null, portal: null, wwn: '52:4A:93:7D:F3:5C:9B:00', nqn: null, failover: null },
    ];
    this.useSessions({ path: `/api/${this.newestVersion}/login`, apiTokenHeader: PURE_API_TOKEN_HEADER, apiToken: this.apiToken, sessionHeader: PURE_SESSION_HEADER });
  }

  get newestVersion(): string {
    return this.apiVersions[this.apiVersions.length - 1];
  }

  /** A Cinder Pure iSCSI backend pointed at this emulator (and its test CA), with `extra` options. */
  cinderBackend(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      volume_backend_name: name,
      volume_driver: 'cinder.volume.drivers.pure.PureISCSIDriver',
      san_ip: this.address,
      pure_api_token: this.apiToken,
      driver_ssl_cert_path: this.certs.caPath,
      ...extra,
    };
  }

  /**
   * The `nth` (1 = the next) call of `method` whose path contains `pathIncludes` answers `status`
   * with Pure's error body, `times` times in a row; with `afterActing`, the array does the work first.
   */
  inject(rule: { method: string; pathIncludes: string; status: number; message?: string; nth?: number; times?: number; afterActing?: boolean }): void {
    this.faults.push({
      method: rule.method,
      pathIncludes: rule.pathIncludes,
      status: rule.status,
      message: rule.message ?? 'Internal server error.',
      skip: (rule.nth ?? 1) - 1,
      times: rule.times ?? 1,
      afterActing: rule.afterActing ?? false,
    });
  }

  clearFaults(): void {
    this.faults = [];
  }

  /** Data written to a volume takes physical space (until the volume is eradicated). */
  write(volumeName: string, bytes: number): void {
    const volume = this.volumes.get(volumeName);
    if (!volume) throw new Error(`no volume ${volumeName}`);
    volume.physical += bytes;
  }

  usedBytes(): number {
    let used = this.baseUsedBytes;
    for (const volume of this.volumes.values()) used += volume.physical;
    for (const snapshot of this.snapshots.values()) used += snapshot.physical;
    return used;
  }

  hostConnections(host: string): PureConnection[] {
    return this.connections.filter((connection) => connection.host === host);
  }

  protected handle(req: IncomingMessage, res: ServerResponse, url: URL, body: Record<string, unknown>): void {
    const method = req.method ?? 'GET';
    if (method === 'GET' && url.pathname === '/api/api_version') return sendJson(res, 200, { version: this.apiVersions });
    const match = /^\/api\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!match || !this.apiVersions.includes(match[1]) || !match[1].startsWith('2.')) {
      return sendJson(res, 404, { errors: [{ message: `Not found: ${url.pathname}` }] });
    }
    if (!this.authorized(req)) {
      return sendJson(res, 401, {
        errors: [{ message: 'Authentication failed: the session is missing or has expired.', ...(this.echoHeaders ? { context: JSON.stringify(req.headers) } : {}) }],
      });
    }
    const fault = this.faults.find((rule) => rule.times > 0 && rule.method === method && url.pathname.includes(rule.pathIncludes) && rule.skip-- <= 0);
    if (fault) fault.times--;
    if (fault && !fault.afterActing) return this.sendFault(res, fault, req);
    let status = 200;
    let payload: unknown;
    try {
      payload = this.route(method, match[2], url.searchParams, body);
    } catch (error) {
      if (!(error instanceof Refusal)) throw error;
      status = error.status;
      payload = { errors: [{ context: error.context, message: error.message }] };
    }
    if (fault) return this.sendFault(res, fault, req);
    sendJson(res, status, payload);
  }

  private sendFault(res: ServerResponse, fault: Fault, req: IncomingMessage): void {
    sendJson(res, fault.status, { errors: [{ message: fault.message, ...(this.echoHeaders ? { context: JSON.stringify(req.headers) } : {}) }] });
  }

  private route(method: string, path: string, query: URLSearchParams, body: Record<string, unknown>): unknown {
    const key = `${method} ${path}`;
    switch (key) {
      case 'POST logout':
        return {};
      case 'GET arrays':
        return this.page([{ id: this.arrayId, name: this.arrayName, version: this.purityVersion, os: 'Purity//FA', capacity: this.capacityBytes }], query);
      case 'GET arrays/space':
        return this.page([this.arraySpace()], query);
      case 'GET arrays/performance':
        return this.page([this.performance()], query);
      case 'GET volumes':
        return this.page(this.selectVolumes(query), query);
      case 'POST volumes':
        return { items: [this.volumeView(this.postVolume(query, body))] };
      case 'PATCH volumes':
        return { items: this.patchVolumes(query, body).map((volume) => this.volumeView(volume)) };
      case 'DELETE volumes':
        this.eradicateVolumes(names(query, 'names'));
        return {};
      case 'GET volume-snapshots':
        return this.page(this.selectSnapshots(query), query);
      case 'POST volume-snapshots':
        return { items: this.postSnapshots(query, body).map((snapshot) => this.snapshotView(snapshot)) };
      case 'PATCH volume-snapshots':
        return { items: this.patchSnapshots(query, body).map((snapshot) => this.snapshotView(snapshot)) };
      case 'DELETE volume-snapshots':
        this.eradicateSnapshots(names(query, 'names'));
        return {};
      case 'GET hosts':
        return this.page(this.selectHosts(query), query);
      case 'POST hosts':
        return { items: [this.hostView(this.postHost(query, body))] };
      case 'PATCH hosts':
        return { items: this.patchHosts(query, body).map((host) => this.hostView(host)) };
      case 'DELETE hosts':
        this.deleteHosts(names(query, 'names'));
        return {};
      case 'GET connections':
        return this.page(
          this.selectConnections(query).map((connection) => this.connectionView(connection)),
          query,
        );
      case 'POST connections':
        return { items: this.postConnections(query).map((connection) => this.connectionView(connection)) };
      case 'DELETE connections':
        this.deleteConnections(query);
        return {};
      case 'GET controllers':
        return this.page(this.filtered(this.controllers, query), query);
      case 'GET ports':
        return this.page(this.filtered(this.ports, query), query);
      case 'GET network-interfaces':
        return this.page(this.filtered([], query), query);
      case 'GET protection-groups':
        return this.page(
          this.protectionGroups.map((name) => ({ name, destroyed: false })),
          query,
        );
      default:
        throw new Refusal(path, `The operation ${method} /${path} is not supported by this emulator.`, 404);
    }
  }

  /** One page of `all`, continuing where `continuation_token` says. */
  private page(all: Items, query: URLSearchParams): Record<string, unknown> {
    const token = query.get('continuation_token');
    const start = token
      ? Number.parseInt(
          Buffer.from(token, 'base64url')
            .toString('utf8')
            .replace(/^offset:/, ''),
          10,
        )
      : 0;
    if (!Number.isInteger(start) || start < 0) throw new Refusal('continuation_token', 'Invalid continuation token.');
    const limit = Math.min(this.pageSize, Number(query.get('limit') ?? this.pageSize) || this.pageSize);
    const items = all.slice(start, start + limit);
    const more = start + limit < all.length;
    return {
      items,
      continuation_token: more ? Buffer.from(`offset:${start + limit}`).toString('base64url') : null,
      more_items_remaining: more,
      total_item_count: query.get('total_item_count') === 'true' ? all.length : null,
    };
  }

  private filtered<T extends object>(items: T[], query: URLSearchParams): Items {
    const filter = query.get('filter');
    if (!filter) return items as unknown as Items;
    try {
      return items.filter((item) => matchesFilter(item as Record<string, unknown>, filter)) as unknown as Items;
    } catch (error) {
      throw new Refusal('filter', `Invalid filter: ${(error as Error).message}.`);
    }
  }

  private arraySpace(): Record<string, unknown> {
    const provisioned = [...this.volumes.values()].filter((volume) => !volume.destroyed).reduce((sum, volume) => sum + volume.provisioned, 0);
    const used = this.usedBytes();
    return {
      id: this.arrayId,
      name: this.arrayName,
      capacity: this.capacityBytes,
      parity: 1.0,
      time: Date.now(),
      space: {
        data_reduction: this.totalReduction,
        total_reduction: this.totalReduction,
        total_physical: used,
        total_used: used,
        total_provisioned: provisioned,
        unique: used - this.baseUsedBytes,
        shared: 0,
        snapshots: [...this.snapshots.values()].reduce((sum, snapshot) => sum + snapshot.physical, 0),
        system: this.baseUsedBytes,
        thin_provisioning: 0.5,
        virtual: provisioned,
      },
    };
  }

  private performance(): Record<string, unknown> {
    const fields = ['writes_per_sec', 'reads_per_sec', 'write_bytes_per_sec', 'read_bytes_per_sec', 'usec_per_read_op', 'usec_per_write_op', 'queue_depth'];
    const queues = ['queue_usec_per_mirrored_write_op', 'queue_usec_per_read_op', 'queue_usec_per_write_op'];
    return { id: this.arrayId, name: this.arrayName, time: Date.now(), ...Object.fromEntries([...fields, ...queues].map((field) => [field, 0])) };
  }

  // ---- volumes

  private selectVolumes(query: URLSearchParams): Items {
    const wanted = names(query, 'names', false);
    const destroyed = query.get('destroyed');
    let volumes = [...this.volumes.values()];
    if (wanted.length > 0) volumes = wanted.map((name) => this.existingVolume(name, true));
    if (destroyed !== null) volumes = volumes.filter((volume) => volume.destroyed === (destroyed === 'true'));
    return this.filtered(
      volumes.map((volume) => this.volumeView(volume)),
      query,
    );
  }

  /** A volume made outside Cinder, for adoption tests. */
  addVolume(name: string, sizeGb: number): void {
    this.volumes.set(name, { id: randomUUID(), name, serial: serial(), provisioned: sizeGb * 1024 ** 3, created: Date.now(), destroyed: false, source: null, physical: 0 });
  }

  private postVolume(query: URLSearchParams, body: Record<string, unknown>): PureVolume {
    const [name] = names(query, 'names');
    if (!NAME.test(name)) throw new Refusal(name, `Volume name ${NAME_RULE}.`);
    const source = body.source as { name?: unknown } | undefined;
    const existing = this.volumes.get(name);
    // overwrite=true: an existing volume takes the source's blocks and size, keeping its identity and connections.
    if (existing && query.get('overwrite') === 'true' && typeof source?.name === 'string') {
      const origin = this.volumes.get(source.name) ?? this.snapshots.get(source.name);
      if (!origin) throw new Refusal(source.name, 'Source volume or snapshot does not exist.');
      if (existing.destroyed) throw new Refusal(name, 'Volume has been destroyed.');
      existing.provisioned = origin.provisioned;
      existing.content = origin.content;
      return existing;
    }
    if (this.volumes.has(name) || this.snapshots.has(name)) throw new Refusal(name, 'Volume already exists.');
    let provisioned: number;
    let from: PureVolume['source'] = null;
    let content: string | undefined;
    if (source !== undefined) {
      if (typeof source?.name !== 'string') throw new Refusal(name, 'source.name is required.');
      const origin = this.volumes.get(source.name) ?? this.snapshots.get(source.name);
      if (!origin) throw new Refusal(source.name, 'Source volume or snapshot does not exist.');
      if (origin.destroyed) throw new Refusal(source.name, 'Source volume or snapshot has been destroyed.');
      provisioned = origin.provisioned;
      from = { name: origin.name, id: origin.id };
      content = origin.content;
    } else {
      provisioned = size(name, body.provisioned);
    }
    const volume: PureVolume = { id: randomUUID(), name, serial: serial(), provisioned, created: Date.now(), destroyed: false, source: from, physical: 0, content };
    this.volumes.set(name, volume);
    return volume;
  }

  private patchVolumes(query: URLSearchParams, body: Record<string, unknown>): PureVolume[] {
    const volumes = names(query, 'names').map((name) => this.existingVolume(name, true));
    for (const volume of volumes) {
      if (body.destroyed === false) {
        volume.destroyed = false;
        continue;
      }
      if (volume.destroyed) throw new Refusal(volume.name, 'Volume has been destroyed.');
      if (body.destroyed === true) {
        if (this.connections.some((connection) => connection.volume === volume.name)) throw new Refusal(volume.name, 'Volume has host connections and cannot be destroyed.');
        volume.destroyed = true;
        // The volume's snapshots go with it (pending eradication too).
        for (const snapshot of this.snapshots.values()) if (snapshot.source.name === volume.name) snapshot.destroyed = true;
      }
      if (body.provisioned !== undefined) {
        const bytes = size(volume.name, body.provisioned);
        if (bytes < volume.provisioned && query.get('truncate') !== 'true')
          throw new Refusal(volume.name, 'Implicit truncation is not allowed; use truncate=true to shrink the volume.');
        volume.provisioned = bytes;
      }
      if (body.qos !== undefined) volume.qos = body.qos as Record<string, unknown>;
      if (typeof body.name === 'string' && body.name !== volume.name) {
        // A rename: its snapshots are renamed with it, as Purity names them after their volume.
        if (!NAME.test(body.name)) throw new Refusal(body.name, `Volume name ${NAME_RULE}.`);
        if (this.volumes.has(body.name) || this.snapshots.has(body.name)) throw new Refusal(body.name, 'Volume already exists.');
        const old = volume.name;
        this.volumes.delete(old);
        volume.name = body.name;
        this.volumes.set(volume.name, volume);
        for (const connection of this.connections) if (connection.volume === old) connection.volume = volume.name;
      }
    }
    return volumes;
  }

  private eradicateVolumes(list: string[]): void {
    for (const name of list) {
      const volume = this.existingVolume(name, true);
      if (!volume.destroyed) throw new Refusal(name, 'Volume must be destroyed before it can be eradicated.');
    }
    for (const name of list) {
      this.volumes.delete(name);
      for (const [snapshotName, snapshot] of this.snapshots) if (snapshot.source.name === name) this.snapshots.delete(snapshotName);
    }
  }

  private existingVolume(name: string, destroyedToo: boolean): PureVolume {
    const volume = this.volumes.get(name);
    if (!volume) throw new Refusal(name, 'Volume does not exist.');
    if (!destroyedToo && volume.destroyed) throw new Refusal(name, 'Volume has been destroyed.');
    return volume;
  }

  private volumeView(volume: PureVolume): Record<string, unknown> {
    return {
      id: volume.id,
      name: volume.name,
      serial: volume.serial,
      provisioned: volume.provisioned,
      created: volume.created,
      destroyed: volume.destroyed,
      time_remaining: volume.destroyed ? 86_400_000 : null,
      source: volume.source,
      subtype: 'regular',
      connection_count: this.connections.filter((connection) => connection.volume === volume.name).length,
      qos: volume.qos ?? {},
      space: { total_provisioned: volume.provisioned, total_physical: volume.physical, unique: volume.physical, data_reduction: this.totalReduction },
      volume_group: { name: null, id: null },
      pod: { name: null, id: null },
    };
  }

  // ---- snapshots

  private selectSnapshots(query: URLSearchParams): Items {
    const wanted = names(query, 'names', false);
    const sources = names(query, 'source_names', false);
    const destroyed = query.get('destroyed');
    let snapshots = [...this.snapshots.values()];
    if (wanted.length > 0) snapshots = wanted.map((name) => this.existingSnapshot(name));
    if (sources.length > 0) snapshots = snapshots.filter((snapshot) => sources.includes(snapshot.source.name));
    if (destroyed !== null) snapshots = snapshots.filter((snapshot) => snapshot.destroyed === (destroyed === 'true'));
    return this.filtered(
      snapshots.map((snapshot) => this.snapshotView(snapshot)),
      query,
    );
  }

  private postSnapshots(query: URLSearchParams, body: Record<string, unknown>): PureSnapshot[] {
    const sources = names(query, 'source_names').map((name) => this.existingVolume(name, false));
    const suffix = typeof body.suffix === 'string' ? body.suffix : String(Date.now());
    if (!NAME.test(suffix)) throw new Refusal(suffix, `Snapshot suffix ${NAME_RULE}.`);
    for (const source of sources) if (this.snapshots.has(`${source.name}.${suffix}`)) throw new Refusal(`${source.name}.${suffix}`, 'Snapshot already exists.');
    return sources.map((source) => {
      const snapshot: PureSnapshot = {
        id: randomUUID(),
        name: `${source.name}.${suffix}`,
        serial: serial(),
        suffix,
        provisioned: source.provisioned,
        created: Date.now(),
        destroyed: false,
        source: { name: source.name, id: source.id },
        physical: 0,
        content: source.content,
      };
      this.snapshots.set(snapshot.name, snapshot);
      return snapshot;
    });
  }

  private patchSnapshots(query: URLSearchParams, body: Record<string, unknown>): PureSnapshot[] {
    const snapshots = names(query, 'names').map((name) => this.existingSnapshot(name));
    for (const snapshot of snapshots) {
      if (body.destroyed === false) {
        if (this.volumes.get(snapshot.source.name)?.destroyed) throw new Refusal(snapshot.name, 'Source volume has been destroyed.');
        snapshot.destroyed = false;
        continue;
      }
      if (snapshot.destroyed) throw new Refusal(snapshot.name, 'Snapshot has been destroyed.');
      if (body.destroyed === true) snapshot.destroyed = true;
    }
    return snapshots;
  }

  private eradicateSnapshots(list: string[]): void {
    for (const name of list) if (!this.existingSnapshot(name).destroyed) throw new Refusal(name, 'Snapshot must be destroyed before it can be eradicated.');
    for (const name of list) this.snapshots.delete(name);
  }

  private existingSnapshot(name: string): PureSnapshot {
    const snapshot = this.snapshots.get(name);
    if (!snapshot) throw new Refusal(name, 'Snapshot does not exist.');
    return snapshot;
  }

  private snapshotView(snapshot: PureSnapshot): Record<string, unknown> {
    return {
      id: snapshot.id,
      name: snapshot.name,
      serial: snapshot.serial,
      suffix: snapshot.suffix,
      provisioned: snapshot.provisioned,
      created: snapshot.created,
      destroyed: snapshot.destroyed,
      time_remaining: snapshot.destroyed ? 86_400_000 : null,
      source: snapshot.source,
      space: { total_physical: snapshot.physical },
    };
  }

  // ---- hosts

  private selectHosts(query: URLSearchParams): Items {
    const wanted = names(query, 'names', false);
    const hosts = wanted.length > 0 ? wanted.map((name) => this.existingHost(name)) : [...this.hosts.values()];
    return this.filtered(
      hosts.map((host) => this.hostView(host)),
      query,
    );
  }

  private postHost(query: URLSearchParams, body: Record<string, unknown>): PureHost {
    const [name] = names(query, 'names');
    if (!NAME.test(name)) throw new Refusal(name, `Host name ${NAME_RULE}.`);
    if (this.hosts.has(name)) throw new Refusal(name, 'Host already exists.');
    const iqns = Array.isArray(body.iqns) ? body.iqns.map(String) : [];
    for (const iqn of iqns) {
      const owner = [...this.hosts.values()].find((host) => host.iqns.includes(iqn));
      if (owner) throw new Refusal(iqn, `The IQN ${iqn} is already in use by host ${owner.name}.`);
    }
    const host: PureHost = { name, iqns, personality: typeof body.personality === 'string' ? body.personality : null, chap: {} };
    if (body.chap) this.setChap(host, body.chap);
    this.hosts.set(name, host);
    return host;
  }

  private patchHosts(query: URLSearchParams, body: Record<string, unknown>): PureHost[] {
    const hosts = names(query, 'names').map((name) => this.existingHost(name));
    for (const host of hosts) {
      if (body.chap !== undefined) this.setChap(host, body.chap);
      if (body.personality !== undefined) host.personality = body.personality === null ? null : String(body.personality);
    }
    return hosts;
  }

  private setChap(host: PureHost, chap: unknown): void {
    const { host_user: user, host_password: password } = (chap ?? {}) as { host_user?: unknown; host_password?: unknown };
    if (password !== undefined && (typeof password !== 'string' || password.length < 12 || password.length > 255)) {
      throw new Refusal(host.name, 'The host password for CHAP authentication must be between 12 and 255 characters (inclusive).');
    }
    if (user !== undefined) host.chap.host_user = String(user);
    if (password !== undefined) host.chap.host_password = password;
  }

  private deleteHosts(list: string[]): void {
    for (const name of list) {
      this.existingHost(name);
      if (this.hostConnections(name).length > 0) throw new Refusal(name, 'Host cannot be deleted due to existing connections.');
    }
    for (const name of list) this.hosts.delete(name);
  }

  private existingHost(name: string): PureHost {
    const host = this.hosts.get(name);
    if (!host) throw new Refusal(name, 'Host does not exist.');
    return host;
  }

  /** As the array shows a host: CHAP passwords masked, never given back. */
  private hostView(host: PureHost): Record<string, unknown> {
    return {
      name: host.name,
      iqns: host.iqns,
      wwns: [],
      nqns: [],
      personality: host.personality,
      is_local: true,
      connection_count: this.hostConnections(host.name).length,
      host_group: { name: null },
      chap: {
        host_user: host.chap.host_user ?? null,
        host_password: host.chap.host_password ? '****' : null,
        target_user: null,
        target_password: null,
      },
    };
  }

  // ---- connections

  private selectConnections(query: URLSearchParams): PureConnection[] {
    const hostNames = names(query, 'host_names', false);
    const volumeNames = names(query, 'volume_names', false);
    for (const name of hostNames) this.existingHost(name);
    for (const name of volumeNames) this.existingVolume(name, true);
    return this.connections.filter(
      (connection) => (hostNames.length === 0 || hostNames.includes(connection.host)) && (volumeNames.length === 0 || volumeNames.includes(connection.volume)),
    );
  }

  private postConnections(query: URLSearchParams): PureConnection[] {
    const hostNames = names(query, 'host_names');
    const volumeNames = names(query, 'volume_names');
    for (const host of hostNames) this.existingHost(host);
    for (const volume of volumeNames) this.existingVolume(volume, false);
    for (const host of hostNames) {
      for (const volume of volumeNames) {
        if (this.connections.some((c) => c.host === host && c.volume === volume)) throw new Refusal(volume, 'Connection already exists.');
      }
    }
    const made: PureConnection[] = [];
    for (const host of hostNames) {
      for (const volume of volumeNames) {
        const used = new Set(this.hostConnections(host).map((connection) => connection.lun));
        let lun = 1;
        while (used.has(lun)) lun++;
        const connection = { host, volume, lun };
        this.connections.push(connection);
        made.push(connection);
      }
    }
    return made;
  }

  private deleteConnections(query: URLSearchParams): void {
    const hostNames = names(query, 'host_names');
    const volumeNames = names(query, 'volume_names');
    for (const host of hostNames) this.existingHost(host);
    for (const volume of volumeNames) this.existingVolume(volume, true);
    for (const host of hostNames) {
      for (const volume of volumeNames) {
        const index = this.connections.findIndex((connection) => connection.host === host && connection.volume === volume);
        if (index < 0) throw new Refusal(volume, `Connection between ${volume} and ${host} does not exist.`);
        this.connections.splice(index, 1);
      }
    }
  }

  private connectionView(connection: PureConnection): Record<string, unknown> {
    const volume = this.volumes.get(connection.volume);
    return {
      host: { name: connection.host },
      host_group: { name: null },
      lun: connection.lun,
      protocol_endpoint: { name: null, id: null },
      volume: { name: connection.volume, id: volume?.id ?? null },
    };
  }
}

/** The comma-separated names of a query parameter; `required` refuses a call without any. */
function names(query: URLSearchParams, parameter: string, required = true): string[] {
  const list = (query.get(parameter) ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  if (required && list.length === 0) throw new Refusal(parameter, `${parameter} is required.`);
  return list;
}

function size(context: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value % 512 !== 0 || value > 4_503_599_627_370_496) {
    throw new Refusal(context, 'The provisioned size must be a multiple of 512 bytes, at least 1 MB and at most 4 PB.');
  }
  return value;
}

function serial(): string {
  return randomBytes(12).toString('hex').toUpperCase();
}
