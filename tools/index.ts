import type { ToolDefinition } from './define.js';
import attachVolume from './attach_volume.js';
import connectVolume from './connect_volume.js';
import detachVolume from './detach_volume.js';
import disconnectVolume from './disconnect_volume.js';
import listConnections from './list_connections.js';
import validateConnector from './validate_connector.js';
import createSnapshot from './create_snapshot.js';
import createVolume from './create_volume.js';
import deleteSnapshot from './delete_snapshot.js';
import revertToSnapshot from './revert_to_snapshot.js';
import deleteVolume from './delete_volume.js';
import extendVolume from './extend_volume.js';
import updateVolume from './update_volume.js';
import getStats from './get_stats.js';
import getSnapshot from './get_snapshot.js';
import getVolume from './get_volume.js';
import listBackends from './list_backends.js';
import listSnapshots from './list_snapshots.js';
import listVolumes from './list_volumes.js';
import poolNames from './pool_names.js';
import listSupportedDrivers from './list_supported_drivers.js';
import listUnmanaged from './list_unmanaged.js';
import manageVolume from './manage_volume.js';
import unmanageVolume from './unmanage_volume.js';

/** Every MCP tool, in the order clients list them. */
export const TOOLS: readonly ToolDefinition[] = [
  listBackends,
  getStats,
  poolNames,
  listVolumes,
  getVolume,
  createVolume,
  extendVolume,
  updateVolume,
  deleteVolume,
  listSnapshots,
  getSnapshot,
  createSnapshot,
  deleteSnapshot,
  revertToSnapshot,
  validateConnector,
  connectVolume,
  listConnections,
  disconnectVolume,
  attachVolume,
  detachVolume,
  listSupportedDrivers,
  listUnmanaged,
  manageVolume,
  unmanageVolume,
];
