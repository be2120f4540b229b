import { appendFile, rename, rm, stat } from 'node:fs/promises';
import type { AuditRotation } from '../config/load.js';
import { describeError } from '../base/errors.js';
import { privateFile } from '../base/private-files.js';
import type { Logger } from '../base/log.js';
import type { AuditRecord, VolumeStore } from '../store/store.js';
import type { SecretRegistry } from '../base/secrets.js';

/** Arguments larger than this are recorded by size only: an audit line must not carry a client's megabytes. */
const MAX_AUDITED_ARGUMENTS_BYTES = 16 * 1024;
/** Deeper than this, a value is recorded as a marker: every JSON reader (Python's stops near 1,000 levels) reads each audit line. */
export const MAX_AUDITED_DEPTH = 16;
const TOO_DEEP = `[nested deeper than ${MAX_AUDITED_DEPTH} levels: not recorded]`;

/** A copy of `value` cut at MAX_AUDITED_DEPTH; it never descends further, so a hostile nesting costs nothing. */
function cutDeep(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_AUDITED_DEPTH) return TOO_DEEP;
  if (Array.isArray(value)) return value.map((item) => cutDeep(item, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, cutDeep(item, depth + 1)]));
}

export interface AuditedCall {
  client: string;
  tool: string;
  /** The arguments as the client sent them (masked here). */
  arguments: unknown;
  outcome: 'ok' | 'error';
  /** The coded error text the client got. */
  error?: string;
  /** A dry run: checked, nothing changed. */
  dryRun?: boolean;
}

/**
 * The audit log (contract section 10): one record per call of a mutating tool, refused or not, on
 * any transport, in the metadata store (shared by every server on it) and, with global.audit_log,
 * as a JSON line appended to that file. Secrets are masked before anything is written. A record
 * that cannot be written is logged, never turned into the call's failure.
 */
export class AuditLog {
  /** Appends to the file, one at a time: rotation must not cut a line, nor two records cross. */
  private fileTurn: Promise<void> = Promise.resolve();
  /** The file's size and the day (UTC, YYYY-MM-DD) its records began, once read from the file itself. */
  private current?: { bytes: number; day: string };

  constructor(
    private readonly store: VolumeStore,
    private readonly serverId: string,
    private readonly secrets: SecretRegistry,
    private readonly log: Logger,
    private readonly filePath?: string,
    private readonly rotation?: AuditRotation,
  ) {
    if (!filePath) return;
    try {
      privateFile(filePath);
    } catch (error) {
      log.warn(`audit: cannot make ${filePath} private (0600): ${describeError(error)}`);
    }
  }

  async record(call: AuditedCall): Promise<void> {
    await this.append(this.draft(call), false);
  }

  /** The record of `call`, secrets masked, as written. */
  draft(call: AuditedCall): AuditRecord {
    return {
      time: new Date().toISOString(),
      server: this.serverId,
      client: this.secrets.redact(call.client),
      tool: call.tool,
      arguments: this.maskedArguments(call.arguments),
      outcome: call.outcome,
      ...(call.error !== undefined ? { error: this.secrets.redact(call.error) } : {}),
      ...(call.dryRun ? { dry_run: true } : {}),
    };
  }

  /** Appends `record` to the file and, unless `inStore` (written with the call's outcome), to the store. */
  async append(record: AuditRecord, inStore: boolean): Promise<void> {
    await Promise.all([
      inStore
        ? undefined
        : this.store
            .appendAudit(record)
            .catch((error: unknown) => this.log.warn(`audit: cannot record ${record.tool} in the metadata store: ${this.secrets.redact(describeError(error))}`)),
      this.filePath ? this.appendLine(this.filePath, `${JSON.stringify(record)}\n`, record.time) : undefined,
    ]);
  }

  private appendLine(path: string, line: string, time: string): Promise<void> {
    const turn = this.fileTurn.then(async () => {
      try {
        if (this.rotation) await this.rotateIfDue(path, this.rotation, Buffer.byteLength(line), time.slice(0, 10));
        await appendFile(path, line, { mode: 0o600 });
        if (this.current) this.current.bytes += Buffer.byteLength(line);
      } catch (error) {
        this.log.warn(`audit: cannot append to ${path}: ${describeError(error)}`);
      }
    });
    this.fileTurn = turn;
    return turn;
  }

  /**
   * Rotation (global.audit_log_max_bytes, audit_log_rotate_daily): the file becomes PATH.1, PATH.1
   * becomes PATH.2, and so on; beyond audit_log_keep files the oldest is removed.
   */
  private async rotateIfDue(path: string, rotation: AuditRotation, adding: number, today: string): Promise<void> {
    if (!this.current) {
      const info = await stat(path).catch(() => undefined);
      this.current = { bytes: info?.size ?? 0, day: (info ? info.mtime : new Date()).toISOString().slice(0, 10) };
    }
    const full = rotation.maxBytes !== undefined && this.current.bytes > 0 && this.current.bytes + adding > rotation.maxBytes;
    const newDay = rotation.daily && this.current.bytes > 0 && this.current.day !== today;
    if (!full && !newDay) {
      if (this.current.bytes === 0) this.current.day = today;
      return;
    }
    await rm(`${path}.${rotation.keep}`, { force: true });
    for (let index = rotation.keep - 1; index >= 1; index--) {
      await rename(`${path}.${index}`, `${path}.${index + 1}`).catch((error: unknown) => {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      });
    }
    await rename(path, `${path}.1`);
    this.current = { bytes: 0, day: today };
    this.log.info(`audit: ${path} rotated to ${path}.1 (${full ? `reached ${rotation.maxBytes} bytes` : 'a new day began'}); keeping ${rotation.keep} rotated files`);
  }

  private maskedArguments(raw: unknown): Record<string, unknown> {
    const value = cutDeep(raw === undefined ? {} : raw);
    let text: string;
    try {
      text = JSON.stringify(this.secrets.maskOptions(value));
    } catch {
      return { unreadable: true };
    }
    if (text.length > MAX_AUDITED_ARGUMENTS_BYTES) return { too_large_bytes: text.length };
    const masked = JSON.parse(text) as unknown;
    return masked && typeof masked === 'object' && !Array.isArray(masked) ? (masked as Record<string, unknown>) : { value: masked };
  }
}

/** `cinderlib-mcp audit [--since ISO]`: the records as JSON Lines, oldest first. */
export async function auditCommand(store: VolumeStore, since: string | undefined, write: (text: string) => Promise<void>): Promise<void> {
  let after: number | undefined;
  do {
    const page = await store.listAudit({ since, after, limit: 1000 });
    if (page.records.length > 0) await write(page.records.map((record) => `${JSON.stringify(record)}\n`).join(''));
    after = page.nextAfter;
  } while (after !== undefined);
}
