import { z } from 'zod';
import type { ManageableVolume, VolumeRef } from '../kit/types.js';
import { BYTES_PER_GIB, compareVersions, versionNumbers } from '../kit/units.js';
import { ERR, arrayMessage, type PureClient } from './client.js';

/**
 * Volumes as Cinder's Pure driver makes them: `volume-<id>-cinder`, sizes in bytes, created by
 * `POST volumes?names=` with `{"provisioned"}` (copies: `{"source": {"name"}}`), grown by a PATCH
 * of `provisioned`, deleted by a PATCH `{"destroyed": true}` (the array keeps the name and the
 * space for its eradication delay) and, with pure_eradicate_on_delete, eradicated by DELETE.
 */
const connectionSchema = z.object({ host: z.object({ name: z.string() }).loose(), lun: z.number().int().nullish() }).loose();
const volumeSchema = z.object({ name: z.string(), serial: z.string(), provisioned: z.number(), destroyed: z.boolean().nullish() }).loose();
/** Cinder's GENERATED_NAME: hosts this driver named (and so may remove). */
export const GENERATED_HOST_NAME = /^.*-[a-f0-9]{32}-cinder$/;
/** Safe mode (default protection) exists from Purity 6.3.4 on; Cinder then says whether to apply it. */
const SAFEMODE_PURITY = [6, 3, 4];

/** Cinder's _generate_purity_vol_name for a volume named volume-<id> (Cinder's volume_name_template). */
export function pureVolumeName(volumeId: string): string {
  return `volume-${volumeId}-cinder`;
}

export class PureVolumes {
  constructor(
    private readonly array: PureClient,
    private readonly eradicateOnDelete: boolean,
  ) {}

  /**
   * Cinder's create_volume (no volume type: no QoS, no volume group). Cinder keeps the Purity name
   * as provider_id, which cinderlib's objects have and this project's records do not: the name
   * follows from the id, so nothing is kept (provider_location stays null, as Cinder's).
   */
  async createVolume(volume: VolumeRef): Promise<void> {
    const name = pureVolumeName(volume.id);
    await this.post(name, { provisioned: volume.size * BYTES_PER_GIB }, `create volume ${name}`);
  }

  /**
   * POST volumes?names=<name> and, when the array fails without saying the name was taken, makes
   * sure nothing of that name is left behind (the array may have acted before a gateway failed):
   * a volume nobody knows about must not stay on the array.
   */
  async post(name: string, body: Record<string, unknown>, operation: string): Promise<void> {
    const query = { names: name, ...(this.safeModeArray() ? { with_default_protection: false } : {}) };
    let response;
    try {
      response = await this.array.request('POST', '/volumes', query, operation, body);
    } catch (error) {
      await this.removeLeftover(name, operation);
      throw error;
    }
    if (response.status < 300) return;
    if (!(response.status === 400 && arrayMessage(response)?.includes(ERR.ALREADY_EXISTS))) await this.removeLeftover(name, operation);
    throw this.array.failure(operation, response);
  }

  /** Cinder's extend_volume: a PATCH of the new size in bytes. */
  async extendVolume(volume: VolumeRef, newSizeGb: number): Promise<void> {
    const name = pureVolumeName(volume.id);
    const operation = `extend volume ${name} to ${newSizeGb} GiB`;
    const response = await this.array.request('PATCH', '/volumes', { names: name }, operation, { provisioned: newSizeGb * BYTES_PER_GIB });
    if (response.status >= 300) throw this.array.failure(operation, response);
  }

  /**
   * Cinder's delete_volume: every host still connected to the volume is disconnected first (and
   * removed when this driver made it and nothing else is connected to it), then the volume is
   * destroyed ("does not exist" counting as done; "has been destroyed" too, here), then eradicated
   * when pure_eradicate_on_delete.
   */
  async deleteVolume(volume: VolumeRef): Promise<void> {
    const name = pureVolumeName(volume.id);
    const operation = `delete volume ${name}`;
    const connected = await this.array.request('GET', '/connections', { volume_names: name }, `${operation}: list its connections`);
    if (connected.status === 200) {
      const hosts = this.array.parse(z.object({ items: z.array(connectionSchema) }).loose(), connected, `${operation}: list its connections`).items;
      for (const connection of hosts) await this.disconnectHost(connection.host.name, name);
    }
    await this.array.tolerating([ERR.NOT_EXIST, ERR.PENDING_ERADICATION], 'PATCH', '/volumes', { names: name }, `${operation}: destroy`, { destroyed: true });
    if (this.eradicateOnDelete) await this.array.tolerating([ERR.NOT_EXIST], 'DELETE', '/volumes', { names: name }, `${operation}: eradicate`);
  }

  /**
   * Cinder's _disconnect_host: deletes the connection ("does not exist" counting as done), then,
   * for a local host (no ':' in its name) that this driver named and that has no connection left,
   * deletes the host; one another connect used meanwhile stays (Cinder's "deletion ignored").
   */
  async disconnectHost(hostName: string, volumeName: string): Promise<void> {
    const operation = `disconnect volume ${volumeName} from host ${hostName}`;
    await this.array.tolerating([ERR.NOT_EXIST, ERR.HOST_NOT_EXIST], 'DELETE', '/connections', { host_names: hostName, volume_names: volumeName }, operation);
    if (hostName.includes(':')) return;
    const listed = await this.array.tolerating([ERR.NOT_EXIST], 'GET', '/connections', { host_names: hostName }, `${operation}: list the host's connections`);
    const remaining = listed ? this.array.parse(z.object({ items: z.array(connectionSchema) }).loose(), listed, `${operation}: list the host's connections`).items : [];
    if (remaining.length > 0 || !GENERATED_HOST_NAME.test(hostName)) return;
    this.array.context.log.info(`deleting the unneeded host ${hostName}`);
    await this.array.tolerating([ERR.NOT_EXIST, ERR.EXISTING_CONNECTIONS], 'DELETE', '/hosts', { names: hostName }, `delete host ${hostName}`);
  }

  /**
   * Cinder's get_manageable_volumes: every volume, not safe while connected to a host, destroyed
   * (pending eradication), or in a pod or a volume group.
   */
  async listManageable(): Promise<ManageableVolume[]> {
    const volumes = await this.array.list(volumeSchema, '/volumes', {}, 'list volumes to manage');
    const connections = await this.array.list(
      z.object({ host: z.object({ name: z.string() }).loose().nullish(), volume: z.object({ name: z.string() }).loose() }).loose(),
      '/connections',
      {},
      'list connections',
    );
    const hostOf = new Map(connections.map((connection) => [connection.volume.name, connection.host?.name ?? 'a host']));
    return volumes.map((volume) => {
      const reasons = [
        ...(hostOf.has(volume.name) ? [`Volume connected to host ${hostOf.get(volume.name)}`] : []),
        ...(volume.destroyed ? ['Volume is deleted'] : []),
        ...(volume.name.includes('::') ? ['Volume is in a Pod'] : []),
        ...(volume.name.includes('/') ? ['Volume is in a Volume Group'] : []),
      ];
      return {
        name: volume.name,
        sizeGb: Math.ceil(volume.provisioned / BYTES_PER_GIB),
        carriedId: /^volume-(.{36})-cinder$/.exec(volume.name)?.[1],
        ...(reasons.length ? { notSafe: reasons.join(' && ') } : {}),
      };
    });
  }

  /** Cinder's manage_existing: the volume renamed volume-<id>-cinder (PATCH name), its data kept. */
  async manageExisting(volume: VolumeRef, name: string): Promise<{ provider_location: string }> {
    const target = pureVolumeName(volume.id);
    if (name !== target) {
      const operation = `rename volume ${name} to ${target}`;
      const response = await this.array.request('PATCH', '/volumes', { names: name }, operation, { name: target });
      if (response.status >= 300) throw this.array.failure(operation, response);
    }
    return { provider_location: target };
  }

  /** The volume as the array lists it (its serial gives Cinder's wwn). */
  async read(name: string, operation: string) {
    const [found] = await this.array.items(volumeSchema, 'GET', '/volumes', { names: name }, operation);
    if (!found) throw this.array.error('NOT_FOUND', `${operation}: the array lists no volume ${name}`);
    return found;
  }

  /** Destroys and eradicates what a failed create may have left; logs, never throws over the first failure. */
  private async removeLeftover(name: string, operation: string): Promise<void> {
    try {
      const found = await this.array.request('GET', '/volumes', { names: name }, `${operation}: look for a leftover`);
      if (found.status >= 300) return; // "does not exist": nothing was made
      await this.array.tolerating([ERR.NOT_EXIST, ERR.PENDING_ERADICATION], 'PATCH', '/volumes', { names: name }, `${operation}: destroy the leftover`, { destroyed: true });
      await this.array.tolerating([ERR.NOT_EXIST], 'DELETE', '/volumes', { names: name }, `${operation}: eradicate the leftover`);
      this.array.context.log.warn(`${operation}: the array made ${name} before failing; it was destroyed and eradicated`);
    } catch (error) {
      this.array.context.log.error(`${operation}: ${name} may be left on the array: ${(error as Error).message}`);
    }
  }

  private safeModeArray(): boolean {
    return compareVersions(versionNumbers(this.array.purityVersion), SAFEMODE_PURITY) >= 0;
  }
}
