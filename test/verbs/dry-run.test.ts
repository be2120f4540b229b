import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, REPO_ROOT, startMcpServer } from '../helpers/server.js';

/** Dry runs leave an audit record that says so (contract section 14), in the store and in the file. */
let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-dry-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const config = () => ({
  global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(root, 'meta.sqlite')}` }, audit_log: join(root, 'audit.jsonl') },
  backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'files') }],
});

describe('dry runs in the audit log', () => {
  it('records each dry run, done or refused, with dry_run: true; real calls carry no such field', async () => {
    const server = await startMcpServer(config(), { workDir: root, keepWorkDir: true });
    try {
      expect((await server.call('create_volume', { backend: 'files', size: 1, dry_run: true })).data.dry_run).toBe(true);
      expect((await server.call('create_volume', { backend: 'files', size: 1024 * 1024, dry_run: true })).text).toMatch(/^OUT_OF_CAPACITY: /);
      const made = await server.call('create_volume', { backend: 'files', size: 1 });
      expect((await server.call('delete_volume', { volume_id: made.data.id })).isError).toBe(false);
    } finally {
      await server.close();
    }
    const cli = spawnSync(process.execPath, [BIN, 'audit', '--config', join(root, 'config.yaml')], { encoding: 'utf8', cwd: REPO_ROOT });
    expect(cli.status, cli.stderr).toBe(0);
    const fromStore = cli.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    const fromFile = readFileSync(join(root, 'audit.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    for (const records of [fromStore, fromFile]) {
      expect(records.map((r) => [r.tool, r.outcome, r.dry_run])).toEqual([
        ['create_volume', 'ok', true],
        ['create_volume', 'error', true],
        ['create_volume', 'ok', undefined],
        ['delete_volume', 'ok', undefined],
      ]);
    }
  });
});
