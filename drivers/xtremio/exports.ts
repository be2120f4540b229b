import { randomInt } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { z } from 'zod';
import { distinctSymbolsSecret } from '../kit/iscsi/chap.js';
import { iscsiConnection, type IscsiChap, type IscsiPath } from '../kit/iscsi/connection.js';
import { mapVolumeToHost, unmapVolumeFromHosts } from '../kit/mapping/host-mapping.js';
import type { ConnectionInfo, Connector, VolumeRef } from '../kit/types.js';
import { XmsClient, arrayMessage, contentOf, count, isNotFound, isNotUnique, listSchema } from './client.js';

/**
 * Connections as XtremIOISCSIDriver makes them: an initiator group and an initiator named after
 * the IQN, CHAP credentials generated for the initiator when the cluster asks for CHAP, a lun-map
 * of the volume to the group, and the portal chosen among the cluster's iSCSI portals.
 */
export const FC_UNSUPPORTED = 'Fibre Channel connections (XtremIOFCDriver) are not implemented here; the iSCSI driver (XtremIOISCSIDriver) connects volumes';
const VOL_OBJ_NOT_FOUND = 'vol_obj_not_found';
/** Cinder's XtremIOAlreadyMappedError: any message containing it. */
const ALREADY_MAPPED = 'already_mapped';
/** Cinder's terminate_connection names lun-maps "<vol index>_<ig index>_<tg index>", the target group being the default one. */
const TARGET_GROUP_INDEX = 1;
const CHAP_USER = 'chap_user';
/**
 * Cinder's _get_password calls volume_utils.generate_password(length=12, symbolgroups=
 * string.ascii_uppercase + string.digits): its passwords are 12 distinct characters of these.
 */
const PASSWORD_SYMBOLS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const PASSWORD_LENGTH = 12;

/** XMS object ids: [guid, name, index]. */
const objectId = z.tuple([z.unknown(), z.string(), count]).rest(z.unknown());
const initiatorSchema = z
  .object({
    index: count,
    'ig-id': objectId,
    'chap-authentication-initiator-password': z.string().nullish(),
    'chap-discovery-initiator-password': z.string().nullish(),
  })
  .loose();
type Initiator = z.output<typeof initiatorSchema>;
const initiatorListSchema = z.object({ initiators: z.array(initiatorSchema) }).loose();
const initiatorGroupIdsSchema = z.object({ initiators: z.array(z.object({ 'ig-id': objectId }).loose()) }).loose();
const groupSchema = contentOf(z.object({ 'ig-id': objectId }).loose());
const groupVolumesSchema = contentOf(z.object({ 'num-of-vols': count }).loose());
const volumeIndexSchema = contentOf(z.object({ index: count }).loose());
const lunMapSchema = z.object({ lun: count, 'ig-name': z.string().optional(), 'vol-name': z.string().optional() }).loose();
type LunMap = z.output<typeof lunMapSchema>;
const lunMapListSchema = z.object({ 'lun-maps': z.array(lunMapSchema) }).loose();
const portalSchema = z.object({ 'ip-addr': z.string(), 'ip-port': count, 'port-address': z.string() }).loose();
type Portal = z.output<typeof portalSchema>;
const portalListSchema = z.object({ 'iscsi-portals': z.array(portalSchema) }).loose();
/** What a POST answers: a link to the new object, "…/types/<type>/<index>". */
const createdSchema = z.object({ links: z.array(z.object({ href: z.string().regex(/\/[a-z-]+\/\d+\/?$/, 'a link to <type>/<index>') }).loose()).min(1) }).loose();

/** The connector's initiator group, and the CHAP passwords its initiator has. */
interface InitiatorGroup {
  name: string;
  loginPassword: string | undefined;
  discoveryPassword: string | undefined;
}

interface ChapModes {
  login: boolean;
  discovery: boolean;
}

export class XtremioConnections {
  constructor(
    private readonly xms: XmsClient,
    private readonly protocol: string,
    /** Cinder's allowed_ports (xtremio_ports), lower-cased; empty allows all. */
    private readonly allowedPorts: string[],
    private readonly cleanUnusedGroups: boolean,
  ) {}

  /**
   * XtremIOISCSIDriver.initialize_connection. Finds the initiator by its port address (the IQN)
   * and uses its group; otherwise uses (or creates) the group named after the IQN and creates the
   * initiator, named after the IQN too, in it. With CHAP on, the initiator gets chap_user and
   * generated passwords (when it has none yet). Then the volume is mapped to the group, and the
   * answer names one portal chosen at random (and every portal, for multipath).
   */
  async initializeConnection(volume: VolumeRef, connector: Connector): Promise<ConnectionInfo> {
    if (this.protocol === 'FC') {
      throw this.xms.error('UNSUPPORTED', `connect volume ${volume.id}: ${FC_UNSUPPORTED}`);
    }
    const iqn = this.initiatorNames(connector)[0];
    const cluster = await this.xms.currentCluster();
    const chap: ChapModes = {
      login: (cluster['chap-authentication-mode'] ?? 'disabled') !== 'disabled',
      discovery: (cluster['chap-discovery-mode'] ?? 'disabled') !== 'disabled',
    };
    const { host: group, mapping } = await mapVolumeToHost<InitiatorGroup, LunMap>({
      findHost: async () => {
        const initiator = await this.findInitiator(iqn);
        return initiator && (await this.groupOf(volume, iqn, initiator, chap));
      },
      createHost: () => this.createInitiator(volume, iqn, chap),
      createMapping: (found) => this.createLunMap(volume, found.name),
    });
    const { target, paths } = await this.iscsiPaths(mapping);
    const credentials = (password: string | undefined): IscsiChap => ({ username: CHAP_USER, password });
    return iscsiConnection({
      target,
      discovered: false,
      paths,
      // Cinder's _get_iscsi_properties (1.0.13): no volume_id, the LUN before the portal.
      targetKeyOrder: ['target_discovered', 'target_iqn', 'target_lun', 'target_portal'],
      chap: chap.login ? credentials(group.loginPassword) : undefined,
      discoveryChap: chap.discovery ? credentials(group.discoveryPassword) : undefined,
    });
  }

  /**
   * XtremIOVolumeDriver.terminate_connection: deletes the lun-map named "<vol index>_<ig index>_1"
   * of every group the connector's initiators are in (one already gone is a success), then, with
   * xtremio_clean_unused_ig, deletes each such group whose num-of-vols is 0 (a failure there is
   * only logged). A volume already gone from the array has no access left: that is a success here
   * (Cinder raises NotFound). Cinder keeps the map while other attachments of the volume on the
   * same host remain; the core only disconnects a connector whose connections are all gone.
   */
  async terminateConnection(volume: VolumeRef, connector: Connector): Promise<void> {
    const xms = this.xms;
    const names = this.initiatorNames(connector);
    const operation = `disconnect volume ${volume.id} from ${names.join(', ')}`;
    const found = await xms.request('GET', 'volumes', { operation: `${operation}: read the volume`, query: xms.withClusterName({ name: volume.id, prop: 'index' }) });
    if (isNotFound(found)) {
      xms.context.log.warn(`${operation}: the volume is not on the array; nothing is mapped`);
      return;
    }
    const volumeIndex = xms.parse(volumeIndexSchema, found, `${operation}: read the volume`).content.index;
    const clean = (group: number) => `${operation}: remove initiator group ${group} if unused`;
    await unmapVolumeFromHosts<number>({
      findHosts: () => this.initiatorGroupIndexes(names),
      unmap: async (group) => {
        const mapName = `${volumeIndex}_${group}_${TARGET_GROUP_INDEX}`;
        const unmap = `${operation}: remove lun-map ${mapName}`;
        const response = await xms.request('DELETE', 'lun-maps', { operation: unmap, query: xms.withClusterName({ name: mapName }) });
        if (isNotFound(response)) xms.context.log.warn(`${unmap}: lun map not found`);
        else if (response.status >= 300) throw xms.fail(unmap, response, arrayMessage(response));
      },
      removeUnused: this.cleanUnusedGroups
        ? {
            isUnused: async (group) => {
              const read = await xms.request('GET', `initiator-groups/${group}`, { operation: clean(group), query: xms.withClusterName({ prop: 'num-of-vols' }) });
              return xms.parse(groupVolumesSchema, read, clean(group)).content['num-of-vols'] === 0;
            },
            removeHost: async (group) => {
              const removed = await xms.request('DELETE', `initiator-groups/${group}`, { operation: clean(group), query: xms.withClusterName({}) });
              if (removed.status >= 300) throw xms.fail(clean(group), removed, arrayMessage(removed));
            },
            // Cinder only warns: the volume is disconnected either way.
            onFailure: (group, error) =>
              xms.context.log.warn(`${clean(group)}: failed to clean the initiator group without mappings: ${error instanceof Error ? error.message : String(error)}`),
          }
        : undefined,
    });
  }

  /** Cinder's _get_initiator_names: the IQN (iSCSI), or the WWPNs written with colons (FC). */
  initiatorNames(connector: Connector): string[] {
    if (this.protocol === 'FC') {
      const wwpns = connector.wwpns;
      if (!Array.isArray(wwpns) || wwpns.length === 0 || wwpns.some((wwpn) => typeof wwpn !== 'string' || !wwpn)) {
        throw this.xms.error('INVALID_ARGUMENT', 'the connector has no wwpns (a list of WWPNs), which Fibre Channel needs');
      }
      return wwpns.map((wwpn) => (wwpn.includes(':') ? wwpn : (wwpn.match(/.{1,2}/g) ?? []).join(':')));
    }
    if (typeof connector.initiator !== 'string' || !connector.initiator) {
      throw this.xms.error('INVALID_ARGUMENT', 'the connector has no initiator (an iSCSI IQN), which iSCSI needs');
    }
    return [connector.initiator];
  }

  /** No initiator yet: the group named after the IQN (made when absent), and the initiator in it with new CHAP passwords. */
  private async createInitiator(volume: VolumeRef, iqn: string, chap: ChapModes): Promise<InitiatorGroup> {
    const group = (await this.findGroup(iqn)) ?? (await this.createGroup(iqn));
    const body: Record<string, unknown> = { 'initiator-name': iqn, 'ig-id': iqn, 'port-address': iqn };
    const [loginPassword, discoveryPassword] = this.addAuth(body, chap.login, chap.discovery);
    const operation = `create initiator ${iqn}`;
    const response = await this.xms.request('POST', 'initiators', { operation, body: this.xms.withClusterId(body) });
    if (response.status < 300) return { name: group['ig-id'][1], loginPassword, discoveryPassword };
    // Unlike Cinder: an initiator another connect made meanwhile is used as found.
    const initiator = isNotUnique(response) ? await this.findInitiator(iqn) : undefined;
    if (!initiator) throw this.xms.fail(operation, response, arrayMessage(response));
    return this.groupOf(volume, iqn, initiator, chap);
  }

  /** The group of an initiator on the array, with its CHAP passwords, adding those the cluster asks for and it lacks. */
  private async groupOf(volume: VolumeRef, iqn: string, initiator: Initiator, chap: ChapModes): Promise<InitiatorGroup> {
    let loginPassword = this.secret(initiator['chap-authentication-initiator-password']);
    let discoveryPassword = this.secret(initiator['chap-discovery-initiator-password']);
    const name = initiator['ig-id'][1];
    const group = await this.findGroup(name);
    if (!group) throw this.xms.error('NOT_FOUND', `connect volume ${volume.id}: initiator ${iqn} is in initiator group ${name}, which the XMS does not have`);
    // CHAP was turned on after the initiator was made: give it credentials now, as Cinder does.
    // Unlike Cinder, a missing discovery password is added even when the login one is there.
    const addLogin = chap.login && !loginPassword;
    const addDiscovery = chap.discovery && !discoveryPassword;
    if (addLogin || addDiscovery) {
      this.xms.context.log.info(`initiator ${iqn} has no CHAP password while the cluster uses CHAP: adding it`);
      const body: Record<string, unknown> = {};
      const [login, discovery] = this.addAuth(body, addLogin, addDiscovery);
      const operation = `set CHAP credentials of initiator ${iqn}`;
      const response = await this.xms.request('PUT', `initiators/${initiator.index}`, { operation, body: this.xms.withClusterId(body) });
      if (response.status >= 300) throw this.xms.fail(operation, response, arrayMessage(response));
      loginPassword = login ?? loginPassword;
      discoveryPassword = discovery ?? discoveryPassword;
    }
    return { name: group['ig-id'][1], loginPassword, discoveryPassword };
  }

  /** Cinder's _add_auth: chap_user and a new password for each CHAP kind asked. */
  private addAuth(body: Record<string, unknown>, login: boolean, discovery: boolean): [string | undefined, string | undefined] {
    let loginPassword: string | undefined;
    let discoveryPassword: string | undefined;
    if (login) {
      loginPassword = this.newPassword();
      Object.assign(body, { 'initiator-authentication-user-name': CHAP_USER, 'initiator-authentication-password': loginPassword });
    }
    if (discovery) {
      discoveryPassword = this.newPassword();
      Object.assign(body, { 'initiator-discovery-user-name': CHAP_USER, 'initiator-discovery-password': discoveryPassword });
    }
    return [loginPassword, discoveryPassword];
  }

  /** Cinder's _get_password (see PASSWORD_SYMBOLS), from a cryptographic source; registered as a secret at once. */
  private newPassword(): string {
    return this.secret(distinctSymbolsSecret(PASSWORD_SYMBOLS, PASSWORD_LENGTH))!;
  }

  /** A CHAP password (made here or read from the array): registered so that logs and answers mask it. */
  private secret(value: string | null | undefined): string | undefined {
    if (!value) return undefined;
    this.xms.context.secrets.register(value);
    return value;
  }

  /** Cinder's get_initiator: v1 reads it by name (the port address), v2 filters on port-address and wants exactly one. */
  private async findInitiator(portAddress: string): Promise<Initiator | undefined> {
    const xms = this.xms;
    const operation = `find initiator ${portAddress}`;
    if (xms.api === 'v1') {
      const response = await xms.request('GET', 'initiators', { operation, query: { name: portAddress } });
      if (isNotFound(response)) return undefined;
      return xms.parse(contentOf(initiatorSchema), response, operation).content;
    }
    const response = await xms.request('GET', 'initiators', {
      operation,
      query: xms.withClusterName({ full: '1' }),
      filters: [`port-address:eq:${portAddress}`],
    });
    const initiators = xms.parse(initiatorListSchema, response, operation).initiators;
    return initiators.length === 1 ? initiators[0] : undefined;
  }

  /** Cinder's get_initiators_igs: the indexes of the groups the initiators are in (initiators not on the array have none). */
  private async initiatorGroupIndexes(portAddresses: string[]): Promise<number[]> {
    const xms = this.xms;
    if (xms.api === 'v2' && xms.xms42) {
      const operation = `find the initiator groups of ${portAddresses.join(', ')}`;
      const response = await xms.request('GET', 'initiators', {
        operation,
        query: xms.withClusterName({ full: '1', prop: 'ig-id' }),
        filters: [portAddresses.map((address) => `port-address:eq:${address}`).join(',')],
      });
      return [...new Set(xms.parse(initiatorGroupIdsSchema, response, operation).initiators.map((initiator) => initiator['ig-id'][2]))];
    }
    const indexes = new Set<number>();
    for (const address of portAddresses) {
      const initiator = await this.findInitiator(address);
      if (initiator) indexes.add(initiator['ig-id'][2]);
    }
    return [...indexes];
  }

  /** Cinder's _get_ig: the group's content, or undefined when the XMS has no group of that name. */
  private async findGroup(name: string) {
    const operation = `find initiator group ${name}`;
    const response = await this.xms.request('GET', 'initiator-groups', { operation, query: this.xms.withClusterName({ name }) });
    if (isNotFound(response)) return undefined;
    return this.xms.parse(groupSchema, response, operation).content;
  }

  /** Cinder's _create_ig: POST {ig-name}, then read it back by name. */
  private async createGroup(name: string) {
    const operation = `create initiator group ${name}`;
    const response = await this.xms.request('POST', 'initiator-groups', { operation, body: this.xms.withClusterId({ 'ig-name': name }) });
    // Unlike Cinder, a group another connect made meanwhile is used as found.
    if (response.status >= 300 && !isNotUnique(response)) throw this.xms.fail(operation, response, arrayMessage(response));
    const group = await this.findGroup(name);
    if (!group) throw this.xms.error('BACKEND_UNAVAILABLE', `${operation}: failed to create the initiator group (the XMS does not list it)`);
    return group;
  }

  /**
   * Cinder's create_lun_map: POST {ig-id, vol-id} and read the new lun-map back through the link
   * answered; a volume already mapped to the group (already_mapped) is found instead.
   */
  private async createLunMap(volume: VolumeRef, groupName: string): Promise<LunMap> {
    const xms = this.xms;
    const operation = `map volume ${volume.id} to initiator group ${groupName}`;
    const response = await xms.request('POST', 'lun-maps', { operation, body: xms.withClusterId({ 'ig-id': groupName, 'vol-id': volume.id }) });
    if (response.status >= 300) {
      const message = arrayMessage(response) ?? '';
      if (response.status === 400 && message.includes(ALREADY_MAPPED)) {
        xms.context.log.info(`${operation}: volume already mapped, reading the lun-map`);
        return this.findLunMap(groupName, volume.id);
      }
      if (response.status === 400 && message === VOL_OBJ_NOT_FOUND) throw xms.error('NOT_FOUND', `${operation}: the array has no volume named ${volume.id} (${message})`);
      if (isNotFound(response)) throw xms.error('NOT_FOUND', `${operation}: the array has no such volume or initiator group (${message})`);
      throw xms.fail(operation, response, message || undefined);
    }
    const link = XmsClient.linked(xms.parse(createdSchema, response, operation).links[0].href);
    const read = `${operation}: read ${link}`;
    return xms.parse(contentOf(lunMapSchema), await xms.request('GET', link, { operation: read, query: xms.withClusterName({}) }), read).content;
  }

  /** Cinder's find_lunmap: v2 filters on vol-name and ig-name; v1 reads every lun-map (skipping ones gone meanwhile). */
  private async findLunMap(groupName: string, volumeName: string): Promise<LunMap> {
    const xms = this.xms;
    const operation = `find the lun-map of volume ${volumeName} to initiator group ${groupName}`;
    if (xms.api === 'v2') {
      const response = await xms.request('GET', 'lun-maps', {
        operation,
        query: xms.withClusterName({ full: '1' }),
        filters: [`vol-name:eq:${volumeName}`, `ig-name:eq:${groupName}`],
      });
      const map = xms.parse(lunMapListSchema, response, operation)['lun-maps'][0];
      if (!map) throw xms.error('NOT_FOUND', `${operation}: the XMS said the volume is mapped but lists no such lun-map`);
      return map;
    }
    const links = xms.parse(listSchema('lun-maps'), await xms.request('GET', 'lun-maps', { operation }), operation)['lun-maps'] as Array<{ href: string }>;
    for (const { href } of links) {
      const index = href.replace(/\/$/, '').split('/').at(-1);
      const response = await xms.request('GET', `lun-maps/${index}`, { operation });
      if (isNotFound(response)) continue;
      const map = xms.parse(contentOf(lunMapSchema), response, operation).content;
      if (map['ig-name'] === groupName && map['vol-name'] === volumeName) return map;
    }
    throw xms.error('NOT_FOUND', `${operation}: the XMS said the volume is mapped but lists no such lun-map`);
  }

  /**
   * Cinder's _get_iscsi_properties: portals' ip-addr without the prefix length, filtered by
   * xtremio_ports; one chosen at random for target_portal/target_iqn, and all of them (with the
   * LUN repeated) in target_portals/target_iqns/target_luns, which Cinder always returns.
   */
  private async iscsiPaths(lunMap: LunMap): Promise<{ target: IscsiPath; paths: IscsiPath[] }> {
    const allowed = (await this.iscsiPortals())
      .map((portal) => ({ ...portal, 'ip-addr': portal['ip-addr'].split('/')[0] }))
      .filter((portal) => this.allowedPorts.length === 0 || this.allowedPorts.includes(portal['ip-addr'].toLowerCase()));
    if (allowed.length === 0)
      throw this.xms.error(
        'BACKEND_UNAVAILABLE',
        'there are no accessible iSCSI targets on the system' + (this.allowedPorts.length ? ` (xtremio_ports allows ${this.allowedPorts.join(', ')})` : ''),
      );
    const paths = allowed.map((portal) => ({
      iqn: portal['port-address'],
      portal: `${isIPv6(portal['ip-addr']) ? `[${portal['ip-addr']}]` : portal['ip-addr']}:${portal['ip-port']}`,
      lun: lunMap.lun,
    }));
    return { target: paths[randomInt(paths.length)], paths };
  }

  /** Cinder's get_iscsi_portals: v2 lists them in full; v1 lists their names and reads each. */
  private async iscsiPortals(): Promise<Portal[]> {
    const xms = this.xms;
    const operation = 'list iSCSI portals';
    if (xms.api === 'v2') {
      return xms.parse(portalListSchema, await xms.request('GET', 'iscsi-portals', { operation, query: xms.withClusterName({ full: '1' }) }), operation)['iscsi-portals'];
    }
    const names = (xms.parse(listSchema('iscsi-portals'), await xms.request('GET', 'iscsi-portals', { operation }), operation)['iscsi-portals'] as Array<{ name?: string }>)
      .map((portal) => portal.name)
      .filter((name): name is string => !!name);
    const portals: Portal[] = [];
    for (const name of names) {
      const read = `read iSCSI portal ${name}`;
      const response = await xms.request('GET', 'iscsi-portals', { operation: read, query: { name } });
      if (isNotFound(response)) throw xms.error('BACKEND_UNAVAILABLE', `iscsi portal, ${name}, not found`);
      portals.push(xms.parse(contentOf(portalSchema), response, read).content);
    }
    return portals;
  }
}
