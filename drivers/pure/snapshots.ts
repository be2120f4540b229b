import type { CloneOperations, SnapshotOperations, SnapshotRef } from '../kit/types.js';
import { ERR, type PureClient } from './client.js';
import { pureVolumeName, type PureVolumes } from './volumes.js';

/**
 * Snapshots as Cinder's Pure driver takes them (`POST volume-snapshots?source_names=<volume>` with
 * `{"suffix": "snapshot-<id>"}`, named `<volume>.snapshot-<id>`), deleted as volumes are (destroy,
 * then eradicate when asked); volumes from snapshots and clones are array copies
 * (`POST volumes` with `{"source": {"name"}}`), independent of their source once made. The core
 * extends a copy asked larger than its source afterwards, as Cinder's _extend_if_needed does.
 */
export function pureSnapshotName(snapshot: Pick<SnapshotRef, 'id' | 'volume_id'>): string {
  return `${pureVolumeName(snapshot.volume_id)}.snapshot-${snapshot.id}`;
}

export class PureSnapshots {
  readonly snapshots: SnapshotOperations = {
    createSnapshot: async (snapshot) => {
      const name = pureSnapshotName(snapshot);
      const operation = `create snapshot ${name}`;
      const response = await this.array.request('POST', '/volume-snapshots', { source_names: pureVolumeName(snapshot.volume_id) }, operation, { suffix: `snapshot-${snapshot.id}` });
      if (response.status >= 300) throw this.array.failure(operation, response);
    },
    deleteSnapshot: (snapshot) => this.deleteSnapshot(pureSnapshotName(snapshot)),
    createVolumeFromSnapshot: async (volume, snapshot) => {
      const name = pureVolumeName(volume.id);
      await this.volumes.post(name, { source: { name: pureSnapshotName(snapshot) } }, `create volume ${name} from snapshot ${pureSnapshotName(snapshot)}`);
    },
    // Cinder's revert_to_snapshot: the array overwrites the volume with the snapshot (POST volumes
    // overwrite=true, the volume as `names` and the snapshot as the source), keeping the volume's
    // identity and connections; it then has the snapshot's size, so a larger volume is grown back.
    revertToSnapshot: async (volume, snapshot) => {
      const name = pureVolumeName(volume.id);
      const operation = `revert volume ${name} to snapshot ${pureSnapshotName(snapshot)}`;
      const response = await this.array.request('POST', '/volumes', { names: name, overwrite: true }, operation, { source: { name: pureSnapshotName(snapshot) } });
      if (response.status >= 300) throw this.array.failure(operation, response);
      if (volume.size > snapshot.volume_size) await this.volumes.extendVolume(volume, volume.size);
    },
  };

  readonly clones: CloneOperations = {
    createClonedVolume: async (volume, source) => {
      const name = pureVolumeName(volume.id);
      await this.volumes.post(name, { source: { name: pureVolumeName(source.id) } }, `clone volume ${pureVolumeName(source.id)} into ${name}`);
    },
  };

  constructor(
    private readonly array: PureClient,
    private readonly volumes: PureVolumes,
    private readonly eradicateOnDelete: boolean,
  ) {}

  /**
   * Cinder's delete_snapshot: destroy, eradicate when pure_eradicate_on_delete; a snapshot that
   * does not exist, or is already destroyed, counts as deleted.
   */
  private async deleteSnapshot(name: string): Promise<void> {
    const operation = `delete snapshot ${name}`;
    await this.array.tolerating([ERR.NOT_EXIST, ERR.NO_SUCH_SNAPSHOT, ERR.PENDING_ERADICATION], 'PATCH', '/volume-snapshots', { names: name }, `${operation}: destroy`, {
      destroyed: true,
    });
    if (this.eradicateOnDelete) await this.array.tolerating([ERR.NOT_EXIST, ERR.NO_SUCH_SNAPSHOT], 'DELETE', '/volume-snapshots', { names: name }, `${operation}: eradicate`);
  }
}
