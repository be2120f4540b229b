import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuditLog } from '../../src/core/audit.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { MemoryVolumeStore } from '../../src/store/memory.js';

/**
 * global.audit_log_rotate_daily: the audit file is rotated when its first record's day (UTC) is
 * over: on the first record of a new day while the server runs, and at the first record after a
 * restart when the file a previous run left began on an earlier day. Real files; the clock is
 * vitest's fake Date.
 */
describe('daily audit rotation', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-audit-daily-'));
    vi.useFakeTimers({ toFake: ['Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
    rmSync(root, { recursive: true, force: true });
  });

  const lines = (path: string) =>
    readFileSync(path, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { time: string; tool: string });
  const audit = (path: string) => new AuditLog(new MemoryVolumeStore(), 'daily-host', new SecretRegistry(), createLogger('test'), path, { daily: true, keep: 2 });
  const call = (log: AuditLog, tool: string) => log.record({ client: 'tests', tool, arguments: {}, outcome: 'ok' });

  it('starts a new file on the first record of each day, keeping audit_log_keep days', async () => {
    const path = join(root, 'audit.jsonl');
    const log = audit(path);
    vi.setSystemTime(new Date('2026-03-01T23:59:58Z'));
    await call(log, 'create_volume');
    await call(log, 'extend_volume');
    expect(existsSync(`${path}.1`)).toBe(false); // the same day: one file
    vi.setSystemTime(new Date('2026-03-02T00:00:01Z'));
    await call(log, 'delete_volume');
    expect(lines(`${path}.1`).map((record) => record.tool)).toEqual(['create_volume', 'extend_volume']);
    expect(lines(path).map((record) => record.time)).toEqual(['2026-03-02T00:00:01.000Z']);
    vi.setSystemTime(new Date('2026-03-03T08:00:00Z'));
    await call(log, 'create_snapshot');
    vi.setSystemTime(new Date('2026-03-04T08:00:00Z'));
    await call(log, 'delete_snapshot');
    // Two rotated days are kept; the oldest (March 1st) is gone.
    expect(lines(`${path}.1`).map((record) => record.tool)).toEqual(['create_snapshot']);
    expect(lines(`${path}.2`).map((record) => record.tool)).toEqual(['delete_volume']);
    expect(existsSync(`${path}.3`)).toBe(false);
    expect(lines(path).map((record) => record.tool)).toEqual(['delete_snapshot']);
  });

  it("rotates at a restart's first record a file that a previous run began on an earlier day", async () => {
    const path = join(root, 'audit.jsonl');
    writeFileSync(path, `${JSON.stringify({ time: '2026-03-01T10:00:00.000Z', tool: 'left by the last run' })}\n`, { mode: 0o600 });
    const yesterday = new Date('2026-03-01T10:00:00Z');
    utimesSync(path, yesterday, yesterday);
    vi.setSystemTime(new Date('2026-03-02T09:00:00Z'));
    await call(audit(path), 'create_volume');
    expect(lines(`${path}.1`).map((record) => record.tool)).toEqual(['left by the last run']);
    expect(lines(path).map((record) => record.tool)).toEqual(['create_volume']);
  });
});
