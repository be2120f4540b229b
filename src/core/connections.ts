/**
 * Connections (cinderlib's Connection): a volume exported to a host (connect/disconnect), or
 * attached on the server's own host (attach/detach). Each is a mutation of the volume like the
 * others, through the lifecycle's one routine: the volume's lock, the intent written first (a
 * connection record with this server's lease), the driver's export calls, the outcome. A failed
 * connect is undone on the array or target and leaves no record.
 */

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { ConnectionInfo, Connector, ExportOperations, HostAccess, LocalAttachment, VolumeDriver, VolumeRef } from '../../drivers/kit/types.js';
import type { AttachedDevice, HostAttacher, HostAttachers } from './attach/attacher.js';
import { iscsiDataProblem, refuseUntrusted, storedConnectionInfo, storedConnector, storedDevice } from '../model/untrusted.js';
import type { ConnectionRecord } from '../model/connection.js';
import { StorageError, describeError, isStorageError } from '../base/errors.js';
import { Replay, replayedRecord, volumeKey, type LifecycleDependencies, type LifecycleHost, type VolumeLifecycle } from './lifecycle.js';
import type { RequestEntry } from '../store/store.js';
import { isRecoverable } from '../store/recovery.js';
import type { VolumeRecord } from '../model/volume.js';
import type { DryRunAnswer } from './dry-run.js';
import type { Mutation } from './lifecycle.js';

export interface ConnectionDependencies extends LifecycleDependencies {
  attachers: HostAttachers;
  /** os-brick's connector properties of the server's own host. */
  ownConnector(): Promise<Connector>;
}

/** What connections need of their backend. */
export type ConnectionHost = Pick<LifecycleHost, 'id' | 'volumeDriver' | 'ready'>;

type Opening = { info: ConnectionInfo; device: AttachedDevice | null };

export class ConnectionLifecycle {
  constructor(
    private readonly host: ConnectionHost,
    private readonly volumes: VolumeLifecycle,
    private readonly deps: ConnectionDependencies,
  ) {}

  /** Cinder's validate_connector: the keys the driver's protocol needs. */
  async validateConnector(connector: Connector): Promise<void> {
    const driver = await this.host.ready();
    this.checkConnector(this.requireExports(driver), connector);
  }

  /** Cinder's create_export + initialize_connection for `connector`; the volume becomes in-use. */
  async connect(volumeId: string, connector: Connector, request?: RequestEntry): Promise<ConnectionRecord> {
    const driver = await this.host.ready();
    this.checkConnector(this.requireExports(driver), connector);
    return this.open(volumeId, connector, undefined, request);
  }

  async planConnect(volumeId: string, connector: Connector): Promise<DryRunAnswer> {
    const driver = await this.host.ready();
    this.checkConnector(this.requireExports(driver), connector);
    return this.volumes.dryRun(this.opening(volumeId, connector, undefined));
  }

  /** Connects the volume to the server's own host and attaches it there (a loop device for image files, the iSCSI initiator otherwise). */
  async attach(volumeId: string): Promise<ConnectionRecord> {
    const driver = await this.host.ready();
    // Refused before anything is touched when this host cannot attach.
    const attacher = await this.requireAttacher(driver);
    return this.open(volumeId, await this.deps.ownConnector(), attacher);
  }

  async planAttach(volumeId: string): Promise<DryRunAnswer> {
    const driver = await this.host.ready();
    const attacher = await this.requireAttacher(driver);
    return this.volumes.dryRun(this.opening(volumeId, await this.deps.ownConnector(), attacher));
  }

  /** Cinder's terminate_connection, then remove_export once the volume's last connection is gone. */
  disconnect(connectionId: string, force: boolean): Promise<void> {
    return this.close(connectionId, { force, local: false });
  }

  async planDisconnect(connectionId: string, force: boolean): Promise<DryRunAnswer> {
    return this.volumes.dryRun(await this.closing(connectionId, { force, local: false }));
  }

  /** Detaches on this host, then disconnects. */
  detach(connectionId: string): Promise<void> {
    return this.close(connectionId, { force: false, local: true });
  }

  async planDetach(connectionId: string): Promise<DryRunAnswer> {
    return this.volumes.dryRun(await this.closing(connectionId, { force: false, local: true }));
  }

  /**
   * Start-up recovery of connections a crash interrupted (section 8, issue 17): a connect cut short
   * is undone and a disconnect cut short is finished, so that no export stays live that no record
   * shows as usable and the volume's status matches what exists. One that cannot be resolved now
   * (the array does not answer) stays in error for disconnect_volume.
   */
  async resolveInterrupted(): Promise<void> {
    let after: number | undefined;
    const interrupted: ConnectionRecord[] = [];
    do {
      const page = await this.deps.store.connections.list({ backend: this.host.id, after, limit: 1000 });
      interrupted.push(
        ...page.records.filter((record) => record.status === 'error' && !record.owner && /^interrupted while (connecting|disconnecting)/.test(record.status_reason ?? '')),
      );
      after = page.nextAfter;
    } while (after !== undefined);
    for (const record of interrupted) {
      const attachment = record.device !== null || record.connection_info.driver_volume_type === 'local';
      if (attachment && !this.isOnThisHost(record)) continue; // another host's attachment: its own server detaches it
      try {
        await this.close(record.id, { force: false, local: record.device !== null });
        this.deps.log.info(
          `connection ${record.id} of volume ${record.volume_id}, ${record.status_reason!.split(':', 1)[0]}, was resolved: nothing of it is left on the array or target`,
        );
      } catch (error) {
        if (isStorageError(error) && error.code === 'NOT_FOUND') continue; // another server resolved it first
        this.warn(`resolve interrupted connection ${record.id}`, error);
      }
    }
  }

  /** After a volume grew: its devices attached on this host take the new size. */
  async resizeAttached(volumeId: string): Promise<void> {
    const driver = await this.host.ready();
    const volume = await this.deps.store.volumes.get(volumeId);
    if (!volume) return;
    for (const connection of await this.deps.store.connections.all({ volume_id: volumeId })) {
      if (!connection.device || !this.isOnThisHost(connection)) continue;
      const info = this.trustedInfo(driver, connection, this.volumes.volumeRef(volume));
      await this.deps.attachers[info.driver_volume_type]?.resize?.(info, this.trustedDevice(connection)!);
    }
  }

  /**
   * The server's own host for drivers that copy through it (Cinder's _attach_volume): export to
   * this host's connector and attach; the attachment is the copy's, not a recorded connection.
   */
  hostAccess(): HostAccess {
    return {
      cannotAttach: async () => this.attachRefusal(await this.host.ready()),
      attach: async (volume) => {
        const driver = await this.host.ready();
        const attacher = await this.requireAttacher(driver);
        const exports = this.requireExports(driver);
        const connector = await this.deps.ownConnector();
        const exported = { ...volume, ...((await exports.createExport(volume, connector)) ?? {}) };
        let info: ConnectionInfo;
        let device: AttachedDevice;
        try {
          info = await exports.initializeConnection(exported, connector);
          device = await attacher.attach(info);
        } catch (error) {
          await this.undoExport(exports, exported, connector, undefined);
          throw error;
        }
        const attachment: LocalAttachment = {
          path: device.path,
          detach: async () => {
            await attacher.detach(info, device);
            await this.undoExport(exports, exported, connector, undefined);
          },
        };
        return attachment;
      },
    };
  }

  private async open(volumeId: string, connector: Connector, attacher: HostAttacher | undefined, request?: RequestEntry): Promise<ConnectionRecord> {
    try {
      return await this.volumes.mutate(this.opening(volumeId, connector, attacher, request));
    } catch (error) {
      if (error instanceof Replay) return replayedRecord(await this.volumes.replay(error.entry, request!), 'connection');
      throw error;
    }
  }

  private opening(volumeId: string, connector: Connector, attacher: HostAttacher | undefined, request?: RequestEntry): Mutation<Opening, ConnectionRecord> {
    const local = attacher !== undefined;
    const now = new Date().toISOString();
    const record: ConnectionRecord = {
      id: randomUUID(),
      volume_id: volumeId,
      backend: this.host.id,
      status: 'detached',
      attach_mode: 'rw',
      connector,
      connection_info: {},
      device: null,
      created_at: now,
      updated_at: now,
      status_reason: null,
    };
    let volume!: VolumeRecord;
    const store = this.deps.store;
    const check = async () => {
      volume = await this.volumes.requireVolume(volumeId);
      this.volumes.requireStatus('volume', volume, ['available', 'in-use'], local ? 'attached' : 'connected');
      const driver = await this.host.ready();
      // What kind of connection this is goes in with the intent, so that what a crash leaves can be undone.
      record.connection_info = { ...this.plannedInfo(driver, volume, local) };
      const duplicate = (await store.connections.all({ volume_id: volumeId })).find((other) => sameEndpoint(other, record));
      if (duplicate) {
        throw new StorageError(
          'ALREADY_EXISTS',
          `volume ${volumeId} is already ${local ? 'attached on this host' : `connected to ${describeConnector(connector)}`} (connection ${duplicate.id}); use that connection, or remove it first (${local ? 'detach_volume' : 'disconnect_volume'})`,
        );
      }
    };
    return {
      what: `${local ? 'attach' : 'connect'} volume ${volumeId}`,
      keepsCapacity: true,
      locks: [volumeKey(volumeId)],
      begin: async () => {
        await check();
        Object.assign(record, this.volumes.claim());
        const outcome = await store.connections.insert(record, request && { ...request, object_id: record.id });
        if (outcome.inserted) {
          // In use from the intent on: a crash before the answer leaves a volume whose status says it has a connection.
          await store.volumes.update(volumeId, { status: 'in-use' }, ['available', 'in-use']);
          return;
        }
        if (outcome.existingRequest) throw new Replay(outcome.existingRequest);
        throw new StorageError('INTERNAL', `connection id ${record.id} already exists in the metadata store`);
      },
      act: async (driver) => {
        let ref = this.volumes.volumeRef(volume);
        const exported = !(local && driver.localConnection);
        try {
          let info: ConnectionInfo;
          if (!exported) {
            info = driver.localConnection!(ref);
          } else {
            const exports = this.requireExports(driver);
            const update = await exports.createExport(ref, connector);
            if (update && update.provider_auth !== undefined && update.provider_auth !== ref.provider_auth) {
              // Kept before any host can use them: every later connection of the volume gets the same credentials.
              if (update.provider_auth) this.deps.secrets.register(update.provider_auth.split(' ')[2]);
              await store.volumes.update(volumeId, { provider_auth: update.provider_auth });
              ref = { ...ref, provider_auth: update.provider_auth };
            }
            info = await exports.initializeConnection(ref, connector);
          }
          registerPasswords(this.deps.secrets, info);
          const device = attacher ? await attacher.attach(info) : null;
          return { info, device };
        } catch (error) {
          if (exported) await this.undoExport(this.requireExports(driver), ref, connector, record.id);
          throw error;
        }
      },
      finish: async ({ info, device }) => {
        try {
          await store.volumes.update(volumeId, { status: 'in-use' }, ['available', 'in-use']);
          const updated = await store.connections.update(record.id, {
            status: 'attached',
            connection_info: { ...info },
            device: device ? { ...device } : null,
            owner: null,
            lease_expires_at: null,
          });
          if (!updated) throw new StorageError('INTERNAL', `connection ${record.id} vanished from the metadata store while it was being made`);
          return updated;
        } catch (error) {
          // Nothing may stay exported that no record shows.
          const driver = await this.host.ready();
          if (device) await attacher!.detach(info, device).catch((undo: unknown) => this.warn(`detach ${device.path} after a failed record`, undo));
          if (info.driver_volume_type !== 'local') await this.undoExport(this.requireExports(driver), this.volumes.volumeRef(volume), connector, record.id);
          await store.connections.remove(record.id).catch(() => undefined);
          await this.settleVolumeStatus(volumeId).catch(() => undefined);
          throw error;
        }
      },
      fail: async (failure) => {
        // A failed connect leaves no record (the export was undone in act).
        await store.connections.remove(record.id).catch((error: unknown) => this.warn(`forget failed connection ${record.id}`, error));
        await this.settleVolumeStatus(volumeId).catch((error: unknown) => this.warn(`settle volume ${volumeId}'s status`, error));
        return failure;
      },
      plan: async () => {
        await check();
        return {
          action: local ? 'attach_volume' : 'connect_volume',
          volume_id: volumeId,
          ...(local ? { host: hostname() } : { connector }),
          driver_volume_type: record.connection_info.driver_volume_type,
        };
      },
    };
  }

  private async close(connectionId: string, how: { force: boolean; local: boolean }): Promise<void> {
    await this.volumes.mutate(await this.closing(connectionId, how));
  }

  private async closing(connectionId: string, how: { force: boolean; local: boolean }): Promise<Mutation<string[], void>> {
    const first = await this.requireConnection(connectionId);
    let connection!: ConnectionRecord;
    const check = async () => {
      connection = await this.requireConnection(connectionId);
      if (connection.owner && !isRecoverable(connection, { owner: this.deps.serverId, now: new Date().toISOString(), includeOwn: true })) {
        throw new StorageError('BACKEND_BUSY', `connection ${connectionId} is being changed by server ${connection.owner}; wait and call list_connections again`);
      }
      const device = connection.device;
      if (how.local) {
        if (!device) throw new StorageError('INVALID_ARGUMENT', `connection ${connectionId} is not attached on a host (it has no device); disconnect_volume removes it`);
        if (!this.isOnThisHost(connection)) {
          throw new StorageError(
            'INVALID_ARGUMENT',
            `connection ${connectionId} is attached on host ${String(connection.connector.host)}, not on this server's host (${hostname()}); detach it with the server there`,
          );
        }
      } else if (device && !how.force) {
        throw new StorageError(
          'IN_USE',
          `connection ${connectionId} is attached on host ${String(connection.connector.host)} as ${String(device.path)}; detach_volume detaches it and disconnects, or disconnect_volume with force: true drops it`,
        );
      }
    };
    return {
      what: `${how.local ? 'detach' : 'disconnect'} connection ${connectionId}`,
      keepsCapacity: true,
      locks: [volumeKey(first.volume_id)],
      begin: async () => {
        await check();
        await this.deps.store.connections.update(connectionId, this.volumes.claim());
      },
      act: async (driver) => {
        const problems: string[] = [];
        // With force every step is tried and the record goes whatever fails; without it, the first failure stops.
        const step = async (what: string, run: () => Promise<void>) => {
          try {
            await run();
          } catch (error) {
            if (!how.force) throw error;
            problems.push(`${what}: ${describeError(error)}`);
          }
        };
        const volume = await this.deps.store.volumes.get(connection.volume_id);
        const ref: VolumeRef = volume ? this.volumes.volumeRef(volume) : { id: connection.volume_id, size: 0, pool_name: '', provider_location: null };
        const info = this.trustedInfo(driver, connection, ref);
        const type = info.driver_volume_type;
        const attacher = type ? this.deps.attachers[type] : undefined;
        // A device recorded here goes first; a loop device a crash left before it was recorded is found by its file.
        if (attacher && this.isOnThisHost(connection) && (connection.device || type === 'local')) {
          await step('detach on this host', async () => attacher.detach(info, this.trustedDevice(connection)));
        }
        if (type !== 'local') {
          const exports = this.requireExports(driver);
          await step('terminate the connection', async () => {
            await exports.terminateConnection(ref, storedConnector(`connection ${connectionId}`, connection.connector), how.force);
          });
          if (!(await this.exportStillNeeded(connection.volume_id, connectionId))) await step('remove the export', () => exports.removeExport(ref));
        }
        return problems;
      },
      finish: async (problems) => {
        for (const problem of problems) this.deps.log.warn(`connection ${connectionId} of volume ${connection.volume_id} dropped (force) although ${this.deps.secrets.redact(problem)}`);
        await this.deps.store.connections.remove(connectionId);
        await this.settleVolumeStatus(connection.volume_id);
      },
      fail: async (failure) => {
        await this.deps.store.connections
          .update(connectionId, { status: 'error', status_reason: `${how.local ? 'detach' : 'disconnect'} failed: ${failure.message}`, owner: null, lease_expires_at: null })
          .catch((error: unknown) => this.warn(`record the failed disconnect of ${connectionId}`, error));
        return new StorageError(failure.code, `${failure.message}. Connection ${connectionId} is kept in status "error"; disconnect_volume with force: true drops it`);
      },
      plan: async () => {
        await check();
        const exported = connection.connection_info.driver_volume_type !== 'local';
        return {
          action: how.local ? 'detach_volume' : 'disconnect_volume',
          connection_id: connectionId,
          volume_id: connection.volume_id,
          ...(how.local ? { device: connection.device?.path } : {}),
          remove_export: exported && !(await this.exportStillNeeded(connection.volume_id, connectionId)),
        };
      },
    };
  }

  /**
   * The connection_info a host attacher may act on: a local image's is the driver's own path for
   * the volume, never the recorded one; an iSCSI one is the record's, once it passes section 11.
   */
  private trustedInfo(driver: VolumeDriver, connection: ConnectionRecord, volume: VolumeRef): ConnectionInfo {
    const info = storedConnectionInfo(`connection ${connection.id}`, connection.connection_info);
    if (info.driver_volume_type === 'local' && driver.localConnection) return driver.localConnection(volume);
    // An attacher logs in with these only when a device was recorded (a connect cut short has none yet).
    if (info.driver_volume_type === 'iscsi' && connection.device) refuseUntrusted(`connection ${connection.id}`, iscsiDataProblem(info.data));
    return info;
  }

  private trustedDevice(connection: ConnectionRecord): AttachedDevice | null {
    return storedDevice(`connection ${connection.id}`, connection.device);
  }

  /** The volume is in-use while any connection is left, available once none is. */
  private async settleVolumeStatus(volumeId: string): Promise<void> {
    if ((await this.deps.store.connections.all({ volume_id: volumeId })).length === 0) await this.deps.store.volumes.update(volumeId, { status: 'available' }, ['in-use']);
  }

  /** Other connections that go through the volume's export (local attachments of image files do not). */
  private async exportStillNeeded(volumeId: string, leaving: string | undefined): Promise<boolean> {
    return (await this.deps.store.connections.all({ volume_id: volumeId })).some((other) => other.id !== leaving && other.connection_info.driver_volume_type !== 'local');
  }

  /** Takes back what a failed connect did on the array or target; failures are logged, the first error is what the caller hears. */
  private async undoExport(exports: ExportOperations, volume: VolumeRef, connector: Connector, connectionId: string | undefined): Promise<void> {
    await exports.terminateConnection(volume, connector, true).catch((error: unknown) => this.warn(`undo the connection of volume ${volume.id}`, error));
    if (!(await this.exportStillNeeded(volume.id, connectionId).catch(() => true))) {
      await exports.removeExport(volume).catch((error: unknown) => this.warn(`undo the export of volume ${volume.id}`, error));
    }
  }

  /** The connection_info kind written with the intent: a local file's own path, or the export's protocol. */
  private plannedInfo(driver: VolumeDriver, volume: VolumeRecord, local: boolean): Record<string, unknown> {
    if (local && driver.localConnection) return { ...driver.localConnection(this.volumes.volumeRef(volume)) };
    return { driver_volume_type: exportType(driver), data: {} };
  }

  private checkConnector(exports: ExportOperations, connector: Connector): void {
    const missing = exports.requiredConnectorKeys.filter((key) => isBlank(connector[key]));
    if (missing.length > 0) {
      const hint = missing.includes('initiator') ? " (iSCSI: the host's IQN, from its /etc/iscsi/initiatorname.iscsi)" : '';
      throw new StorageError('INVALID_ARGUMENT', `backend "${this.host.id}": the connector lacks ${missing.join(', ')}, which the ${this.host.volumeDriver} driver needs${hint}`);
    }
  }

  private requireExports(driver: VolumeDriver): ExportOperations {
    if (!driver.exports) throw this.volumes.unsupported('export volumes to hosts', 'it keeps volumes only for this server');
    if (driver.exports.unavailable) throw new StorageError('UNSUPPORTED', driver.exports.unavailable);
    return driver.exports;
  }

  private async attachRefusal(driver: VolumeDriver): Promise<string | undefined> {
    const type = driver.localConnection ? 'local' : exportType(driver);
    const attacher = this.deps.attachers[type];
    if (!attacher) return `this server cannot attach ${type} volumes on its host`;
    const reason = await attacher.cannotAttach();
    return reason && `backend "${this.host.id}": ${reason}`;
  }

  private async requireAttacher(driver: VolumeDriver): Promise<HostAttacher> {
    const reason = await this.attachRefusal(driver);
    if (reason) throw new StorageError('UNSUPPORTED', reason);
    return this.deps.attachers[driver.localConnection ? 'local' : exportType(driver)];
  }

  private async requireConnection(connectionId: string): Promise<ConnectionRecord> {
    const record = await this.deps.store.connections.get(connectionId);
    if (!record || record.backend !== this.host.id) {
      throw new StorageError('NOT_FOUND', `connection ${connectionId} does not exist; list_connections shows the connections there are`);
    }
    return record;
  }

  private isOnThisHost(connection: ConnectionRecord): boolean {
    return connection.connector.host === hostname();
  }

  private warn(what: string, error: unknown): void {
    this.deps.log.warn(`backend "${this.host.id}": ${what} failed: ${this.deps.secrets.redact(describeError(error))}`);
  }
}

/** The driver_volume_type a driver's exports give (Cinder's FC drivers ask for wwpns). */
function exportType(driver: VolumeDriver): string {
  if (driver.exports?.connectionType) return driver.exports.connectionType;
  return driver.exports?.requiredConnectorKeys.includes('wwpns') ? 'fibre_channel' : 'iscsi';
}

/** Two connections of one volume to the same place: the same initiator (or host, without one), the same way (local or exported). */
/** A connector field as text; connectors are checked on the way in, so anything else is shown empty. */
function text(value: unknown): string {
  return typeof value === 'string' || typeof value === 'number' ? String(value) : '';
}

function sameEndpoint(a: ConnectionRecord, b: ConnectionRecord): boolean {
  const endpoint = (record: ConnectionRecord) =>
    `${record.connection_info.driver_volume_type === 'local' ? 'local' : 'export'}|${text(record.connector.initiator)}|${record.connector.initiator ? '' : text(record.connector.host)}`;
  return endpoint(a) === endpoint(b);
}

function describeConnector(connector: Connector): string {
  return connector.initiator ? `initiator ${connector.initiator} (host ${connector.host})` : `host ${connector.host}`;
}

function isBlank(value: unknown): boolean {
  return value === undefined || value === null || value === '' || (Array.isArray(value) && value.length === 0);
}

/** CHAP passwords an export hands out are secrets from then on: no log line may carry them. */
function registerPasswords(secrets: { register(value: unknown): void }, info: ConnectionInfo): void {
  for (const [key, value] of Object.entries(info.data)) if (/password/i.test(key)) secrets.register(value);
}
