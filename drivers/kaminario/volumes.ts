import { z } from 'zod';
import type { ManageableVolume, VolumeRef } from '../kit/types.js';
import { KIB_PER_GIB } from '../kit/units.js';
import { hitSchema, k2GroupName, k2VolumeName, searchSchema, type Hit, type K2Client } from './client.js';

/**
 * A Cinder volume on the K2 is a volume group "cvg-<id>" holding a volume "cv-<id>"; sizes are KiB.
 */
const snapshotSearchSchema = searchSchema.extend({ hits: z.array(hitSchema.extend({ short_name: z.string() })) });
const volumeSearchSchema = searchSchema.extend({
  hits: z.array(hitSchema.extend({ name: z.string(), size: z.number(), volume_group: z.object({ ref: z.string() }).loose().nullish() })),
});
/** More than any K2 holds: one search lists them all. */
const EVERY = 100_000;
/** The retention policy Cinder's driver gives every snapshot (and view) it makes. */
const RETENTION_POLICY = 'Best_Effort_Retention';

export class K2Volumes {
  constructor(private readonly k2: K2Client) {}

  /** A volume group, then the volume inside it; any failure removes whatever was made. */
  /** Cinder's K2 create_volume: a volume group and its volume, named after the id (no provider_location, as Cinder's driver sets none). */
  async createVolume(volume: VolumeRef): Promise<void> {
    const groupName = k2GroupName(volume.id);
    const volumeName = k2VolumeName(volume.id);
    try {
      const group = await this.k2.create('volume_groups', { name: groupName, quota: 0, is_dedup: true }, `create volume group ${groupName}`);
      await this.k2.create('volumes', { name: volumeName, size: volume.size * KIB_PER_GIB, volume_group: { ref: this.k2.ref('volume_groups', group) } }, `create volume ${volumeName}`);
    } catch (error) {
      await this.rollBack(volumeName, groupName);
      throw error;
    }
  }

  async extendVolume(volume: VolumeRef, newSizeGb: number): Promise<void> {
    const name = k2VolumeName(volume.id);
    const found = await this.k2.find('volumes', { name }, `look up ${name}`);
    if (!found) throw this.k2.error('NOT_FOUND', `extend ${name}: the volume is not on the array`);
    const operation = `extend ${name} to ${newSizeGb} GiB`;
    const response = await this.k2.rest.request('PATCH', `${this.k2.url('volumes')}/${found.id}`, { operation, body: { size: newSizeGb * KIB_PER_GIB } });
    if (response.status >= 300) throw this.k2.failure(operation, response);
  }

  /**
   * The volume, then its group; what is already gone counts as deleted. A group that still has
   * snapshots is refused before anything is deleted: Cinder refuses such a delete above the
   * driver (or cascades through delete_snapshot first), and deletes a group's snapshots itself
   * before deleting the group rather than leaving that to the array.
   */
  async deleteVolume(volume: VolumeRef): Promise<void> {
    const groupName = k2GroupName(volume.id);
    const group = await this.k2.find('volume_groups', { name: groupName }, `look up ${groupName}`);
    if (group) await this.refuseWhileSnapshotted(groupName, group);
    await this.k2.deleteFound('volumes', { name: k2VolumeName(volume.id) });
    await this.k2.deleteFound('volume_groups', { name: groupName });
  }

  /**
   * Every K2 volume, not safe (as Cinder's manage_existing refuses them) while mapped to a host or
   * sharing its volume group with other volumes.
   */
  async listManageable(): Promise<ManageableVolume[]> {
    const volumes = await this.k2.searchAs(volumeSearchSchema, 'volumes', { __limit: EVERY }, 'list volumes to manage');
    const found: ManageableVolume[] = [];
    for (const volume of volumes.hits) {
      const mapped = (await this.k2.search('mappings', { 'volume.ref': this.k2.ref('volumes', volume), __limit: 1 }, `look up mappings of ${volume.name}`)).total;
      const group = volume.volume_group?.ref;
      const members = group ? (await this.k2.search('volumes', { 'volume_group.ref': group, __limit: 1 }, `look up the group of ${volume.name}`)).total : 0;
      const notSafe = mapped > 0 ? 'attached K2 volume' : !group ? 'not in a K2 volume group' : members !== 1 ? 'multiple volumes in K2 volume group' : undefined;
      found.push({ name: volume.name, sizeGb: Math.ceil(volume.size / KIB_PER_GIB), carriedId: /^cv-(.{36})$/.exec(volume.name)?.[1], ...(notSafe ? { notSafe } : {}) });
    }
    return found;
  }

  /** Cinder's manage_existing: the group renamed cvg-<id>, then the volume cv-<id>; the group's name is put back if the volume's rename fails. */
  async manageExisting(volume: VolumeRef, name: string): Promise<{ provider_location: string }> {
    const target = k2VolumeName(volume.id);
    const found = await this.k2.searchAs(volumeSearchSchema, 'volumes', { name }, `look up ${name}`);
    const existing = found.hits[0];
    if (!existing) throw this.k2.error('NOT_FOUND', `manage ${name}: the volume is not on the array`);
    const groupUrl = existing.volume_group?.ref;
    if (!groupUrl) throw this.k2.error('IN_USE', `manage ${name}: the volume is not in a K2 volume group`);
    const group = this.k2.parse(z.object({ name: z.string() }).loose(), await this.k2.rest.request('GET', groupUrl, { operation: `read ${groupUrl}` }), `read ${groupUrl}`);
    const rename = async (url: string, to: string) => {
      const response = await this.k2.rest.request('PATCH', url, { operation: `rename ${url} to ${to}`, body: { name: to } });
      if (response.status >= 300) throw this.k2.failure(`rename ${url} to ${to}`, response);
    };
    await rename(groupUrl, k2GroupName(volume.id));
    try {
      await rename(this.k2.ref('volumes', existing), target);
    } catch (error) {
      await rename(groupUrl, group.name).catch(() => this.k2.context.log.error(`manage ${name}: volume group ${k2GroupName(volume.id)} keeps its new name; it was ${group.name}`));
      throw error;
    }
    return { provider_location: target };
  }

  /** Cinder's get_policy. */
  async retentionPolicy(): Promise<Hit> {
    const policy = await this.k2.find('retention_policies', { name: RETENTION_POLICY }, `look up retention policy ${RETENTION_POLICY}`);
    if (!policy) throw this.k2.error('BACKEND_UNAVAILABLE', `the K2 has no retention policy "${RETENTION_POLICY}", which Cinder's driver gives every snapshot`);
    return policy;
  }

  private async refuseWhileSnapshotted(groupName: string, group: Hit): Promise<void> {
    const operation = `look up snapshots of ${groupName}`;
    const found = await this.k2.searchAs(snapshotSearchSchema, 'snapshots', { 'volume_group.ref': this.k2.ref('volume_groups', group) }, operation);
    if (found.total === 0) return;
    const names = found.hits.map((hit) => hit.short_name.replace(/^cs-/, ''));
    const more = found.total > names.length ? ` and ${found.total - names.length} more` : '';
    throw this.k2.error(
      'IN_USE',
      `delete ${groupName}: it still has ${found.total} snapshot(s) on the array (${names.join(', ')}${more}); delete the snapshots first (or delete the volume with cascade)`,
    );
  }

  private async rollBack(volumeName: string, groupName: string): Promise<void> {
    for (const [resource, name] of [
      ['volumes', volumeName],
      ['volume_groups', groupName],
    ] as const) {
      try {
        await this.k2.deleteFound(resource, { name });
      } catch (error) {
        this.k2.context.log.error(`rolling back a failed create: ${resource} ${name} may be left on the array: ${(error as Error).message}`);
      }
    }
  }
}
