import { randomUUID } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { z } from 'zod';
import { iscsiConnection, type IscsiPath } from '../kit/iscsi/connection.js';
import { mapVolumeToHost, unmapVolumeFromHosts } from '../kit/mapping/host-mapping.js';
import type { ConnectionInfo, Connector, VolumeRef } from '../kit/types.js';
import { initiatorChapPassword } from './chap.js';
import { ERR, arrayMessage, type PureClient } from './client.js';
import { GENERATED_HOST_NAME, pureVolumeName, type PureVolumes } from './volumes.js';

/**
 * PureISCSIDriver's connections: the array host holding the connector's IQN (made when there is
 * none, named as Cinder names it, CHAP on it with use_chap_auth), a connection of the volume to
 * it with the LUN the array picks, and every iSCSI port of the ready controllers whose portal is
 * in pure_iscsi_cidr(_list). Disconnect deletes the connection, and the host when this driver
 * made it and nothing else is connected to it. Work for one connector host runs one at a time,
 * as under Cinder's 'pure-{connector[host]}' lock.
 */
/** Cinder's HOST_CREATE_MAX_RETRIES: a host made or removed by someone else meanwhile is looked up again. */
const HOST_CREATE_MAX_RETRIES = 5;
const INVALID_CHARACTERS = /[^-a-zA-Z0-9]/gu;
/** os-brick's SCSI_ADDRESSING_SAM2, which Cinder's driver announces. */
const ADDRESSING_SAM2 = 'SAM2';
/** Cinder's _get_wwn: '36', Pure's OUI, '0', then the volume serial. */
const WWN_PREFIX = '3624a9370';

const hostSchema = z.object({ name: z.string() }).loose();
type Host = z.output<typeof hostSchema>;
const connectionSchema = z.object({ lun: z.number().int().nullish() }).loose();
const controllerSchema = z.object({ name: z.string() }).loose();
const portSchema = z.object({ name: z.string(), iqn: z.string().nullish(), portal: z.string().nullish() }).loose();
const interfaceSchema = z.object({ name: z.string() }).loose();

export interface PureConnectionSettings {
  useChap: boolean;
  personality?: string;
  /** pure_iscsi_cidr_list when set, else [pure_iscsi_cidr]. */
  cidrs: string[];
  apiToken: string;
}

/** A host made or removed meanwhile: Cinder's PureRetryableException. */
class Retry extends Error {}

export class PureConnections {
  private readonly allowed: BlockList;
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(
    private readonly array: PureClient,
    private readonly volumes: PureVolumes,
    private readonly settings: PureConnectionSettings,
  ) {
    this.allowed = cidrBlockList(settings.cidrs);
  }

  /** Runs `work` after every earlier work of the same connector host (Cinder's coordination lock). */
  serialized<T>(connector: Connector, work: () => Promise<T>): Promise<T> {
    const key = String(connector.host);
    const run = (this.queues.get(key) ?? Promise.resolve()).then(work, work);
    const tail = run.catch(() => undefined);
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return run;
  }

  /** PureISCSIDriver.initialize_connection (one array: no replication pods). */
  async initializeConnection(volume: VolumeRef, connector: Connector): Promise<ConnectionInfo> {
    const volumeName = pureVolumeName(volume.id);
    const iqn = String(connector.initiator);
    const chap = this.settings.useChap ? this.chapCredentials(connector, iqn) : undefined;
    // The ports first (Cinder reads them after connecting): no portal allowed means nothing is connected.
    const ports = await this.targetPorts();
    const lun = await this.connect(volumeName, connector, iqn, chap);
    const paths: IscsiPath[] = ports.map((port) => ({ iqn: port.iqn, portal: port.portal, lun }));
    const info = iscsiConnection({ target: paths[0], discovered: false, paths, chap: chap && { username: chap.username, password: chap.password } });
    const { serial } = await this.volumes.read(volumeName, `read volume ${volumeName}`);
    Object.assign(info.data, { discard: true, addressing_mode: ADDRESSING_SAM2, wwn: `${WWN_PREFIX}${serial}`.toLowerCase() });
    return info;
  }

  /**
   * Cinder's terminate_connection: each local host holding the IQN loses its connection to the
   * volume, and is removed when this driver named it and it has no connection left.
   */
  async terminateConnection(volume: VolumeRef, connector: Connector): Promise<void> {
    const volumeName = pureVolumeName(volume.id);
    await unmapVolumeFromHosts<Host>({
      findHosts: async () => {
        const hosts = await this.hostsOf(String(connector.initiator));
        if (hosts.length === 0) this.array.context.log.warn(`disconnect volume ${volumeName}: no host on the array holds ${String(connector.initiator)}; nothing to remove`);
        return hosts;
      },
      // _disconnect_host does both: the connection, then the host when unused and ours.
      unmap: (host) => this.volumes.disconnectHost(host.name, volumeName),
    });
  }

  /** Cinder's _connect, retried while hosts come and go under it (HOST_CREATE_MAX_RETRIES). */
  private async connect(volumeName: string, connector: Connector, iqn: string, chap: Chap | undefined): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      try {
        const { mapping } = await mapVolumeToHost<Host, number>({
          findHost: async () => {
            const [host] = await this.hostsOf(iqn);
            if (host && chap) this.checkReusable(host, iqn);
            if (host) this.array.context.log.info(`re-using the existing host ${host.name}`);
            return host;
          },
          createHost: () => this.createHost(connector, iqn, chap),
          createMapping: (host) => this.connectHostToVolume(host.name, volumeName),
          undoHost: (host) => this.removeHostQuietly(host.name),
        });
        return mapping;
      } catch (error) {
        if (!(error instanceof Retry) || attempt >= HOST_CREATE_MAX_RETRIES) throw error instanceof Retry ? this.array.error('BACKEND_BUSY', error.message) : error;
        this.array.context.log.debug(`connect volume ${volumeName}: ${error.message}; trying again`);
      }
    }
  }

  /** Cinder refuses CHAP on a host it did not make, whose credentials it cannot set. */
  private checkReusable(host: Host, iqn: string): void {
    if (GENERATED_HOST_NAME.test(host.name)) return;
    throw this.array.error(
      'IN_USE',
      `Unable to re-use a host that is not managed by Cinder with use_chap_auth=True: host ${host.name} holds ${iqn}. Remove IQN ${iqn} from that host (or turn use_chap_auth off)`,
    );
  }

  /** Cinder's host creation: POST hosts with the IQN, then personality and CHAP when configured. */
  private async createHost(connector: Connector, iqn: string, chap: Chap | undefined): Promise<Host> {
    const name = purityHostName(connector);
    this.array.context.log.info(`creating host ${name} with IQN ${iqn}`);
    const operation = `create host ${name}`;
    const response = await this.array.request('POST', '/hosts', { names: name }, operation, { iqns: [iqn] });
    if (response.status >= 300) {
      const message = arrayMessage(response) ?? '';
      if (response.status === 400 && (message.includes(ERR.ALREADY_EXISTS) || message.includes(ERR.ALREADY_IN_USE))) throw new Retry(`${operation}: ${message}`);
      throw this.array.failure(operation, response);
    }
    try {
      if (this.settings.personality) await this.patchHost(name, { personality: this.settings.personality }, `set the personality of host ${name}`);
      if (chap) await this.patchHost(name, { chap: { host_user: chap.username, host_password: chap.password } }, `set the CHAP credentials of host ${name}`);
    } catch (error) {
      await this.removeHostQuietly(name);
      throw error;
    }
    return { name };
  }

  private async patchHost(name: string, body: Record<string, unknown>, operation: string): Promise<void> {
    const response = await this.array.request('PATCH', '/hosts', { names: name }, operation, body);
    if (response.status < 300) return;
    if (response.status === 400 && arrayMessage(response)?.includes(ERR.HOST_NOT_EXIST)) throw new Retry(`${operation}: the host went away`);
    throw this.array.failure(operation, response);
  }

  /** Cinder's _connect_host_to_vol: the new connection's LUN, or the existing one's. */
  private async connectHostToVolume(hostName: string, volumeName: string): Promise<number> {
    const operation = `connect volume ${volumeName} to host ${hostName}`;
    const query = { host_names: hostName, volume_names: volumeName };
    const response = await this.array.request('POST', '/connections', query, operation);
    let connections;
    if (response.status >= 300) {
      const message = arrayMessage(response) ?? '';
      if (response.status === 400 && message.includes(ERR.HOST_NOT_EXIST)) throw new Retry(`${operation}: ${message}`);
      if (!(response.status === 400 && message.includes(ERR.ALREADY_EXISTS))) throw this.array.failure(operation, response);
      this.array.context.log.debug(`${operation}: the connection exists already (${message})`);
      connections = await this.array.items(connectionSchema, 'GET', '/connections', query, `${operation}: read the existing connection`);
    } else {
      connections = this.array.parse(z.object({ items: z.array(connectionSchema) }).loose(), response, operation).items;
    }
    const lun = connections[0]?.lun;
    if (typeof lun !== 'number') throw this.array.error('BACKEND_UNAVAILABLE', `${operation}: Unable to connect or find connection to host`);
    return lun;
  }

  /** Cinder's _get_host: local hosts whose IQNs include the initiator. */
  private hostsOf(iqn: string): Promise<Host[]> {
    return this.array.list(hostSchema, '/hosts', { filter: `iqns='${iqn}' and is_local` }, `find the host of ${iqn}`);
  }

  /** Removes a host this call made, when what followed failed; a failure is logged, never thrown over the first. */
  private async removeHostQuietly(name: string): Promise<void> {
    try {
      await this.array.tolerating([ERR.NOT_EXIST, ERR.EXISTING_CONNECTIONS], 'DELETE', '/hosts', { names: name }, `remove host ${name}`);
    } catch (error) {
      this.array.context.log.error(`host ${name} may be left on the array: ${(error as Error).message}`);
    }
  }

  /**
   * Cinder's _get_target_iscsi_ports (_get_valid_ports): the ports of each ready controller and
   * of LACP bonds and VIFs, those with an IQN, whose portal is in the allowed CIDRs.
   */
  private async targetPorts(): Promise<Array<{ iqn: string; portal: string }>> {
    const ports: Array<z.output<typeof portSchema>> = [];
    const controllers = await this.array.request('GET', '/controllers', { filter: "status='ready'" }, 'list the ready controllers');
    if (controllers.status === 200) {
      for (const controller of this.array.parse(z.object({ items: z.array(controllerSchema) }).loose(), controllers, 'list the ready controllers').items) {
        ports.push(...(await this.array.list(portSchema, '/ports', { filter: `name='${controller.name}.*'` }, `list the ports of ${controller.name}`)));
      }
      const bonds = await this.array.list(interfaceSchema, '/network-interfaces', { filter: "eth.subtype='lacp_bond' or eth.subtype='vif'" }, 'list LACP bonds and VIFs');
      for (const bond of bonds) ports.push(...(await this.array.list(portSchema, '/ports', { names: bond.name.toUpperCase() }, `list port ${bond.name.toUpperCase()}`)));
    } else {
      this.array.context.log.warn(`No live controllers found: ${arrayMessage(controllers) ?? `HTTP ${controllers.status}`}`);
    }
    const iscsi = ports.filter((port): port is typeof port & { iqn: string; portal: string } => !!port.iqn && !!port.portal);
    if (iscsi.length === 0) throw this.array.error('BACKEND_UNAVAILABLE', 'No iSCSI-enabled ports on target array.');
    const allowed = iscsi.filter((port) => this.portalAllowed(port.portal));
    this.array.context.log.info(`iSCSI target portals that match CIDR range: ${allowed.map((port) => port.portal).join(', ')}`);
    if (allowed.length === 0) {
      throw this.array.error(
        'BACKEND_UNAVAILABLE',
        `no iSCSI portal of the array (${iscsi.map((port) => port.portal).join(', ')}) is in ${this.settings.cidrs.join(', ')}; widen pure_iscsi_cidr or pure_iscsi_cidr_list`,
      );
    }
    return allowed.map((port) => ({ iqn: port.iqn, portal: port.portal }));
  }

  private portalAllowed(portal: string): boolean {
    const address = portal.slice(0, portal.lastIndexOf(':')).replace(/^\[|\]$/g, '');
    const family = isIP(address);
    return family !== 0 && this.allowed.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }

  /** Cinder's _get_chap_credentials: the connector's host name, and the initiator's password. */
  private chapCredentials(connector: Connector, iqn: string): Chap {
    const password = initiatorChapPassword(this.settings.apiToken, iqn);
    this.array.context.secrets.register(password);
    return { username: String(connector.host), password };
  }
}

interface Chap {
  username: string;
  password: string;
}

/**
 * Cinder's _generate_purity_host_name: the connector's host name cut to 23 characters, every
 * character but letters, digits and '-' made '-', leading '-' dropped, then the connector's
 * "system uuid" without dashes (a random one when it has none) and "-cinder".
 */
export function purityHostName(connector: Connector): string {
  const systemUuid = connector['system uuid'];
  const id = typeof systemUuid === 'string' || typeof systemUuid === 'number' ? String(systemUuid).replace(/-/g, '') : randomUUID().replace(/-/g, '');
  const name = Array.from(String(connector.host)).slice(0, 23).join('').replace(INVALID_CHARACTERS, '-').replace(/^-+/, '');
  return `${name}-${id}-cinder`;
}

/** The allowed networks, "<address>/<prefix>" each (checked by the option schema). */
export function cidrBlockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address, prefix] = cidr.split('/');
    const family = isIP(address);
    list.addSubnet(address, Number(prefix ?? (family === 6 ? 128 : 32)), family === 6 ? 'ipv6' : 'ipv4');
  }
  return list;
}
