import { createHash, createHmac } from 'node:crypto';
import { constants } from 'node:fs';
import { appendFile, mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Host key policy with Cinder's meaning (ssh_hosts_key_file, strict_ssh_host_key_policy): a host
 * seen for the first time is trusted and recorded unless strict; a changed key is always refused.
 * The file is OpenSSH's known_hosts format, hashed entries included, so ssh-keyscan output works.
 */
export type HostKeyVerdict = { accepted: true; recorded: boolean } | { accepted: false; reason: string };

export class KnownHosts {
  constructor(
    readonly file: string,
    private readonly strict: boolean,
  ) {}

  /**
   * Async on purpose: a bad ssh_hosts_key_file (a path under /proc, a FIFO, a huge file) must fail
   * this connection with a reason, never stall the event loop that serves every other call.
   */
  async verify(host: string, port: number, key: Buffer): Promise<HostKeyVerdict> {
    const name = hostPattern(host, port);
    const keyType = keyTypeOf(key);
    const keyText = key.toString('base64');
    let entries: Array<{ type: string; key: string }>;
    try {
      entries = await this.entriesFor(name);
    } catch (error) {
      return { accepted: false, reason: `cannot read ssh_hosts_key_file ${this.file}: ${describeFsError(error)}` };
    }
    if (entries.some((entry) => entry.type === keyType && entry.key === keyText)) return { accepted: true, recorded: false };
    const fingerprint = `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
    if (entries.some((entry) => entry.type === keyType)) {
      return {
        accepted: false,
        reason: `the ${keyType} host key of ${name} has changed (now ${fingerprint}); refusing to connect. If the change is expected, remove the old line for ${name} from ${this.file}`,
      };
    }
    if (entries.length > 0) {
      return {
        accepted: false,
        reason: `${name} offered a ${keyType} host key (${fingerprint}) but ${this.file} knows it only by ${[...new Set(entries.map((e) => e.type))].join(', ')} keys; refusing to connect`,
      };
    }
    if (this.strict) {
      return {
        accepted: false,
        reason: `${name} is not in ${this.file} and strict_ssh_host_key_policy is on; add its key (ssh-keyscan -p ${port} ${host} >> ${this.file}) or turn the policy off to trust it on first use`,
      };
    }
    try {
      await makeDirectory(dirname(this.file));
      await appendFile(this.file, `${name} ${keyType} ${keyText}\n`, { mode: 0o600 });
    } catch (error) {
      return {
        accepted: false,
        reason: `cannot record the host key of ${name} (${fingerprint}) in ssh_hosts_key_file ${this.file}: ${describeFsError(error)}; set ssh_hosts_key_file to a writable file`,
      };
    }
    return { accepted: true, recorded: true };
  }

  /** The file's entries for `name`; none when the file does not exist yet. */
  private async entriesFor(name: string): Promise<Array<{ type: string; key: string }>> {
    const text = await readKnownHostsFile(this.file);
    const found: Array<{ type: string; key: string }> = [];
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (!line || line.startsWith('#') || line.startsWith('@')) continue;
      const [hosts, type, key] = line.split(/\s+/);
      if (!hosts || !type || !key) continue;
      if (hosts.split(',').some((pattern) => patternMatches(pattern, name))) found.push({ type, key });
    }
    return found;
  }
}

/** Far above any real known_hosts file; stops a device or /proc file from being read forever. */
const MAX_KNOWN_HOSTS_BYTES = 16 * 1024 * 1024;

async function readKnownHostsFile(file: string): Promise<string> {
  let handle;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw error;
  }
  try {
    if (!(await handle.stat()).isFile()) throw new Error('not a regular file');
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const { bytesRead, buffer } = await handle.read({ buffer: Buffer.alloc(64 * 1024) });
      if (bytesRead === 0) break;
      chunks.push(buffer.subarray(0, bytesRead));
      length += bytesRead;
      if (length > MAX_KNOWN_HOSTS_BYTES) throw new Error(`larger than ${MAX_KNOWN_HOSTS_BYTES / 1024 / 1024} MiB`);
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    await handle.close();
  }
}

/**
 * mkdir -p, one level at a time. Node's own recursive mkdir never returns on paths such as
 * /proc/x/y, where every level answers ENOENT: here each level is tried once.
 */
async function makeDirectory(dir: string): Promise<void> {
  try {
    await mkdir(dir);
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    const parent = dirname(dir);
    if (code !== 'ENOENT' || parent === dir) throw error;
  }
  await makeDirectory(dirname(dir));
  try {
    await mkdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
}

function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'ENOENT (no such directory, and none can be created there)';
  return code ?? (error instanceof Error ? error.message : String(error));
}

/** OpenSSH writes hosts on port 22 bare and others as [host]:port. */
export function hostPattern(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function patternMatches(pattern: string, name: string): boolean {
  if (pattern.startsWith('|1|')) {
    const [, , salt, hash] = pattern.split('|');
    if (!salt || !hash) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
  }
  return pattern === name;
}

/** The key type is the first string of the SSH wire-format public key blob. */
function keyTypeOf(key: Buffer): string {
  if (key.length < 4) return 'unknown';
  const length = key.readUInt32BE(0);
  return key.subarray(4, 4 + length).toString('ascii');
}
