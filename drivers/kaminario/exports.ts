import { z } from 'zod';
import { iscsiConnection } from '../kit/iscsi/connection.js';
import { mapVolumeToHost, unmapVolumeFromHosts } from '../kit/mapping/host-mapping.js';
import type { ConnectionInfo, Connector, VolumeRef } from '../kit/types.js';
import { hitSchema, isK2ViewName, k2VolumeName, searchSchema, type Hit, type K2Client } from './client.js';

/**
 * Connections as Cinder's kaminario_iscsi.py makes them: a K2 host per initiator (named by
 * get_initiator_host_name) holding the initiator's IQN, a mapping of the volume to that host, and
 * the LUN the array gave the mapping; the host goes when its last mapping goes. Connection work
 * runs one at a time, as under Cinder's k2_lock_name lock.
 */
/** Cinder's ISCSI_TCP_PORT: every portal is <net_ip>:3260. */
const ISCSI_TCP_PORT = 3260;
/** The host type Cinder's driver gives every host it creates. */
const HOST_TYPE = 'Linux';

const netIpSchema = z.object({ ip_address: z.string().min(1), wan_port: z.unknown().optional() }).loose();
const netIpSearchSchema = searchSchema.extend({ hits: z.array(netIpSchema) });
const targetStateSchema = z.object({ iscsi_qualified_target_name: z.string().min(1) }).loose();
const mappingSchema = hitSchema.extend({ lun: z.number().int().min(0) });
const mappingSearchSchema = searchSchema.extend({ hits: z.array(mappingSchema) });

/** The K2 object a VolumeRef stands for: a Cinder volume's "cv-<id>", or a "cview-..." view. */
interface Exposed {
  resource: 'volumes' | 'snapshots';
  name: string;
  object: Hit | undefined;
}

export interface K2ConnectionSettings {
  uniqueFqdnNetwork: boolean;
  disableDiscovery: boolean;
}

export class K2Connections {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly k2: K2Client,
    private readonly settings: K2ConnectionSettings,
  ) {}

  /** Runs connection work one at a time (Cinder's coordination lock on k2_lock_name). */
  serialized<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * kaminario_iscsi.py's initialize_connection: the portals and target IQN (get_target_info), then
   * the K2 host of the connector (created with its IQN when absent), the volume (or view) mapped to
   * it, and the LUN of that mapping. A mapping already there is reused, so a second connect of the
   * same volume from the same host answers the same LUN.
   */
  async initializeConnection(volume: VolumeRef, connector: Connector): Promise<ConnectionInfo> {
    const { portals, iqns } = await this.targetInfo();
    const lun = await this.mapToHost(volume, connector);
    const multipath = this.settings.disableDiscovery && connector.multipath;
    return iscsiConnection({
      target: { iqn: iqns[0], portal: portals[0], lun },
      discovered: true,
      ...(multipath ? { paths: portals.map((portal, i) => ({ iqn: iqns[i], portal, lun })) } : {}),
    });
  }

  /**
   * Cinder's terminate_connection: the mapping of the volume (or view) to the connector's host is
   * deleted, then the host when it has no mapping left (the K2 takes its IQNs with it). Whatever
   * is already gone counts as done.
   */
  async terminateConnection(volume: VolumeRef, connector: Connector): Promise<void> {
    const k2 = this.k2;
    const target = await this.exposed(volume);
    const hostName = k2HostName(connector, this.settings.uniqueFqdnNetwork);
    await unmapVolumeFromHosts<Hit>({
      findHosts: async () => {
        const host = await k2.find('hosts', { name: hostName }, `look up host ${hostName}`);
        if (!host) k2.context.log.warn(`disconnect ${target.name}: host ${hostName} is not on the K2; nothing to remove`);
        return host ? [host] : [];
      },
      unmap: async (host) => {
        if (!target.object) return;
        const mapping = await this.mappingOf(k2.ref(target.resource, target.object), k2.ref('hosts', host), `look up the mapping of ${target.name} to ${hostName}`);
        if (mapping) await k2.deleteById('mappings', mapping, `unmap ${target.name} from host ${hostName}`);
      },
      removeUnused: {
        isUnused: async (host) => (await k2.search('mappings', { 'host.ref': k2.ref('hosts', host), __limit: 1 }, `look up mappings of host ${hostName}`)).total === 0,
        removeHost: (host) => k2.deleteById('hosts', host, `delete host ${hostName}`),
      },
    });
  }

  /** Cinder's get_target_info: every net_ip that is not a WAN port, at 3260; the target IQN from system/state. */
  private async targetInfo(): Promise<{ portals: string[]; iqns: string[] }> {
    const ips = await this.k2.searchAs(netIpSearchSchema, 'system/net_ips', undefined, 'look up iSCSI addresses');
    const portals = ips.hits.filter((ip) => !ip.wan_port).map((ip) => `${ip.ip_address}:${ISCSI_TCP_PORT}`);
    if (portals.length === 0) throw this.k2.error('BACKEND_UNAVAILABLE', 'Unable to get ISCSI IP address from K2 (system/net_ips lists no iSCSI port)');
    const state = await this.k2.search('system/state', {}, 'read the target iqn');
    const parsed = state.hits[0] ? targetStateSchema.safeParse(state.hits[0]) : undefined;
    if (!parsed?.success) throw this.k2.error('BACKEND_UNAVAILABLE', 'Unable to get target iqn from K2 (system/state has no iscsi_qualified_target_name)');
    return { portals, iqns: portals.map(() => parsed.data.iscsi_qualified_target_name) };
  }

  /** Cinder's k2_initialize_connection; a host created here is deleted again if the mapping fails. */
  private async mapToHost(volume: VolumeRef, connector: Connector): Promise<number> {
    const k2 = this.k2;
    const target = await this.exposed(volume);
    if (!target.object) throw k2.error('NOT_FOUND', `connect ${target.name}: Unable to find it on the K2`);
    const initiator = connector.initiator;
    if (typeof initiator !== 'string' || !initiator) throw k2.error('INVALID_ARGUMENT', `connect ${target.name}: the connector has no initiator IQN`);
    const hostName = k2HostName(connector, this.settings.uniqueFqdnNetwork);
    const targetRef = k2.ref(target.resource, target.object);
    // As Cinder's _get_lun_number: a view's LUN is that of its volsnap's mapping.
    const lunOf = (lun: number, host: Hit) => (target.resource === 'snapshots' ? this.viewLun(target, targetRef, k2.ref('hosts', host), hostName) : Promise.resolve(lun));
    const { mapping: lun } = await mapVolumeToHost<Hit, number>({
      findHost: () => k2.find('hosts', { name: hostName }, `look up host ${hostName}`),
      createHost: () => this.createHost(hostName, initiator),
      findMapping: async (host) => {
        const existing = await this.mappingOf(targetRef, k2.ref('hosts', host), `look up the mapping of ${target.name} to ${hostName}`);
        return existing && lunOf(existing.lun, host);
      },
      createMapping: async (host) => {
        const operation = `map ${target.name} to host ${hostName}`;
        const response = await k2.rest.request('POST', k2.url('mappings'), { operation, body: { volume: { ref: targetRef }, host: { ref: k2.ref('hosts', host) } } });
        if (response.status >= 300) throw k2.failure(operation, response);
        return lunOf(k2.parse(mappingSchema, response, operation).lun, host);
      },
      undoHost: () => k2.deleteQuietly('hosts', hostName, `undo host ${hostName}`),
    });
    return lun;
  }

  /** Cinder's _get_host_object for an absent host: the host, then its IQN; a failure removes the host. */
  private async createHost(hostName: string, initiator: string): Promise<Hit> {
    try {
      const host = await this.k2.create('hosts', { name: hostName, type: HOST_TYPE }, `create host ${hostName}`);
      await this.k2.create('host_iqns', { iqn: initiator, host: { ref: this.k2.ref('hosts', host) } }, `add iqn ${initiator} to host ${hostName}`);
      return host;
    } catch (error) {
      await this.k2.deleteQuietly('hosts', hostName, `undo host ${hostName}`);
      throw error;
    }
  }

  private async viewLun(view: Exposed, viewRef: string, hostRef: string, hostName: string): Promise<number> {
    const volsnaps = await this.k2.search('volsnaps', { 'snapshot.ref': viewRef }, `look up volsnaps of ${view.name}`);
    const volsnap = volsnaps.hits[0];
    if (!volsnap) throw this.k2.error('BACKEND_UNAVAILABLE', `connect ${view.name}: the K2 lists no volsnap of the view`);
    const mapping = await this.mappingOf(this.k2.ref('volsnaps', volsnap), hostRef, `look up the LUN of ${view.name} on ${hostName}`);
    if (!mapping) throw this.k2.error('BACKEND_UNAVAILABLE', `connect ${view.name}: the K2 lists no mapping of its volsnap to host ${hostName}`);
    return mapping.lun;
  }

  /** The volume's K2 object: a view when provider_location names one ("cview-..."), else "cv-<id>". */
  private async exposed(volume: VolumeRef): Promise<Exposed> {
    if (volume.provider_location && isK2ViewName(volume.provider_location)) {
      const name = volume.provider_location;
      return { resource: 'snapshots', name, object: await this.k2.find('snapshots', { short_name: name }, `look up view ${name}`) };
    }
    const name = k2VolumeName(volume.id);
    return { resource: 'volumes', name, object: await this.k2.find('volumes', { name }, `look up ${name}`) };
  }

  private async mappingOf(volumeRef: string, hostRef: string, operation: string) {
    return (await this.k2.searchAs(mappingSearchSchema, 'mappings', { 'volume.ref': volumeRef, 'host.ref': hostRef }, operation)).hits[0];
  }
}

/**
 * Cinder's get_initiator_host_name: the connector's host name, or, when unique_fqdn_network is
 * false (or the connector names no host), the initiator IQN reversed; cut to 32 characters, then
 * every character outside 0-9, a-z, A-Z, '-' and '_' replaced with '_'. Characters are counted
 * as Python counts them (code points).
 */
function k2HostName(connector: Connector, uniqueFqdnNetwork: boolean): string {
  const initiator = typeof connector.initiator === 'string' ? connector.initiator : (connector.wwnns?.[0] ?? '');
  let name = Array.from(initiator).reverse().join('');
  if (uniqueFqdnNetwork && typeof connector.host === 'string') name = connector.host;
  return Array.from(name)
    .slice(0, 32)
    .join('')
    .replace(/[^0-9a-zA-Z_-]/gu, '_');
}
