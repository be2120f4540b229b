import { constants } from 'node:fs';
import { copyFile, open, stat, unlink, type FileHandle } from 'node:fs/promises';
import type { CopyProgress } from '../types.js';

/**
 * Copies of image files that stay sparse where the source is: a reflink where the filesystem
 * offers one (btrfs, XFS, bcachefs: shared blocks, instant), else a copy that reads the source in
 * chunks and writes only the blocks holding data, leaving holes for the rest (what
 * `cp --sparse=always` does). Node has no lseek(SEEK_DATA), so holes are read (as zeros) and
 * skipped, not jumped over. Neither ever overwrites an existing file, and a copy that fails
 * removes what it wrote.
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
  method: 'reflink' | 'sparse';
}

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
  try {
    // EXCL: never overwrite. On failure libuv removes the file it created, never one that was there.
    await copyFile(source, destination, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE_FORCE);
  } catch (error) {
    if (codeOf(error) === 'EEXIST') throw new CopyFailure('create', destination, error);
    // ENOTSUP, EXDEV, EINVAL...: this filesystem does not share blocks; copy them.
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
      output = await open(destination, 'wx');
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
        const { buffer, position, read } = inFlight[0]!;
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
