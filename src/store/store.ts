/**
 * Where volume metadata lives, behind one interface (cinderlib's persistence/base.py). The
 * objects never know which storage holds them. Calls are asynchronous, so that a storage across
 * the network (PostgreSQL) is one more implementation; the in-process ones answer at once.
 */

import type { ConnectionRecord } from '../model/connection.js';
import type { SnapshotRecord, SnapshotStatus } from '../model/snapshot.js';
import type { VolumeRecord, VolumeStatus } from '../model/volume.js';

export interface VolumeQuery {
  backend?: string;
  status?: VolumeStatus;
  /** Only records whose name contains this text, case-insensitively. */
  name?: string;
  /** Only records stored after this position (exclusive); positions come from `list`. */
  after?: number;
  limit: number;
}

export interface SnapshotQuery {
  backend?: string;
  volume_id?: string;
  status?: SnapshotStatus;
  /** Only records whose name contains this text, case-insensitively. */
  name?: string;
  after?: number;
  limit: number;
}

export interface ConnectionQuery {
  backend?: string;
  volume_id?: string;
  after?: number;
  limit: number;
}

export type ConnectionPatch = Partial<Pick<ConnectionRecord, 'status' | 'status_reason' | 'connection_info' | 'device' | 'owner' | 'lease_expires_at'>>;

export type SnapshotPatch = Partial<Pick<SnapshotRecord, 'status' | 'status_reason' | 'provider_location' | 'failed_operation' | 'owner' | 'lease_expires_at'>>;

/**
 * A client's request_id, kept 24 hours with what it made: the same id with the same tool and
 * arguments answers that object again instead of making a second one (agents retry on time-outs).
 */
export interface RequestEntry {
  request_id: string;
  tool: string;
  /** The tool's arguments, canonical JSON: another call under the same id must match it. */
  fingerprint: string;
  object_kind: 'volume' | 'snapshot' | 'connection';
  object_id: string;
  created_at: string;
}

/** How long a request_id keeps answering with what it made. */
export const REQUEST_ID_TTL_MS = 24 * 60 * 60 * 1000;

/** What an insert did: wrote the record, found its id taken, or found the request_id already used. */
export type InsertOutcome = { inserted: true } | { inserted: false; existingRequest?: RequestEntry };

export type VolumePatch = Partial<
  Pick<
    VolumeRecord,
    'name' | 'description' | 'bootable' | 'status' | 'size' | 'status_reason' | 'provider_location' | 'provider_auth' | 'failed_operation' | 'owner' | 'lease_expires_at'
  >
>;

/**
 * Who asks for recovery: records under way that are abandoned (no owner, or an owner whose lease
 * ran out before `now`), and at start-up the server's own from before its restart; another live
 * server's are left alone.
 */
export interface RecoveryClaim {
  owner: string;
  now: string;
  /** True at start-up only: while the server runs, its own operations are under way, not crashed. */
  includeOwn: boolean;
}

/**
 * What is left of a deleted volume whose create never confirmed: the array may still finish that
 * create (a request in flight when the server died, or one that timed out), so the array object's
 * deterministic name is deleted again on a schedule before it is forgotten.
 */
export interface Tombstone {
  /** The id of the volume or snapshot that was forgotten. */
  object_id: string;
  kind: 'volume' | 'snapshot';
  /** For a snapshot: the volume it was taken of. */
  parent_volume_id: string | null;
  backend: string;
  pool_name: string;
  size: number;
  provider_location: string | null;
  checks_done: number;
  next_check_at: string;
}

export type RecoveredKind = 'volume' | 'snapshot' | 'connection';

/** What `cinderlib-mcp load` adds: every record of a dump, written in one transaction or not at all. */
export interface ImportBatch {
  volumes: VolumeRecord[];
  snapshots: SnapshotRecord[];
  connections: ConnectionRecord[];
}

/** One audit record (contract section 10): every call of a mutating tool, refused or not. */
export interface AuditRecord {
  time: string;
  server: string;
  /** The token's name over HTTP, the client's name from initialize over stdio. */
  client: string;
  tool: string;
  /** The call's arguments, secrets masked. */
  arguments: Record<string, unknown>;
  outcome: 'ok' | 'error';
  /** The error's text (coded, masked) when outcome is error. */
  error?: string;
  /** Present (true) on a dry run: every check ran, nothing was changed. */
  dry_run?: boolean;
}

export interface AuditQuery {
  since?: string;
  after?: number;
  limit: number;
}

/**
 * What an operation holding cluster-wide locks can learn while it runs: the locks die with the
 * database session that held them, and an operation that lost them must stop before its next
 * array call (another server may take the object from then on).
 */
export interface HeldLocks {
  /** Aborted, with a BACKEND_UNAVAILABLE StorageError as its reason, when the locks are lost. */
  readonly signal: AbortSignal;
  /** Throws that error when the locks are lost; returns otherwise. */
  check(): void;
  /**
   * Resolves once every lock is held; rejects (BACKEND_BUSY, BACKEND_UNAVAILABLE) if they cannot be.
   * Already resolved unless the holder asked for fresh keys, taken while its task runs: the task
   * then waits for it before acting on the array.
   */
  readonly acquired: Promise<void>;
}

/** A backend's identity options: per option, the value compared (a digest for secrets' kin) and the value shown. */
export type BackendFingerprint = Record<string, { compared: string; shown: string }>;

/** What another live server's backend of the same name has that differs from this server's. */
export interface BackendDisagreement {
  server: string;
  differing: Array<{ option: string; here: string; there: string }>;
}

/** What a capacity decision learns under its domain's cluster-wide lock. */
export interface CapacityRoom {
  /** GiB that other servers' operations under way hold in the domain. */
  heldByOthersGb: number;
  /**
   * The domain's change count: bumped by every server when an operation that may have changed the
   * domain's use ends, and when a lapsed hold (a dead server's) is forgotten. A server that saw
   * this count already knows every change there was: the counts it keeps are current, and it
   * need not count the array anew (the costly part of a decision).
   */
  changes: number;
}

/**
 * An operation's intent written in the same transaction as its capacity hold: durably, with the
 * hold, or not at all (one round trip and one commit instead of two of each).
 */
export type HeldIntent = { kind: 'volume'; record: VolumeRecord };

/** What a capacity decision holds: GiB, and optionally the operation's intent to write with them. */
export interface CapacityDecision {
  gb: number;
  intent?: HeldIntent;
}

/** GiB held for an operation under way on a store several servers share. */
export interface CapacityHold {
  /** Lets the GiB go and counts the domain changed; resolves to the change count after this release, when it held any. */
  release(): Promise<number | undefined>;
  /** Whether the decision's intent was written (false when its id was taken: the caller's own insert then says so). */
  readonly intentWritten: boolean;
}

/**
 * What servers sharing one store (PostgreSQL) need beyond records: cluster-wide locks, capacity
 * held by operations under way on every server, and one live server per identity. Stores that
 * serve one process (SQLite, memory) have none: the process's own locks and ledger suffice.
 * No method waits for a second database connection while holding one: any number of operations
 * may run at once.
 */
export interface SharedCoordination {
  /**
   * Runs `task` holding cluster-wide locks on every key (volume:<id>, snapshot:<id>), taken in a
   * fixed order. Waits its turn behind another server's operation, up to a bound, then rejects with
   * BACKEND_BUSY naming the key. A server that dies releases its locks; a server whose database
   * session drops loses them, and `held` says so. `fresh`: keys no other server can know yet (the
   * id of an object being made): the task starts while they are taken (see HeldLocks.acquired).
   */
  holdKeys<T>(keys: readonly string[], task: (held: HeldLocks) => Promise<T>, options?: { fresh?: boolean }): Promise<T>;
  /**
   * Capacity across servers: runs `decide` holding the capacity domain's cluster-wide lock, giving
   * it the GiB that other servers' operations under way hold in that domain and the domain's change
   * count; `decide` checks (it may throw OUT_OF_CAPACITY) and returns the GiB this operation needs,
   * which stay held, under `owner`, until `release` (or until the owner's lease lapses). `decide`
   * must not use the store.
   */
  holdCapacity(domain: string, owner: string, decide: (room: CapacityRoom) => Promise<number | CapacityDecision>): Promise<CapacityHold>;
  /**
   * Counts a change of the domain's use made without a capacity hold (a delete frees space):
   * resolves to the domain's change count after it.
   */
  noteCapacityChange(domain: string): Promise<number>;
  /** The domain's change count now (CapacityRoom.changes), read without its lock. */
  capacityChanges(domain: string): Promise<number>;
  /**
   * Takes this server's identity for the life of its database session, unless another live
   * session holds it: then the holder's description is returned. A server killed (kill -9, zombie
   * or not) frees its identity with its session, so its restart takes it back at once. `until` is
   * the registration's lease (renewed with renewLeases), for capacity holds; removed by `leave`.
   */
  join(serverId: string, description: string, until: string): Promise<{ joined: true } | { joined: false; holder: string }>;
  /**
   * Servers agree on each backend: compares `fingerprint` with those other live servers keep for
   * `backend` (under its cluster-wide lock, so two servers starting at once meet in turn). Agreed,
   * this server's fingerprint is kept (for as long as its registration lives); otherwise the first
   * server that differs, and how, is returned and nothing is kept.
   */
  agreeOnBackend(
    backend: string,
    serverId: string,
    fingerprint: BackendFingerprint,
    differ: (here: BackendFingerprint, there: BackendFingerprint) => BackendDisagreement['differing'],
  ): Promise<{ agreed: true } | ({ agreed: false } & BackendDisagreement)>;
  leave(serverId: string): Promise<void>;
}

/** A page of records in storage order, which is stable and creation-ordered. */
export interface Page<R> {
  records: R[];
  /** Position of the last record returned, for the next page; absent when this page is the last. */
  nextAfter?: number;
}

/**
 * One kind of record (volumes, snapshots, connections), the same on every engine. Nothing here
 * throws for a record that is missing or in the way: each method says what it answers then.
 * Any method rejects with StorageError BACKEND_UNAVAILABLE, naming the store, when the store
 * itself cannot answer (disk full, database unreachable).
 */
export interface RecordTable<R extends { id: string; status: string }, Patch, Query extends { limit: number }, Parent> {
  /**
   * Adds `record` and, in the same transaction, the request_id that asked for it. Resolves
   * `{inserted: false}` and writes nothing when the id is already taken (inserting twice is
   * harmless), and `{inserted: false, existingRequest}` when that request_id is already used and
   * younger than REQUEST_ID_TTL_MS.
   */
  insert(record: R, request?: RequestEntry): Promise<InsertOutcome>;
  /** The record, with updates deferred by `defer` applied; undefined, not an error, when there is none. */
  get(id: string): Promise<R | undefined>;
  /**
   * Applies `patch` (and a fresh updated_at) when the record's status is one of `expected` (any
   * status when absent); resolves to the record as written, or undefined, not an error, when the
   * record is missing or in another status. With `audit`, that record is appended to the audit log
   * in the same transaction, only when the update is written: a call's outcome and its audit
   * record are kept together or not at all (one commit instead of two).
   */
  update(id: string, patch: Patch, expected?: readonly R['status'][], audit?: AuditRecord): Promise<R | undefined>;
  /** Forgets the record; resolves false, not an error, when there was none (removing twice is harmless). */
  remove(id: string): Promise<boolean>;
  /** A page of the records matching the query's filters, after its position `after` (exclusive). */
  list(query: Query): Promise<Page<R>>;
  /** Every record of one parent (a volume's snapshots, ...), oldest first: few, so no paging. Empty when none. */
  all(parent: Parent): Promise<R[]>;
  /**
   * Keeps `patch` for a record whose update could not be written now (the store is full, say):
   * reads show it at once, and the next successful write writes it. Never throws.
   */
  defer(id: string, patch: Patch): void;
}

export interface VolumeStore {
  readonly volumes: RecordTable<VolumeRecord, VolumePatch, VolumeQuery, { snapshot_id: string }>;
  readonly snapshots: RecordTable<SnapshotRecord, SnapshotPatch, SnapshotQuery, { volume_id: string }>;
  readonly connections: RecordTable<ConnectionRecord, ConnectionPatch, ConnectionQuery, { volume_id: string }>;
  /** Present on stores several servers share (PostgreSQL). */
  readonly shared?: SharedCoordination;
  /** What the store is, for messages ("SQLite /var/lib/x.sqlite", "PostgreSQL db@host:5432"), never with a password. */
  readonly description?: string;
  /** Resolves when the store answers now; rejects (BACKEND_UNAVAILABLE, naming it) when it does not. For /healthz. */
  ping?(): Promise<void>;
  /** The entry of a request_id younger than REQUEST_ID_TTL_MS; undefined when unused or older. */
  findRequest(requestId: string): Promise<RequestEntry | undefined>;
  /**
   * Records left in a transitional status by this server before a restart, or by a server whose
   * lease lapsed, move to `error` with `reason`; those of live servers are left alone. Connections
   * are under way while they have an owner (a connect or disconnect had begun). Resolves to the
   * records moved; running it again (or on two servers at once) moves each record once.
   */
  surfaceInterrupted(
    claim: RecoveryClaim,
    reason: (record: { id: string; status: string; owner?: string | null; failed_operation?: string | null }, kind: RecoveredKind) => string,
  ): Promise<{ volumes: VolumeRecord[]; snapshots: SnapshotRecord[]; connections: ConnectionRecord[] }>;
  /** Extends the lease of every record (volume, snapshot or connection) under way that `owner` holds: the server is alive. None is fine. */
  renewLeases(owner: string, until: string): Promise<void>;
  /**
   * Adds every record of `batch` in one transaction. An id already in the store (a volume id among
   * volumes, and so on) writes nothing and rejects with StorageError ALREADY_EXISTS naming it.
   */
  importRecords(batch: ImportBatch): Promise<void>;
  /**
   * Removes a volume (or with kind 'snapshot' in the tombstone, a snapshot) record and leaves its
   * tombstone (replacing one with the same id), in one transaction. Resolves false and leaves no
   * tombstone when there is no such record.
   */
  removeLeavingTombstone(id: string, tombstone: Tombstone): Promise<boolean>;
  /** The tombstones of a backend, soonest check first; empty when none. */
  tombstones(backend: string): Promise<Tombstone[]>;
  /** Updates a tombstone's schedule, or forgets it when `next` is null; nothing happens when there is no such tombstone. */
  rescheduleTombstone(objectId: string, next: { checks_done: number; next_check_at: string } | null): Promise<void>;
  appendAudit(record: AuditRecord): Promise<void>;
  /** Audit records in the order written, from `since` (ISO time) on. */
  listAudit(query: AuditQuery): Promise<Page<AuditRecord>>;
  /** Closes the store; closing twice is harmless. */
  close(): Promise<void>;
}
