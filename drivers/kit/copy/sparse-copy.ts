import { constants } from 'node:fs';
import { access, copyFile, open, stat, unlink, type FileHandle } from 'node:fs/promises';
import { LocalRunner } from '../exec/local.js';
import type { CopyProgress } from '../types.js';

/**
 * Copies of image files that stay sparse where the source is, by the cheapest way the host has:
 * a reflink where the filesystem offers one (btrfs, XFS, bcachefs: shared blocks, instant); else
 * GNU `cp --sparse=always`, which jumps over holes with lseek(SEEK_DATA), so a copy costs the data
 * it holds, not its length; else our own copy that reads the source in chunks and writes only the
 * blocks holding data (Node has no SEEK_DATA, so holes are read as zeros and skipped). None ever
 * overwrites an existing file, and a copy that fails removes what it wrote.
 */

/** Read size: each of the COPY_READ_AHEAD buffers holds one chunk and is reused. */
export const COPY_CHUNK_BYTES = 1024 * 1024;
/**
 * Chunks read at once (libuv's thread pool runs them side by side): reading, which zero-fills
 * holes, is most of the time of a sparse copy, and goes on while a chunk is written.
 */
export const COPY_READ_AHEAD = 4;
/** The granularity of holes within a chunk: a filesystem block. */
const HOLE_BYTES = 4096;

/** A copy that failed: which step on which file, with the system error's code. */
export class CopyFailure extends Error {
  constructor(
    readonly step: 'read' | 'create' | 'write',
    readonly path: string,
    cause: unknown,
  ) {
    super(`${step} ${path} failed (${codeOf(cause)})`, { cause });
    this.name = 'CopyFailure';
  }

  /** The system error code (ENOENT, EEXIST, ENOSPC...), or the error's text. */
  get code(): string {
    return codeOf(this.cause);
  }
}

export interface CopyOutcome {
  bytes: number;
  method: 'reflink' | 'cp' | 'sparse';
}

/** How often a `cp` under way is looked at, for progress. */
const CP_PROGRESS_POLL_MS = 500;
/** A copy may take long: a day is the bound of a runaway `cp`, not of a big image. */
const CP_TIMEOUT_MS = 24 * 60 * 60 * 1000;

/**
 * Copies `source` to `destination` (which must not exist): a reflink when the filesystem can make
 * one, else `sparseCopy`. Progress is reported in bytes, from 0 to the source's length.
 */
export async function copyImage(source: string, destination: string, progress: CopyProgress = () => undefined): Promise<CopyOutcome> {
  let size: number;
  try {
    size = (await stat(source)).size;
  } catch (error) {
    throw new CopyFailure('read', source, error);
  }
  progress(0, size); // a call cancelled before the copy starts stops here
  try {
    // EXCL: never overwrite. On failure libuv removes the file it created, never one that was there.
    await copyFile(source, destination, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE_FORCE);
  } catch (error) {
    if (codeOf(error) === 'EEXIST') throw new CopyFailure('create', destination, error);
    // ENOTSUP, EXDEV, EINVAL...: this filesystem does not share blocks; copy them.
    if (await holeSkippingCopy(source, destination, size, progress)) return { bytes: size, method: 'cp' };
    return { bytes: await sparseCopy(source, destination, progress), method: 'sparse' };
  }
  try {
    progress(0, size);
    await syncFile(destination);
    progress(size, size);
  } catch (error) {
    await unlink(destination).catch(() => undefined);
    throw error instanceof CopyFailure ? error : new CopyFailure('write', destination, error);
  }
  return { bytes: size, method: 'reflink' };
}

/**
 * The sparse-preserving copy: reads `source` in COPY_CHUNK_BYTES chunks (COPY_READ_AHEAD reused
 * buffers, the next chunks read while the current one is written), skips all-zero 4 KiB blocks so they stay
 * holes, writes the rest at the same offset, sets the final length with ftruncate and fsyncs.
 * `destination` is created exclusively ('wx') and removed if anything fails. Returns the length.
 */
export async function sparseCopy(
  source: string,
  destination: string,
  progress: CopyProgress = () => undefined,
  { chunkBytes = COPY_CHUNK_BYTES, readAhead = COPY_READ_AHEAD }: { chunkBytes?: number; readAhead?: number } = {},
): Promise<number> {
  if (chunkBytes <= 0 || chunkBytes % HOLE_BYTES !== 0) throw new RangeError(`chunkBytes must be a positive multiple of ${HOLE_BYTES}`);
  if (!Number.isInteger(readAhead) || readAhead < 1) throw new RangeError('readAhead must be a positive integer');
  let input: FileHandle;
  let size: number;
  try {
    input = await open(source, 'r');
  } catch (error) {
    throw new CopyFailure('read', source, error);
  }
  try {
    try {
      size = (await input.stat()).size;
    } catch (error) {
      throw new CopyFailure('read', source, error);
    }
    let output: FileHandle;
    try {
      output = await open(destination, 'wx', 0o600);
    } catch (error) {
      throw new CopyFailure('create', destination, error);
    }
    let complete = false;
    /** Reads under way, in file order: each owns its buffer until written out. */
    const inFlight: Array<{ buffer: Buffer; position: number; read: Promise<number> }> = [];
    try {
      progress(0, size);
      const zeros = Buffer.alloc(chunkBytes);
      let nextRead = 0;
      const startRead = (buffer: Buffer) => {
        const position = nextRead;
        nextRead += Math.min(chunkBytes, size - position);
        const read = readFully(input, buffer, nextRead - position, position, source);
        read.catch(() => undefined); // awaited in order below; not unhandled meanwhile
        inFlight.push({ buffer, position, read });
      };
      for (let i = 0; i < readAhead && nextRead < size; i++) startRead(Buffer.allocUnsafe(chunkBytes));
      while (inFlight.length > 0) {
        const { buffer, position, read } = inFlight[0];
        const length = await read;
        inFlight.shift();
        await writeData(output, buffer, length, position, zeros, destination);
        progress(position + length, size);
        if (nextRead < size) startRead(buffer); // written out: free for the next chunk
      }
      try {
        await output.truncate(size);
        await output.sync();
      } catch (error) {
        throw new CopyFailure('write', destination, error);
      }
      complete = true;
    } finally {
      // Reads still under way must end before their file is closed (their failures are not news).
      await Promise.all(inFlight.map(({ read }) => read.catch(() => undefined)));
      await output.close().catch(() => undefined);
      if (!complete) await unlink(destination).catch(() => undefined);
    }
  } finally {
    await input.close().catch(() => undefined);
  }
  return size;
}

/** Reads `length` bytes at `position`; past the end of a file that shrank meanwhile, zeros. */
async function readFully(handle: FileHandle, buffer: Buffer, length: number, position: number, path: string): Promise<number> {
  let got = 0;
  try {
    while (got < length) {
      const { bytesRead } = await handle.read(buffer, got, length - got, position + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
  } catch (error) {
    throw new CopyFailure('read', path, error);
  }
  if (got < length) buffer.fill(0, got, length);
  return length;
}

/** Writes the runs of non-zero blocks of `buffer[0, length)` at `position`; zero blocks stay holes. */
async function writeData(handle: FileHandle, buffer: Buffer, length: number, position: number, zeros: Buffer, path: string): Promise<void> {
  if (buffer.subarray(0, length).equals(zeros.subarray(0, length))) return; // one memcmp for a hole
  let runStart = -1;
  for (let offset = 0; offset < length; offset += HOLE_BYTES) {
    const end = Math.min(offset + HOLE_BYTES, length);
    const zero = buffer.subarray(offset, end).equals(zeros.subarray(0, end - offset));
    if (!zero && runStart < 0) runStart = offset;
    if (zero && runStart >= 0) {
      await writeFully(handle, buffer, runStart, offset, position, path);
      runStart = -1;
    }
  }
  if (runStart >= 0) await writeFully(handle, buffer, runStart, length, position, path);
}

async function writeFully(handle: FileHandle, buffer: Buffer, start: number, end: number, position: number, path: string): Promise<void> {
  try {
    let offset = start;
    while (offset < end) {
      const { bytesWritten } = await handle.write(buffer, offset, end - offset, position + offset);
      offset += bytesWritten;
    }
  } catch (error) {
    throw new CopyFailure('write', path, error);
  }
}

/**
 * `cp --sparse=always` (argv, no shell) into `destination`, which must not exist: true when it
 * made the copy (synced), false when this host's cp could not (not GNU cp, say), leaving nothing.
 * Progress is the share of the source's allocated blocks the copy has allocated so far.
 */
async function holeSkippingCopy(source: string, destination: string, size: number, progress: CopyProgress): Promise<boolean> {
  if (
    await access(destination).then(
      () => true,
      () => false,
    )
  )
    throw new CopyFailure('create', destination, Object.assign(new Error('exists'), { code: 'EEXIST' }));
  const sourceAllocated = Math.max(1, ((await stat(source)).blocks ?? 0) * 512);
  progress(0, size);
  let reported = 0;
  let running = true;
  let progressFailure: Error | undefined;
  const poll = setInterval(() => {
    stat(destination)
      .then(
        (info) => {
          const done = Math.min(size, Math.floor((size * (info.blocks ?? 0) * 512) / sourceAllocated));
          // Only forward, and never after the copy ended (a late look must not undo the final report).
          if (running && done > reported) progress((reported = done), size);
        },
        () => undefined,
      )
      .catch((error: unknown) => (progressFailure ??= error instanceof Error ? error : new Error(String(error))));
  }, CP_PROGRESS_POLL_MS);
  let copied = false;
  try {
    // --no-clobber: should the file appear meanwhile, cp leaves it alone (and it is not ours to remove).
    const result = await new LocalRunner().run(['cp', '--sparse=always', '--reflink=never', '--no-clobber', '--no-preserve=all', '--', source, destination], {
      operation: `copy ${source}`,
      timeoutMs: CP_TIMEOUT_MS,
      signal: progress.signal,
    });
    copied =
      result.exitCode === 0 &&
      (await stat(destination).then(
        (info) => info.size === size,
        () => false,
      ));
  } catch {
    copied = false; // cp missing or killed: the read-through copy takes over
  } finally {
    running = false;
    clearInterval(poll);
  }
  if (!copied) {
    await unlink(destination).catch(() => undefined);
    // A cancelled call stops here (its progress report throws): no read-through copy after it.
    progress(0, size);
    return false;
  }
  try {
    if (progressFailure !== undefined) throw progressFailure;
    await syncFile(destination);
    progress(size, size);
  } catch (error) {
    // Whatever stops the copy after cp made the file (a failed sync, a caller giving up) removes it.
    await unlink(destination).catch(() => undefined);
    throw error;
  }
  return true;
}

async function syncFile(path: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r+');
  } catch (error) {
    throw new CopyFailure('write', path, error);
  }
  try {
    await handle.sync();
  } catch (error) {
    throw new CopyFailure('write', path, error);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

function codeOf(error: unknown): string {
  return (error as NodeJS.ErrnoException)?.code ?? String(error);
}
