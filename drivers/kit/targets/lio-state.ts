import { StorageError } from '../../../src/base/errors.js';
import { parseListing, type ConfigfsChannel, type ConfigfsEntry } from './lio-relay.js';

/** What a LIO export is made of on a host, read from its configfs through the relay. */

export interface Backing {
  plugin: 'iblock' | 'fileio';
  /** Bytes of a regular file (fileio's fd_dev_size); 0 for a block device, whose size the kernel reads itself. */
  size: number;
}

/** What a host's configfs holds for one target, read in one relay call. */
export interface LioState {
  fabric: boolean;
  /** Backstores named after the target, as `<hba>/<name>` under core/. */
  storageObjects: string[];
  /** Every backstore HBA index in use (rtslib-fb numbers them across plugins). */
  hbaIndexes: Set<number>;
  /** Everything under the target's TPG (4 levels: acls/<initiator>/lun_0/<link>), or undefined when there is no TPG. */
  tpg?: ConfigfsEntry[];
  tpgEnabled: boolean;
}

/** The backing store as rtslib-fb tells them apart: a block device (iblock) or a regular file (fileio, with its size). */
export async function readBacking(configfs: ConfigfsChannel, path: string, where: { backend: string; volumeId: string; host: string }): Promise<Backing> {
  const [reply] = await configfs.send([{ op: 'stat', path }], `look at ${path}`);
  const [kind, size] = reply.ok ? reply.output.split(' ') : ['-'];
  if (kind === 'b') return { plugin: 'iblock', size: 0 };
  if (kind === 'f' && Number(size) > 0) return { plugin: 'fileio', size: Number(size) };
  throw new StorageError(
    'BACKEND_UNAVAILABLE',
    `backend "${where.backend}": volume ${where.volumeId}'s backing store ${path} ${kind === '-' ? 'does not exist' : 'is neither a block device nor a non-empty file'} on ${where.host}, so LIO cannot export it`,
  );
}

/** The fabric, the backstores named `objectName`, every HBA index, and the TPG's tree with its enable state. */
export async function readLioState(configfs: ConfigfsChannel, root: string, tpgPath: string, objectName: string): Promise<LioState> {
  const gone = ['ENOENT'];
  const [fabric, core, tpg, enable] = await configfs.send(
    [
      { op: 'lstat', path: `${root}/iscsi` },
      { op: 'ls', path: `${root}/core`, depth: 2, tolerate: gone },
      { op: 'ls', path: tpgPath, depth: 4, tolerate: gone },
      { op: 'read', path: `${tpgPath}/enable`, tolerate: gone },
    ],
    `look at LIO target ${objectName}`,
  );
  const objects = core.ok ? parseListing(core.output) : [];
  return {
    fabric: fabric.ok && fabric.output.startsWith('d '),
    storageObjects: objects
      .filter((entry) => entry.kind === 'd' && /^(iblock|fileio)_\d+\/[^/]+$/.test(entry.path) && entry.path.split('/')[1] === objectName)
      .map((entry) => entry.path),
    hbaIndexes: new Set(objects.filter((entry) => entry.kind === 'd' && /^[a-z]+_\d+$/.test(entry.path)).map((entry) => Number(entry.path.split('_').pop()))),
    tpg: tpg.ok ? parseListing(tpg.output) : undefined,
    tpgEnabled: enable.ok && enable.output.trim() === '1',
  };
}
