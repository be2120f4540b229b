import { createHash, createHmac } from 'node:crypto';
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
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

  verify(host: string, port: number, key: Buffer): HostKeyVerdict {
    const name = hostPattern(host, port);
    const keyType = keyTypeOf(key);
    const keyText = key.toString('base64');
    const entries = this.entriesFor(name);
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
    mkdirSync(dirname(this.file), { recursive: true });
    appendFileSync(this.file, `${name} ${keyType} ${keyText}\n`, { mode: 0o600 });
    return { accepted: true, recorded: true };
  }

  private entriesFor(name: string): Array<{ type: string; key: string }> {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch {
      return [];
    }
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
