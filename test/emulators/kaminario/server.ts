import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpsEmulator, sendJson } from '../https-emulator.js';

/**
 * A Kaminario K2 REST API emulator, written from the API as Cinder's Kaminario driver and the
 * vendor's krest client use it (no vendor code): GET /api/v2 lists resources with their URLs;
 * searches answer {hits, total, limit, offset} and page with __limit/__offset; objects are
 * created by POST, updated by PATCH, removed by DELETE on <url>/<id>; references travel as
 * {"ref": "/volume_groups/<id>"} and searched as `<field>.ref=<ref>`; errors are JSON
 * {"error_msg", "error_code"}. Sizes and capacities are KiB; provisioned capacity moves as
 * volumes come and go. Snapshots are taken of a whole volume group: POST /snapshots with a
 * short_name, a source ref and a retention_policy ref; the array names them
 * "<volume group>:<short_name>" and will not delete a volume group that still has snapshots.
 *
 * Connections, as Cinder's Kaminario iSCSI driver makes them: POST /hosts {name, type}, POST
 * /host_iqns {iqn, host ref}, POST /mappings {volume ref, host ref} answering the mapping with the
 * LUN the array chose (the lowest free one of that host, from 1). A view (a snapshot of a snapshot
 * made with is_exposable true) is mapped by its own ref; the array maps its volsnaps (one per
 * volume of the group, GET /volsnaps?snapshot.ref=...) and a mapping search by the view's ref finds
 * them. Deleting a host takes its iqns with it; a mapped volume or view cannot be deleted, nor a
 * host that still has mappings. GET /system/net_ips lists the array's addresses (wan_port set on
 * the management one), GET /system/state carries iscsi_qualified_target_name. Loopback only.
 */
export interface K2EmulatorOptions {
  username?: string;
  password?: string;
  restApiVersion?: string;
  totalGb?: number;
  freeGb?: number;
  /** The array's iSCSI target name (system/state iscsi_qualified_target_name). */
  targetIqn?: string;
  /** system/net_ips as the array lists them; loopback addresses only. */
  netIps?: Array<{ ip_address: string; wan_port: string | null }>;
}

/** The default system/net_ips: two iSCSI data ports and the management port (a WAN port). */
export const DEFAULT_NET_IPS = [
  { ip_address: '127.0.0.20', wan_port: null },
  { ip_address: '127.0.0.21', wan_port: null },
  { ip_address: '127.0.0.10', wan_port: 'mgmt' },
];
export const DEFAULT_TARGET_IQN = 'iqn.2009-01.com.kaminario:storage.k2.41377';

type K2Object = Record<string, unknown> & { id: number; name?: string };

const KIB_PER_GIB = 1024 * 1024;
/** Host types the K2 accepts; Cinder's driver always sends "Linux". */
const HOST_TYPES = ['Linux', 'Windows', 'ESX', 'HP-UX', 'AIX', 'Solaris', 'Other'];

const RESOURCES: Record<string, string> = {
  volumes: '/volumes',
  volume_groups: '/volume_groups',
  'system/state': '/system/state',
  'system/capacity': '/system/capacity',
  'system/net_ips': '/system/net_ips',
  hosts: '/hosts',
  host_iqns: '/host_iqns',
  mappings: '/mappings',
  volsnaps: '/volsnaps',
  snapshots: '/snapshots',
  retention_policies: '/retention_policies',
};

export interface Fault {
  /** HTTP status to answer instead (a busy K2 answers 400 with an MC_ERR_BUSY message). */
  status: number;
  method?: string;
  /** Resource name, e.g. "volumes". */
  resource?: string;
  count: number;
  message?: string;
}

export class K2Emulator extends HttpsEmulator {
  readonly objects = new Map<string, Map<number, K2Object>>();
  private nextId = 100;
  private faults: Fault[] = [];
  private readonly restApiVersion: string;
  private readonly totalKib: number;
  private readonly freeKib: number;
  readonly targetIqn: string;
  private readonly netIps: Array<{ ip_address: string; wan_port: string | null }>;

  /** A Cinder K2 iSCSI backend pointed at this emulator (and its test CA), with `extra` options. */
  cinderBackend(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      volume_backend_name: name,
      volume_driver: 'cinder.volume.drivers.kaminario.kaminario_iscsi.KaminarioISCSIDriver',
      san_ip: this.address,
      san_login: this.username,
      san_password: this.password,
      driver_ssl_cert_path: this.certs.caPath,
      kaminario_retry_interval: 0,
      ...extra,
    };
  }

  constructor(options: K2EmulatorOptions = {}) {
    super(options.username ?? 'admin', options.password ?? 'k2-password');
    this.restApiVersion = options.restApiVersion ?? '2.2.0';
    this.totalKib = (options.totalGb ?? 20_000) * KIB_PER_GIB;
    this.freeKib = (options.freeGb ?? 18_000) * KIB_PER_GIB;
    this.targetIqn = options.targetIqn ?? DEFAULT_TARGET_IQN;
    this.netIps = options.netIps ?? DEFAULT_NET_IPS;
    for (const ip of this.netIps) {
      if (!/^127\./.test(ip.ip_address)) throw new Error(`the K2 emulator lists loopback addresses only, not ${ip.ip_address}`);
    }
    for (const resource of Object.keys(RESOURCES)) this.objects.set(resource, new Map());
    // The array's own volume, which Cinder's driver subtracts from total_volumes.
    this.put('volumes', { name: 'k2-internal', size: 1 * KIB_PER_GIB, volume_group: null });
    this.put('retention_policies', { name: 'Best_Effort_Retention' });
  }

  /** Answers matching requests with `status` and `message` `count` times. */
  inject(fault: Fault): void {
    this.faults.push({ ...fault });
  }

  clearFaults(): void {
    this.faults = [];
  }

  named(resource: string, name: string): K2Object | undefined {
    return [...this.objects.get(resource)!.values()].find((object) => object.name === name);
  }

  provisionedKib(): number {
    return [...this.objects.get('volumes')!.values()].reduce((sum, volume) => sum + Number(volume.size ?? 0), 0);
  }

  /** Objects of `resource` whose reference field `field` points at `ref`. */
  referencing(resource: string, field: string, ref: string): K2Object[] {
    return [...this.objects.get(resource)!.values()].filter((object) => (object[field] as { ref?: string } | null | undefined)?.ref === ref);
  }

  /**
   * A snapshot (source: a volume group) or a view (source: a snapshot) as the array stores it,
   * or the array's reason for refusing the POST body.
   */
  private snapshotFrom(body: Record<string, unknown>): Record<string, unknown> | string {
    if (typeof body.short_name !== 'string' || !body.short_name) return 'short_name: This field is required.';
    const sourceRef = (body.source as { ref?: unknown } | undefined)?.ref;
    const source = typeof sourceRef === 'string' ? this.resolve(sourceRef) : undefined;
    if (!source || (source.resource !== 'volume_groups' && source.resource !== 'snapshots')) return `source: Invalid reference ${String(sourceRef)}`;
    const policyRef = (body.retention_policy as { ref?: unknown } | undefined)?.ref;
    if (typeof policyRef !== 'string' || this.resolve(policyRef)?.resource !== 'retention_policies') {
      return `retention_policy: Invalid reference ${String(policyRef)}`;
    }
    const volumeGroup = source.resource === 'volume_groups' ? { ref: sourceRef as string } : (source.object.volume_group as { ref: string });
    const groupName = this.resolve(volumeGroup.ref)?.object.name;
    return {
      is_auto_deleteable: true,
      is_exposable: false,
      ...body,
      name: `${groupName}:${body.short_name}`,
      volume_group: volumeGroup,
      creation_time: Date.now() / 1000,
      triggered_by: 'api',
    };
  }

  /** "/volume_groups/7" -> that object and its resource, if it exists. */
  resolve(ref: string): { resource: string; object: K2Object } | undefined {
    const match = /^\/(.+)\/(\d+)$/.exec(ref);
    const resource = match && Object.keys(RESOURCES).find((name) => RESOURCES[name] === `/${match[1]}`);
    const object = resource ? this.objects.get(resource)!.get(Number(match[2])) : undefined;
    return resource && object ? { resource, object } : undefined;
  }

  /** Mappings whose volume is `ref` (a volume, a volsnap, or a view through its volsnaps). */
  mappingsOf(ref: string): K2Object[] {
    return [...this.objects.get('mappings')!.values()].filter((mapping) => {
      const mapped = (mapping.volume as { ref: string }).ref;
      return mapped === ref || this.viewOf(mapped) === ref;
    });
  }

  /** The snapshot ref of a volsnap ref ("/volsnaps/9" -> "/snapshots/4"). */
  private viewOf(ref: string): string | undefined {
    if (!ref.startsWith('/volsnaps/')) return undefined;
    return (this.resolve(ref)?.object.snapshot as { ref?: string } | undefined)?.ref;
  }

  /** One volsnap per volume of the snapshot's group, as the array keeps them. */
  private putVolsnaps(snapshot: K2Object): void {
    const groupRef = (snapshot.volume_group as { ref: string }).ref;
    for (const volume of this.referencing('volumes', 'volume_group', groupRef)) {
      this.put('volsnaps', {
        name: `${String(snapshot.name)}:${String(volume.name)}`,
        snapshot: { ref: `/snapshots/${snapshot.id}` },
        volume: { ref: `/volumes/${volume.id}` },
        size: volume.size,
      });
    }
  }

  private postHostIqn(body: Record<string, unknown>, send: (status: number, payload?: unknown) => void, fail: (status: number, message: string) => void): void {
    if (typeof body.iqn !== 'string' || !/^(iqn\.|eui\.|naa\.)/.test(body.iqn)) return fail(400, `iqn: "${String(body.iqn)}" is not a valid iSCSI name.`);
    const hostRef = (body.host as { ref?: unknown } | undefined)?.ref;
    if (typeof hostRef !== 'string' || this.resolve(hostRef)?.resource !== 'hosts') return fail(400, `host: Invalid reference ${String(hostRef)}`);
    if ([...this.objects.get('host_iqns')!.values()].some((iqn) => iqn.iqn === body.iqn)) return fail(409, `host_iqns with iqn ${body.iqn} already exists`);
    send(201, this.put('host_iqns', { iqn: body.iqn, host: { ref: hostRef } }));
  }

  /**
   * Maps a volume (or an exposable view, through its volsnaps) to a host at the host's lowest free
   * LUN; the same volume twice to one host is refused.
   */
  private postMapping(body: Record<string, unknown>, send: (status: number, payload?: unknown) => void, fail: (status: number, message: string) => void): void {
    const hostRef = (body.host as { ref?: unknown } | undefined)?.ref;
    if (typeof hostRef !== 'string' || this.resolve(hostRef)?.resource !== 'hosts') return fail(400, `host: Invalid reference ${String(hostRef)}`);
    const volumeRef = (body.volume as { ref?: unknown } | undefined)?.ref;
    const target = typeof volumeRef === 'string' ? this.resolve(volumeRef) : undefined;
    let mapped: string[];
    if (target?.resource === 'volumes') mapped = [volumeRef as string];
    else if (target?.resource === 'snapshots') {
      if (!target.object.is_exposable) return fail(400, `Snapshot ${String(target.object.name)} is not exposable`);
      mapped = this.referencing('volsnaps', 'snapshot', volumeRef as string).map((volsnap) => `/volsnaps/${volsnap.id}`);
    } else return fail(400, `volume: Invalid reference ${String(volumeRef)}`);
    const ofHost = this.referencing('mappings', 'host', hostRef);
    if (ofHost.some((mapping) => mapped.includes((mapping.volume as { ref: string }).ref))) {
      return fail(409, `mappings: ${String(target.object.name)} is already mapped to host ${String(this.resolve(hostRef)!.object.name)}`);
    }
    const used = new Set(ofHost.map((mapping) => Number(mapping.lun)));
    const created = mapped.map((ref) => {
      let lun = 1;
      while (used.has(lun)) lun++;
      used.add(lun);
      return this.put('mappings', { volume: { ref }, host: { ref: hostRef }, lun });
    });
    send(201, created[0]);
  }

  /** Why the array refuses to delete `object`, if it does. */
  private deleteRefusal(resource: string, object: K2Object): string | undefined {
    if (resource === 'volumes' && this.mappingsOf(`/volumes/${object.id}`).length > 0) return `Volume ${String(object.name)} is mapped to a host`;
    if (resource === 'snapshots' && this.mappingsOf(`/snapshots/${object.id}`).length > 0) return `Snapshot ${String(object.name)} is mapped to a host`;
    if (resource === 'hosts' && this.referencing('mappings', 'host', `/hosts/${object.id}`).length > 0) return `Host ${String(object.name)} has mappings`;
    return undefined;
  }

  /** A volume made outside Cinder (in its own group), for adoption tests; `mapped` maps it to a host of its own. */
  addVolume(name: string, sizeGb: number, mapped = false): void {
    const group = this.put('volume_groups', { name: `${name}-group`, quota: 0, is_dedup: true });
    const volume = this.put('volumes', { name, size: sizeGb * KIB_PER_GIB, volume_group: { ref: `/volume_groups/${group.id}` } });
    if (!mapped) return;
    const host = this.put('hosts', { name: `${name}-host`, type: 'Linux', host_group: null });
    this.put('mappings', { volume: { ref: `/volumes/${volume.id}` }, host: { ref: `/hosts/${host.id}` }, lun: 1 });
  }

  private put(resource: string, attributes: Record<string, unknown>): K2Object {
    const object = { ...attributes, id: this.nextId++ } as K2Object;
    this.objects.get(resource)!.set(object.id, object);
    return object;
  }

  protected handle(req: IncomingMessage, res: ServerResponse, url: URL, body: Record<string, unknown>): void {
    const send = (status: number, payload?: unknown) => sendJson(res, status, payload);
    const fail = (status: number, message: string) => send(status, { error_msg: message, error_code: status, ...(this.echoHeaders ? { request_headers: req.headers } : {}) });

    if (!this.authorized(req)) return fail(401, 'Authentication credentials were not provided or are incorrect');

    if (url.pathname === '/api/v2' || url.pathname === '/api/v2/') {
      return send(200, { resources: Object.fromEntries(Object.entries(RESOURCES).map(([name, path]) => [name, { url: path }])) });
    }
    const path = url.pathname.replace(/^\/api\/v2/, '');
    const resource = Object.keys(RESOURCES)
      .sort((a, b) => b.length - a.length)
      .find((name) => path === RESOURCES[name] || path.startsWith(`${RESOURCES[name]}/`));
    if (!resource) return fail(404, `No such resource: ${path}`);
    const idText = path.slice(RESOURCES[resource].length + 1);
    const id = idText ? Number(idText) : undefined;

    const fault = this.faults.find((f) => f.count > 0 && (!f.method || f.method === req.method) && (!f.resource || f.resource === resource));
    if (fault) {
      fault.count--;
      return fail(fault.status, fault.message ?? 'Request refused');
    }

    if (resource === 'system/state') {
      if (req.method !== 'GET') return fail(405, 'Method not allowed');
      return send(200, {
        hits: [{ id: 1, rest_api_version: this.restApiVersion, system_version: '6.1.0', state: 'online', iscsi_qualified_target_name: this.targetIqn }],
        total: 1,
        limit: 100,
        offset: 0,
      });
    }
    if (resource === 'system/net_ips') {
      if (req.method !== 'GET') return fail(405, 'Method not allowed');
      const hits = this.netIps.map((ip, index) => ({ id: index + 1, netmask: '255.0.0.0', ...ip }));
      return send(200, { hits, total: hits.length, limit: 100, offset: 0 });
    }
    if (resource === 'system/capacity') {
      if (req.method !== 'GET') return fail(405, 'Method not allowed');
      const provisioned = this.provisionedKib();
      return send(200, {
        hits: [{ id: 1, total: this.totalKib, free: this.freeKib, provisioned, provisioned_volumes: provisioned, provisioned_snapshots: 0 }],
        total: 1,
        limit: 100,
        offset: 0,
      });
    }

    const table = this.objects.get(resource)!;
    switch (req.method) {
      case 'GET': {
        if (id !== undefined) {
          const object = table.get(id);
          return object ? send(200, object) : fail(404, `${resource} ${id} not found`);
        }
        let hits = [...table.values()];
        for (const [key, value] of url.searchParams) {
          if (key.startsWith('__')) continue;
          const field = key.endsWith('.ref') ? key.slice(0, -4) : key;
          hits = hits.filter((object) => {
            const actual = object[field];
            if (!(actual && typeof actual === 'object')) return String(actual) === value;
            const ref = (actual as { ref?: string }).ref;
            // A view's mappings are its volsnaps' mappings: a search by the view finds them.
            if (resource === 'mappings' && field === 'volume' && ref?.startsWith('/volsnaps/')) {
              return ref === value || this.viewOf(ref) === value;
            }
            return ref === value;
          });
        }
        const limit = Number(url.searchParams.get('__limit') ?? 100);
        const offset = Number(url.searchParams.get('__offset') ?? 0);
        return send(200, { hits: hits.slice(offset, offset + limit), total: hits.length, limit, offset });
      }
      case 'POST': {
        if (resource === 'host_iqns') return this.postHostIqn(body, send, fail);
        if (resource === 'mappings') return this.postMapping(body, send, fail);
        if (resource === 'hosts' && body.type !== undefined && !HOST_TYPES.includes(String(body.type))) {
          return fail(400, `type: "${String(body.type)}" is not a valid choice.`);
        }
        if (resource === 'snapshots') {
          const snapshot = this.snapshotFrom(body);
          if (typeof snapshot === 'string') return fail(400, snapshot);
          body = snapshot;
        }
        if (typeof body.name !== 'string' || !body.name) return fail(400, 'name: This field is required.');
        if (this.named(resource, body.name)) return fail(409, `${resource} with name ${body.name} already exists`);
        if (resource === 'volumes') {
          const ref = (body.volume_group as { ref?: string } | undefined)?.ref;
          const groupId = ref?.startsWith('/volume_groups/') ? Number(ref.split('/').pop()) : NaN;
          if (!this.objects.get('volume_groups')!.has(groupId)) return fail(400, `volume_group: Invalid reference ${ref}`);
          if (typeof body.size !== 'number' || body.size <= 0) return fail(400, 'size: A valid integer is required.');
        }
        const created = this.put(resource, resource === 'hosts' ? { type: 'Linux', host_group: null, ...body } : body);
        if (resource === 'snapshots') this.putVolsnaps(created);
        return send(201, created);
      }
      case 'PATCH': {
        const object = id !== undefined ? table.get(id) : undefined;
        if (!object) return fail(404, `${resource} ${idText} not found`);
        if (resource === 'volumes' && typeof body.size === 'number' && body.size < Number(object.size)) return fail(400, 'size: Volume size cannot be reduced');
        Object.assign(object, body);
        return send(200, object);
      }
      case 'DELETE': {
        const object = id !== undefined ? table.get(id) : undefined;
        if (!object) return fail(404, `${resource} ${idText} not found`);
        if (resource === 'volume_groups') {
          const members = this.referencing('volumes', 'volume_group', `/volume_groups/${object.id}`);
          if (members.length > 0) return fail(400, `Volume group ${object.name} is not empty`);
          // Assumed from Cinder, which deletes a group's snapshots itself before deleting the group.
          const snapshots = this.referencing('snapshots', 'volume_group', `/volume_groups/${object.id}`);
          if (snapshots.length > 0) return fail(400, `Volume group ${object.name} has ${snapshots.length} snapshot(s)`);
        }
        const refusal = this.deleteRefusal(resource, object);
        if (refusal) return fail(400, refusal);
        table.delete(object.id);
        if (resource === 'hosts') {
          // The host's iqns go with it.
          for (const iqn of this.referencing('host_iqns', 'host', `/hosts/${object.id}`)) this.objects.get('host_iqns')!.delete(iqn.id);
        }
        if (resource === 'snapshots') {
          for (const volsnap of this.referencing('volsnaps', 'snapshot', `/snapshots/${object.id}`)) this.objects.get('volsnaps')!.delete(volsnap.id);
        }
        return send(204);
      }
      default:
        return fail(405, 'Method not allowed');
    }
  }
}
