import type { CommandRunner } from '../exec/runner.js';
import type { CopyProgress } from '../types.js';

/** Cinder's volume_dd_blocksize default. */
const BLOCK_BYTES = 1024 * 1024;
/** One dd per 256 MiB, so progress can be told between chunks (the runner answers only at exit). */
const CHUNK_BLOCKS = 256;

export interface DeviceCopy {
  source: string;
  target: string;
  /** MiB to copy (Cinder: the source's size * units.Ki). */
  sizeMib: number;
  /** Prefix for dd (the root helper; empty when running as root). */
  rootHelper: readonly string[];
  progress: CopyProgress;
  /** What the copy is for, in messages. */
  operation: string;
}

/** Why a copy failed (dd's own words); the driver turns it into a StorageError. */
export class CopyFailure extends Error {}

/**
 * Cinder's volume_utils.copy_volume as its Kaminario driver calls it (sparse=True, sync=False):
 * first check_for_odirect_support on both ends (a `dd count=0` with iflag=direct, then with
 * oflag=direct; notrunc added so the probe never shortens a target that is a file), then dd with direct I/O where the files take O_DIRECT and buffered I/O where
 * they do not. Cinder runs one dd with count_bytes; this runs one dd per chunk (skip/seek at the
 * same offset, notrunc) to report progress between them. conv=sparse as Cinder: a new K2 volume
 * reads zeros, so zero blocks need not be written. Without O_DIRECT on the target the data is
 * flushed (fdatasync) before dd exits, so the detach that follows never races the page cache.
 */
export async function copyDevice(runner: CommandRunner, copy: DeviceCopy): Promise<void> {
  const dd = (...args: string[]) => [...copy.rootHelper, 'dd', ...args];
  const probe = async (flag: string) =>
    (await runner.run(dd('count=0', `if=${copy.source}`, `of=${copy.target}`, flag, 'conv=notrunc'), { operation: `${copy.operation}: check O_DIRECT (${flag})` })).exitCode === 0;
  const directIn = await probe('iflag=direct');
  const directOut = await probe('oflag=direct');
  const conv = directOut ? 'conv=notrunc,sparse' : 'conv=notrunc,sparse,fdatasync';

  const total = copy.sizeMib * BLOCK_BYTES;
  copy.progress(0, total);
  for (let block = 0; block < copy.sizeMib; block += CHUNK_BLOCKS) {
    const count = Math.min(CHUNK_BLOCKS, copy.sizeMib - block);
    const argv = dd(
      `if=${copy.source}`,
      `of=${copy.target}`,
      'bs=1M',
      `count=${count}`,
      ...(block > 0 ? [`skip=${block}`, `seek=${block}`] : []),
      ...(directIn ? ['iflag=direct'] : []),
      ...(directOut ? ['oflag=direct'] : []),
      conv,
    );
    const result = await runner.run(argv, { operation: copy.operation });
    if (result.exitCode !== 0) {
      const reason = result.stderr.trim().split('\n').filter(Boolean).pop() ?? `exit code ${result.exitCode}`;
      throw new CopyFailure(`dd failed at MiB ${block} of ${copy.sizeMib}: ${reason}`);
    }
    copy.progress((block + count) * BLOCK_BYTES, total);
  }
}
