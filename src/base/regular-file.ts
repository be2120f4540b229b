/**
 * Files a config names (san_private_key, driver_ssl_cert_path, lvm_conf_file) can be anything:
 * a FIFO, a device, a path under /proc. Node's synchronous calls on such paths can block the one
 * event loop that serves every backend; these helpers are asynchronous, never wait for a FIFO's
 * writer, read regular files only and stop at a size limit. Their errors are short reasons
 * ("ENOENT", "not a regular file (a FIFO)", "larger than 1 MiB") for the caller to put after the
 * backend, the option and the path.
 */

import { errorCode } from './errors.js';
import { constants, type Stats } from 'node:fs';
import { open, stat } from 'node:fs/promises';

/** Far above any real private key or CA bundle (a full public CA bundle is about 220 KiB). */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

/** The whole content of a regular file of at most `maxBytes`; throws an Error whose message is the reason. */
export async function readRegularFile(path: string, maxBytes = MAX_CONFIG_FILE_BYTES): Promise<Buffer> {
  let handle;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw new Error(fsReason(error));
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new Error(`not a regular file (${kindOf(stats)})`);
    if (stats.size > maxBytes) throw new Error(`larger than ${sizeLabel(maxBytes)} (${stats.size} bytes)`);
    // Read past the announced size too: /proc files announce 0 bytes and a file may grow meanwhile.
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      let bytesRead: number;
      let buffer: Buffer;
      try {
        ({ bytesRead, buffer } = await handle.read({ buffer: Buffer.alloc(64 * 1024) }));
      } catch (error) {
        throw new Error(fsReason(error));
      }
      if (bytesRead === 0) break;
      chunks.push(buffer.subarray(0, bytesRead));
      length += bytesRead;
      if (length > maxBytes) throw new Error(`larger than ${sizeLabel(maxBytes)}`);
    }
    return Buffer.concat(chunks, length);
  } finally {
    await handle.close().catch(() => {});
  }
}

/**
 * Whether `path` is a regular file: false when nothing is there, an Error (the reason) when
 * something else is (a FIFO, a directory, a device) or the path cannot be looked at. Nothing is opened.
 */
export async function isRegularFile(path: string): Promise<boolean> {
  let stats: Stats;
  try {
    stats = await stat(path);
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw new Error(fsReason(error));
  }
  if (!stats.isFile()) throw new Error(`not a regular file (${kindOf(stats)})`);
  return true;
}

function kindOf(stats: Stats): string {
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isDirectory()) return 'a directory';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isSocket()) return 'a socket';
  return 'not a file';
}

function sizeLabel(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / 1024 / 1024} MiB` : `${bytes} bytes`;
}

function fsReason(error: unknown): string {
  const code = errorCode(error);
  if (code === 'ENOENT') return 'ENOENT (no such file)';
  if (code === 'EACCES' || code === 'EPERM') return `${code} (permission denied)`;
  if (code === 'EISDIR') return 'not a regular file (a directory)';
  if (code === 'EIO') return 'EIO (input/output error while reading)';
  return code ?? (error instanceof Error ? error.message : String(error));
}
