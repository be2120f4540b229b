import { StorageError } from '../kit/base.js';
import type { CopyProgress, CreatedSnapshot, CreatedVolume, SnapshotRef, VolumeRef } from '../kit/types.js';
import { BYTES_PER_GIB } from '../kit/units.js';
import {
  activateCommand,
  cloneSnapshotLvName,
  copyCommands,
  createSnapshotCommand,
  deactivateCommand,
  lvmErrorText,
  mergeCommand,
  revertTemporaryLvName,
  snapshotLvName,
  volumeLvName,
} from './commands.js';
import type { VolumeGroup } from './volume-group.js';

/** Cinder's LVM snapshots, volumes from them and clones: LV snapshots when thin, copies with dd when thick. */
export class LvmSnapshots {
  constructor(private readonly group: VolumeGroup) {}

  /** Cinder's create_snapshot (os-brick's create_lv_snapshot): the source must be there; -L its size when thick. */
  async createSnapshot(name: string, volume: VolumeRef): Promise<CreatedSnapshot> {
    const sourceName = volumeLvName(volume.id);
    await this.group.requireLv(sourceName, `snapshot volume ${volume.id}`);
    return this.group.createLv(name, createSnapshotCommand(this.group.commands, name, sourceName, this.group.thin ? undefined : volume.size));
  }

  /**
   * Cinder's create_volume_from_snapshot: when thin, a snapshot of the snapshot named as the volume;
   * when thick, a new volume and a copy of the snapshot's data.
   */
  async createVolumeFromSnapshot(volume: VolumeRef, snapshot: SnapshotRef, progress: CopyProgress): Promise<CreatedVolume> {
    const snapshotName = snapshotLvName(snapshot.id);
    await this.group.requireLv(snapshotName, `create volume ${volume.id} from snapshot ${snapshot.id}`);
    if (this.group.thin) return this.createThinSnapshotVolume(volume, snapshotName);
    return this.createVolumeCopy(volume, snapshotName, snapshot.volume_size, progress);
  }

  /**
   * Cinder's create_cloned_volume: when thin, a snapshot of the source named as the volume; when
   * thick, a copy from a temporary snapshot (so the source's bytes are those of the moment of the
   * call), which is removed whatever happens.
   */
  async createClonedVolume(volume: VolumeRef, source: VolumeRef, progress: CopyProgress): Promise<CreatedVolume> {
    if (this.group.thin) {
      const sourceName = volumeLvName(source.id);
      await this.group.requireLv(sourceName, `clone volume ${source.id}`);
      return this.createThinSnapshotVolume(volume, sourceName);
    }
    const temporary = cloneSnapshotLvName(volume.id);
    await this.createSnapshot(temporary, source); // looks the source up first
    try {
      return await this.createVolumeCopy(volume, temporary, source.size, progress);
    } finally {
      await this.group.removeLvIfPresent(temporary);
    }
  }

  /**
   * Cinder's revert_to_snapshot. Thick: the snapshot merged back into the volume (lvconvert
   * --merge), the volume deactivated and activated (the merge runs then), and the snapshot made
   * again, since the merge consumed it. Thin, where Cinder's driver declines: Cinder's generic
   * revert, a temporary volume from the snapshot copied over the volume with dd, then removed.
   */
  async revertToSnapshot(volume: VolumeRef, snapshot: SnapshotRef, progress: CopyProgress): Promise<void> {
    const snapshotName = snapshotLvName(snapshot.id);
    const name = volumeLvName(volume.id);
    const commands = this.group.commands;
    await this.group.requireLv(snapshotName, `revert volume ${volume.id} to snapshot ${snapshot.id}`);
    if (!this.group.thin) {
      await this.group.run(mergeCommand(commands, snapshotName), `merge ${snapshotName} into ${name}`);
      await this.group.run(deactivateCommand(commands, name), `deactivate ${name}`);
      await this.group.run(activateCommand(commands, name, { permanent: false }), `activate ${name}`);
      await this.createSnapshot(snapshotName, volume);
      return;
    }
    const temporary = revertTemporaryLvName(volume.id);
    await this.group.removeLvIfPresent(temporary); // what an interrupted revert left
    await this.group.createLv(temporary, createSnapshotCommand(commands, temporary, snapshotName));
    try {
      await this.group.run(activateCommand(commands, temporary, { permanent: false }), `activate ${temporary}`);
      await this.group.run(activateCommand(commands, name, { permanent: false }), `activate ${name}`);
      await this.copyData(temporary, name, snapshot.volume_size, progress);
    } finally {
      await this.group.removeLvIfPresent(temporary);
    }
  }

  /** A thin volume that starts as a snapshot of `originName`, activated for good (thin snapshots skip activation otherwise). */
  private async createThinSnapshotVolume(volume: VolumeRef, originName: string): Promise<CreatedVolume> {
    const name = volumeLvName(volume.id);
    const created = await this.group.createLv(name, createSnapshotCommand(this.group.commands, name, originName));
    await this.group.removingOnFailure(name, () => this.group.run(activateCommand(this.group.commands, name, { permanent: true }), `activate ${name}`));
    return created;
  }

  /** A new volume holding `sizeGb` GiB copied from `sourceName`; the volume is removed again if the copy fails. */
  private async createVolumeCopy(volume: VolumeRef, sourceName: string, sizeGb: number, progress: CopyProgress): Promise<CreatedVolume> {
    const created = await this.group.createVolumeLv(volume);
    const name = volumeLvName(volume.id);
    await this.group.removingOnFailure(name, async () => {
      // Cinder: some LVM configurations do not activate snapshot LVs by themselves.
      await this.group.run(activateCommand(this.group.commands, sourceName, { permanent: false }), `activate ${sourceName}`);
      await this.copyData(sourceName, name, sizeGb, progress);
    });
    return created;
  }

  private async copyData(sourceName: string, targetName: string, sizeGb: number, progress: CopyProgress): Promise<void> {
    const operation = `copy ${this.group.options.volume_group}/${sourceName} to ${targetName}`;
    const totalBytes = Math.ceil(sizeGb * BYTES_PER_GIB);
    progress(0, totalBytes);
    let bytesDone = 0;
    // Cinder's _sparse_copy_volume: zero blocks stay unallocated when the target is in a thin pool.
    for (const step of copyCommands(this.group.commands, { sourceLv: sourceName, targetLv: targetName, sizeGb, sparse: this.group.thin })) {
      const result = await this.group.run(step.command, operation, { allowFailure: true });
      if (result.exitCode !== 0) {
        const reason = lvmErrorText(result.stderr);
        const hint = /No such file or directory/.test(reason) ? ' (copies need active LVs, which need device-mapper on that host)' : '';
        throw new StorageError(
          'BACKEND_UNAVAILABLE',
          `backend "${this.group.context.backendName}": ${operation} failed on ${this.group.hostLabel} after ${bytesDone} of ${totalBytes} bytes: ${reason}${hint}`,
        );
      }
      bytesDone = step.bytesDone;
      progress(bytesDone, totalBytes);
    }
  }
}
