import { z } from 'zod';
import type { Logger } from '../../src/base/log.js';
import type { SecretRegistry } from '../../src/base/secrets.js';

/**
 * The single interface every driver implements. A new array is a folder under drivers/ that
 * exports a DriverDefinition; the core (src/backend.ts) owns metadata, capacity checks,
 * locking and error shaping, so drivers only talk to their array.
 */

/** A volume as the driver sees it. Array objects are named `volume-<id>`, never after user text. */
export interface VolumeRef {
  id: string;
  size: number; // GiB
  pool_name: string;
  /** Whatever the driver returned from createVolume, if anything. */
  provider_location?: string | null;
  /**
   * Cinder's provider_auth ("CHAP <username> <password>"), as an export's createExport returned it:
   * a secret, kept in the metadata store so every connection of the volume gets the same credentials.
   */
  provider_auth?: string | null;
}

export interface CreateVolumeRequest extends VolumeRef {
  /** Display text; drivers must never put it on a command line or in an array object name. */
  name: string;
  description: string;
  bootable: boolean;
}

export interface CreatedVolume {
  provider_location?: string;
}

/** A snapshot as the driver sees it. Array objects are named after the snapshot id (`snapshot-<id>` or the array's own scheme). */
export interface SnapshotRef {
  id: string;
  volume_id: string;
  /** GiB: the source volume's size when the snapshot was taken. */
  volume_size: number;
  /** Whatever the driver returned from createSnapshot, if anything. */
  provider_location?: string | null;
}

export interface CreatedSnapshot {
  provider_location?: string;
}

/**
 * Told how far a long copy has got (bytes done of bytes in all); the core turns it into MCP
 * progress notifications for clients that asked for them.
 */
export interface CopyProgress {
  /** Throws (a StorageError) once the client cancelled the call: copies call it between chunks and clean up on the way out. */
  (done: number, total: number): void;
  /** Aborted when the client cancels the call (notifications/cancelled): a copy running a command stops it. */
  readonly signal?: AbortSignal;
}

/**
 * Cinder's snapshot methods (create_snapshot, delete_snapshot, create_volume_from_snapshot). A
 * driver that has them offers snapshots; the core checks capacity, records intent, locks the
 * source volume and shapes errors, as for volumes.
 */
export interface SnapshotOperations {
  /**
   * Why this backend cannot make snapshots or volumes from them on its host now (LVM without
   * device-mapper): the core answers UNSUPPORTED with it and capabilities say so; deleting the
   * snapshots there are still works.
   */
  unavailable?: string;
  /** `progress` gets the bytes copied where the snapshot is a copy (the file driver's); array snapshots need not call it. */
  createSnapshot(snapshot: SnapshotRef, volume: VolumeRef, progress?: CopyProgress): Promise<CreatedSnapshot | void>;
  /** Must succeed when the snapshot is already gone; refuses (IN_USE) one the array still needs. */
  deleteSnapshot(snapshot: SnapshotRef, volume: VolumeRef): Promise<void>;
  /** `volume.size` is the snapshot's volume_size: the core extends afterwards when more was asked. */
  createVolumeFromSnapshot(volume: CreateVolumeRequest, snapshot: SnapshotRef, progress: CopyProgress): Promise<CreatedVolume | void>;
  /**
   * Cinder's revert_to_snapshot: the volume's bytes become the snapshot's, and it keeps its own
   * size (at least the snapshot's). Absent: UNSUPPORTED.
   */
  revertToSnapshot?(volume: VolumeRef, snapshot: SnapshotRef, progress: CopyProgress): Promise<void>;
  /** Why this backend cannot revert now (reads only; checked before anything is touched), or undefined. */
  cannotRevert?(): Promise<string | undefined>;
}

/** Cinder's create_cloned_volume: a new volume holding the source's data at the moment of the call. */
export interface CloneOperations {
  /** Why this backend cannot clone on its host now; the core answers UNSUPPORTED with it. */
  unavailable?: string;
  /** True when the driver cannot clone a connected (in-use) volume, as Cinder's K2 driver. */
  readonly refusesConnectedSource?: boolean;
  /** `volume.size` is the source's size: the core extends afterwards when more was asked. */
  createClonedVolume(volume: CreateVolumeRequest, source: VolumeRef, progress: CopyProgress): Promise<CreatedVolume | void>;
}

/** An array volume as get_manageable_volumes sees it: the core drops those its records know. */
export interface ManageableVolume {
  /** Its name on the array: Cinder's reference `source-name`. */
  name: string;
  /** GiB, rounded up. */
  sizeGb: number;
  /** The object id its name carries where it follows this driver's naming (volume-<id>, <id>, cv-<id>): a record may know it. */
  carriedId?: string;
  /** Why it may not be adopted now (connected to a host, open, destroyed), or undefined. */
  notSafe?: string;
  /**
   * Why it may not be adopted, where finding out costs a call per volume (RBD asks each image's
   * watchers): asked only for the volumes a page of list_unmanaged shows, and the one adopted.
   */
  unsafeBecause?: () => Promise<string | undefined>;
}

/**
 * Cinder's get_manageable_volumes and manage_existing: array volumes this backend could adopt.
 * Unmanaging needs nothing of the driver (the record is forgotten; the array is not touched).
 */
export interface ManageOperations {
  /** Every volume on the array this backend could hold (not snapshots, pools or temporary objects); reads only. */
  listManageable(): Promise<ManageableVolume[]>;
  /**
   * Adopts `name` (one listManageable gave) as `volume`: renamed to this driver's name for it where
   * Cinder's driver renames; `volume.size` is the listed size, rounded up.
   */
  manageExisting(volume: VolumeRef, name: string): Promise<CreatedVolume | void>;
}

/**
 * os-brick's connector dict: who is connecting. iSCSI drivers need `initiator` (an IQN), FC drivers
 * `wwpns` and `wwnns`; unknown keys are passed through, as Cinder does.
 */
export interface Connector {
  host: string;
  initiator?: string;
  ip?: string;
  multipath?: boolean;
  platform?: string;
  os_type?: string;
  wwpns?: string[];
  wwnns?: string[];
  [key: string]: unknown;
}

/**
 * What Cinder's initialize_connection returns: `driver_volume_type` ('iscsi', or 'local' for a
 * file on the server's own host) and the `data` an initiator needs (target_iqn, target_portal,
 * target_lun, auth_method, auth_username, auth_password, ...). Passwords in it are secrets: the
 * core masks them in every answer and log.
 */
export interface ConnectionInfo {
  driver_volume_type: string;
  data: Record<string, unknown>;
}

/** What createExport asks the core to keep with the volume (Cinder's model update). */
export interface ExportUpdate {
  provider_auth?: string | null;
}

/**
 * Cinder's export methods. The core calls, for a connect: createExport (every time: it must be
 * idempotent) then initializeConnection; for a disconnect: terminateConnection, then removeExport
 * once the volume's last connection is gone. A failed connect is undone the same way. The core
 * holds the volume's lock around all of them and records every step in the metadata store.
 */
export interface ExportOperations {
  /** Why this backend cannot export at all (an option to set, a missing kernel feature); every call is then refused with it. */
  readonly unavailable?: string;
  /** Connector keys the protocol needs (Cinder's validate_connector): ['initiator'] for iSCSI. */
  readonly requiredConnectorKeys: readonly string[];
  /**
   * The driver_volume_type of the connections it makes, where the connector keys do not tell it
   * ('rbd'): the core attaches them on its own host with the attacher of that type.
   */
  readonly connectionType?: string;
  /** Makes the volume exportable (a tgt target); arrays that map per host may do nothing here. */
  createExport(volume: VolumeRef, connector: Connector): Promise<ExportUpdate | void>;
  /** Gives `connector` access to the volume and says how to reach it. */
  initializeConnection(volume: VolumeRef, connector: Connector): Promise<ConnectionInfo>;
  /**
   * Takes `connector`'s access away. Must succeed when the access is already gone. `force` is the
   * user's disconnect_volume force: drivers may skip checks that would refuse.
   */
  terminateConnection(volume: VolumeRef, connector: Connector, force: boolean): Promise<void>;
  /** Removes the volume's export once nothing is connected; must succeed when it is already gone. */
  removeExport(volume: VolumeRef): Promise<void>;
  /** After a connected volume was extended: make the export show the new size (tgt-admin --update -f). */
  extendExport?(volume: VolumeRef): Promise<void>;
  /** Looks at the target's host once the driver is set up (LIO: has it configfs?), so `unavailable` tells before any export. */
  probe?(): Promise<void>;
}

/** A volume attached on the server's own host: a block device path, and how to let go of it. */
export interface LocalAttachment {
  readonly path: string;
  detach(): Promise<void>;
}

/**
 * The server's own host, for drivers that copy data through it as Cinder's generic copies do
 * (attach the source and the destination, copy, detach), Kaminario's among them.
 */
export interface HostAccess {
  /** Why this host cannot attach this backend's volumes (no kernel iSCSI initiator, say); undefined when it can. */
  cannotAttach(): Promise<string | undefined>;
  /**
   * Attaches one of the backend's volumes here: its own export with this host's connector, then the
   * host's initiator. The caller must detach it (even when the copy fails).
   */
  attach(volume: VolumeRef): Promise<LocalAttachment>;
}

/** Capacities are GiB numbers, or Cinder's 'unknown'/'infinite' markers. */
export type Capacity = number | 'unknown' | 'infinite';

export interface PoolStats {
  pool_name: string;
  total_capacity_gb: Capacity;
  free_capacity_gb: Capacity;
  provisioned_capacity_gb?: number;
  allocated_capacity_gb?: number;
  reserved_percentage: number;
  max_over_subscription_ratio: number | string;
  thin_provisioning_support: boolean;
  thick_provisioning_support: boolean;
  [key: string]: unknown;
}

/** The Cinder stats dict (get_volume_stats). */
export interface BackendStats {
  volume_backend_name: string;
  vendor_name: string;
  driver_version: string;
  storage_protocol: string;
  pools: PoolStats[];
  [key: string]: unknown;
}

export interface DriverContext {
  backendName: string;
  /** Scoped logger; lines are redacted on the way out. */
  log: Logger;
  /** Register derived secrets (e.g. an Authorization header value) so they are masked too. */
  secrets: SecretRegistry;
  /** The project's data directory (known_hosts and such live here unless configured). */
  dataDir: string;
  /** cinderlib's global root_helper: prefix for privileged commands ('' runs them directly). */
  rootHelper: string;
  /**
   * False for `cinderlib-mcp check`, which only looks: it must not be refused (nor refuse the
   * server) over resources a running server holds for its life, such as the file driver's folder.
   */
  serving: boolean;
  /**
   * True when several servers share the metadata store (PostgreSQL): every capacity decision is
   * taken under a cluster-wide lock on stats read for it, so a resource several servers reach (a
   * file backend's shared folder) may be served by all of them. False or absent: this process is
   * the only one deciding, and keeps what it serves to itself.
   */
  sharedStore?: boolean;
  /** The server's own host, for drivers that copy data through it. */
  host: HostAccess;
}

/** What a stats request says about the counts a driver keeps (see VolumeDriver.getStats). */
export interface StatsRequest {
  recount?: boolean;
  unchangedElsewhere?: boolean;
}

export interface VolumeDriver {
  /** Cinder's do_setup + check_for_setup_error: throw a StorageError saying why it cannot serve. */
  setup(): Promise<void>;
  /**
   * Asks the array; the core caches the answer. `recount` is set when the user asked for fresh
   * figures (get_stats refresh), or when another server sharing the metadata store may have changed
   * the pool since: drivers that keep running counts recount from the source then.
   * `unchangedElsewhere` is set when the core knows no other server changed the pool since this
   * driver last counted (servers sharing a store tell each other through it): running counts are
   * current, so a driver that recounts for every answer on a shared store may skip it.
   */
  getStats(request?: StatsRequest): Promise<BackendStats>;
  /**
   * The space a pool really draws on (a filesystem, a volume group), when other backends may draw
   * on it too; backends whose pools name the same domain share capacity accounting.
   */
  capacityDomain?(poolName: string): string | undefined;
  /**
   * After setup: options whose identity is not their written value, by option name (the file
   * driver's volumes_dir on a shared store is its folder's id: the same folder may be mounted at
   * other paths on other hosts). Servers sharing a store compare these instead.
   */
  identity?(): Record<string, string>;
  createVolume(volume: CreateVolumeRequest): Promise<CreatedVolume | void>;
  extendVolume(volume: VolumeRef, newSizeGb: number): Promise<void>;
  /** Must succeed when the volume is already gone from the array. */
  deleteVolume(volume: VolumeRef): Promise<void>;
  /** Present on drivers that can take snapshots; absent ones answer UNSUPPORTED naming the driver. */
  readonly snapshots?: SnapshotOperations;
  /** Present on drivers that can clone a volume. */
  readonly clones?: CloneOperations;
  /** Present on drivers that can export volumes to hosts (connect_volume); absent ones answer UNSUPPORTED. */
  readonly exports?: ExportOperations;
  /** Present on drivers that can list and adopt volumes no record knows (list_unmanaged, manage_volume). */
  readonly manage?: ManageOperations;
  /**
   * Drivers whose volumes are files or devices on the server's own host: how to reach one there
   * without an export (os-brick's 'local' connection: `{driver_volume_type: 'local', data: {device_path}}`).
   * attach_volume uses it instead of exporting.
   */
  localConnection?(volume: VolumeRef): ConnectionInfo;
  /**
   * GiB a new snapshot of `volume` really takes from the pool (a thick LVM snapshot's
   * copy-on-write space); 0 when the array shares blocks (thin snapshots). Default 0.
   */
  snapshotSizeGb?(volume: VolumeRef): number;
  /** Extra lines for `cinderlib-mcp check` (e.g. which provisioning mode was chosen and why). */
  notes?(): string[];
  /** Releases connections; called on shutdown. */
  close(): Promise<void>;
}

/** What a driver's create receives: the output of `z.object()` of its option schemas (see drivers/options.ts). */
export type DriverOptions<Shape extends z.ZodRawShape> = z.output<z.ZodObject<z.core.util.Writeable<Shape>>>;

export interface DriverDefinition<Shape extends z.ZodRawShape = z.ZodRawShape> {
  /** One line for the README. */
  readonly summary: string;
  /** The driver's own options with Cinder's names and defaults (see drivers/options.ts). */
  readonly options: Shape;
  /** The driver's own version (its DRIVER_VERSION, Cinder's VERSION attribute), listed by list_supported_drivers. */
  readonly version?: string;
  /**
   * What list_supported_drivers gives as `desc` (Cinder's class docstring) per class name of the
   * catalog's class paths, where one class differs from the summary (say, FC connections not made).
   */
  readonly classDescriptions?: Readonly<Record<string, string>>;
  /** Cinder's CI_WIKI_NAME for the driver this follows (the CI that tests Cinder's driver), listed by list_supported_drivers. */
  readonly ciWikiName?: string;
  /**
   * Builds the driver. `volumeDriver` is the volume_driver string as configured, for drivers
   * whose protocol depends on the class path (iSCSI vs FC). A property, not a method, so that a
   * definition for one option shape is not taken for another.
   */
  readonly create: (options: DriverOptions<Shape>, context: DriverContext, volumeDriver: string) => VolumeDriver;
}

/**
 * Declares a driver: its create gets the types of its own option schemas, and what it returns is
 * a definition any list of drivers can hold (the catalog, the README generator). That definition's
 * create parses what it is given against the schemas before building the driver, so the option
 * types never cross an unchecked boundary; for options the core already validated the parse
 * changes nothing. Options the driver does not declare are passed through, as given.
 */
export function defineDriver<Shape extends z.ZodRawShape>(definition: DriverDefinition<Shape>): DriverDefinition {
  const schema = z.object(definition.options).loose();
  return {
    summary: definition.summary,
    options: definition.options,
    version: definition.version,
    classDescriptions: definition.classDescriptions,
    ciWikiName: definition.ciWikiName,
    create: (options, context, volumeDriver) => definition.create(schema.parse(options), context, volumeDriver),
  };
}
