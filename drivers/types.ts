import { z } from 'zod';
import type { Logger } from '../src/log.js';
import type { SecretRegistry } from '../src/secrets.js';

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
export type CopyProgress = (done: number, total: number) => void;

/**
 * Cinder's snapshot methods (create_snapshot, delete_snapshot, create_volume_from_snapshot). A
 * driver that has them offers snapshots; the core checks capacity, records intent, locks the
 * source volume and shapes errors, as for volumes.
 */
export interface SnapshotOperations {
  createSnapshot(snapshot: SnapshotRef, volume: VolumeRef): Promise<CreatedSnapshot | void>;
  /** Must succeed when the snapshot is already gone; refuses (IN_USE) one the array still needs. */
  deleteSnapshot(snapshot: SnapshotRef, volume: VolumeRef): Promise<void>;
  /** `volume.size` is the snapshot's volume_size: the core extends afterwards when more was asked. */
  createVolumeFromSnapshot(volume: CreateVolumeRequest, snapshot: SnapshotRef, progress: CopyProgress): Promise<CreatedVolume | void>;
}

/** Cinder's create_cloned_volume: a new volume holding the source's data at the moment of the call. */
export interface CloneOperations {
  /** `volume.size` is the source's size: the core extends afterwards when more was asked. */
  createClonedVolume(volume: CreateVolumeRequest, source: VolumeRef, progress: CopyProgress): Promise<CreatedVolume | void>;
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
}

export interface VolumeDriver {
  /** Cinder's do_setup + check_for_setup_error: throw a StorageError saying why it cannot serve. */
  setup(): Promise<void>;
  /**
   * Asks the array; the core caches the answer. `recount` is set when the user asked for fresh
   * figures (get_stats refresh): drivers that keep running counts recount from the source then.
   */
  getStats(request?: { recount?: boolean }): Promise<BackendStats>;
  /**
   * The space a pool really draws on (a filesystem, a volume group), when other backends may draw
   * on it too; backends whose pools name the same domain share capacity accounting.
   */
  capacityDomain?(poolName: string): string | undefined;
  createVolume(volume: CreateVolumeRequest): Promise<CreatedVolume | void>;
  extendVolume(volume: VolumeRef, newSizeGb: number): Promise<void>;
  /** Must succeed when the volume is already gone from the array. */
  deleteVolume(volume: VolumeRef): Promise<void>;
  /** Present on drivers that can take snapshots; absent ones answer UNSUPPORTED naming the driver. */
  readonly snapshots?: SnapshotOperations;
  /** Present on drivers that can clone a volume. */
  readonly clones?: CloneOperations;
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
    create: (options, context, volumeDriver) => definition.create(schema.parse(options), context, volumeDriver),
  };
}
