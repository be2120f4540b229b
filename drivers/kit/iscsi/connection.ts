import type { ConnectionInfo } from '../types.js';

/**
 * Cinder's iSCSI connection properties (initialize_connection's `data`), built in one place for
 * every driver: the target the host logs in to, the multipath lists when the driver gives them,
 * and CHAP for login and discovery. Values stay each driver's: whether the target was discovered,
 * how a portal is written, when the lists are given.
 */
export interface IscsiPath {
  iqn: string;
  /** "<address>:<port>", written as the driver writes it. */
  portal: string;
  lun: number;
}

export interface IscsiChap {
  username: string;
  /** Cinder puts the password it has, even none. */
  password: string | undefined;
}

export interface IscsiConnection {
  /** The path named in target_iqn / target_portal / target_lun. */
  target: IscsiPath;
  /** Cinder's target_discovered: false when the host is told the target, true when it is to discover it. */
  discovered: boolean;
  /** Every path, given as target_iqns / target_portals / target_luns; left out when undefined. */
  paths?: IscsiPath[];
  volumeId?: string;
  /** Login CHAP (auth_method, auth_username, auth_password). */
  chap?: IscsiChap;
  /** Discovery CHAP (discovery_auth_method, ...). */
  discoveryChap?: IscsiChap;
  /** Cinder's `encrypted` flag, when the driver states it. */
  encrypted?: boolean;
  /**
   * The target keys in the order the driver's Cinder code writes them (serialized dumps keep key
   * order); by default Cinder's ISCSITarget order: discovered, iqn, portal, lun.
   */
  targetKeyOrder?: readonly ['target_discovered', 'target_iqn', 'target_lun', 'target_portal'] | readonly ['target_discovered', 'target_iqn', 'target_portal', 'target_lun'];
}

export function iscsiConnection(connection: IscsiConnection): ConnectionInfo {
  const { target, paths, chap, discoveryChap } = connection;
  const targetKeys: Record<string, unknown> = { target_discovered: connection.discovered, target_iqn: target.iqn, target_portal: target.portal, target_lun: target.lun };
  const data: Record<string, unknown> = {};
  for (const key of connection.targetKeyOrder ?? ['target_discovered', 'target_iqn', 'target_portal', 'target_lun']) data[key] = targetKeys[key];
  if (paths) {
    Object.assign(data, {
      target_iqns: paths.map((path) => path.iqn),
      target_portals: paths.map((path) => path.portal),
      target_luns: paths.map((path) => path.lun),
    });
  }
  if (connection.volumeId !== undefined) data.volume_id = connection.volumeId;
  if (chap) Object.assign(data, { auth_method: 'CHAP', auth_username: chap.username, auth_password: chap.password });
  if (discoveryChap) {
    Object.assign(data, { discovery_auth_method: 'CHAP', discovery_auth_username: discoveryChap.username, discovery_auth_password: discoveryChap.password });
  }
  if (connection.encrypted !== undefined) data.encrypted = connection.encrypted;
  return { driver_volume_type: 'iscsi', data };
}
