import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, REPO_ROOT, startMcpServer } from '../helpers/server.js';

/**
 * Contract section 10's audit log over stdio: every call of a mutating tool, refused or not, leaves
 * one record {time, server, client, tool, arguments, outcome, error?} in the metadata store and,
 * with global.audit_log, one JSON line in that file; reads leave none; secrets are masked;
 * `cinderlib-mcp audit [--since]` prints the store's records as JSON Lines.
 */
let root: string;
const SECRET = 'Audit-Secret-Value-8841';

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-audit-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const config = (readOnly = false) => ({
  global: {
    persistence_config: { storage: 'db', connection: `sqlite:///${join(root, 'meta.sqlite')}` },
    audit_log: join(root, 'audit.jsonl'),
    host: 'audit-server',
    read_only: readOnly,
  },
  backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'files'), san_password: '${env:AUDIT_TEST_SECRET}' }],
});

function auditCli(...args: string[]): Array<Record<string, any>> {
  const result = spawnSync(process.execPath, [BIN, 'audit', '--config', join(root, 'config.yaml'), ...args], {
    encoding: 'utf8',
    cwd: REPO_ROOT,
    env: { ...process.env, AUDIT_TEST_SECRET: SECRET },
  });
  expect(result.status, result.stderr).toBe(0);
  return result.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

describe('the audit log', () => {
  it('records every mutating call, refused or not, and no read, in the store and the file, secrets masked', async () => {
    const server = await startMcpServer(config(), { workDir: root, keepWorkDir: true, env: { AUDIT_TEST_SECRET: SECRET } });
    let volumeId: string;
    try {
      await server.call('list_backends');
      volumeId = (await server.call('create_volume', { backend: 'files', size: 1, name: `named after ${SECRET}` })).data.id;
      await server.call('get_volume', { volume_id: volumeId });
      await server.call('create_volume', { backend: 'files', size: 'huge' });
      await server.call('delete_volume', { volume_id: '00000000-0000-4000-8000-000000000000' });
      await server.call('connect_volume', { volume_id: volumeId, connector: { host: 'h', initiator: 'iqn.1994-05.com.example:h', chap_password: 'ConnectorSecret-77' } });
      await server.call('delete_volume', { volume_id: volumeId });
    } finally {
      await server.close();
    }
    const readOnly = await startMcpServer(config(true), { workDir: root, keepWorkDir: true, env: { AUDIT_TEST_SECRET: SECRET } });
    try {
      expect((await readOnly.call('create_volume', { backend: 'files', size: 1 })).text).toMatch(/^READ_ONLY: /);
    } finally {
      await readOnly.close();
    }

    const records = auditCli();
    expect(records.map((r) => [r.tool, r.outcome])).toEqual([
      ['create_volume', 'ok'],
      ['create_volume', 'error'],
      ['delete_volume', 'error'],
      ['connect_volume', 'error'],
      ['delete_volume', 'ok'],
      ['create_volume', 'error'],
    ]);
    for (const record of records) {
      expect(record).toMatchObject({ server: 'audit-server', client: 'cinderlib-mcp-tests', time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
      expect(Object.keys(record).sort()).toEqual(['arguments', 'client', 'outcome', 'server', 'time', 'tool', ...(record.outcome === 'error' ? ['error'] : [])].sort());
    }
    expect(records[0].arguments).toEqual({ backend: 'files', size: 1, name: 'named after ***' });
    expect(records[1].error).toMatch(/^INVALID_ARGUMENT: create_volume: size/);
    expect(records[3].arguments.connector.chap_password).toBe('***');
    expect(records[5].error).toMatch(/^READ_ONLY: /);

    // The file holds the same records, one JSON line each, readable by its owner alone.
    const file = join(root, 'audit.jsonl');
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines).toEqual(records);
    expect(statSync(file).mode & 0o077).toBe(0);
    const everything = readFileSync(file, 'utf8') + JSON.stringify(records);
    for (const secret of [SECRET, 'ConnectorSecret-77']) expect(everything).not.toContain(secret);

    // --since keeps the records from that time on.
    expect(auditCli('--since', records[4].time).map((r) => r.tool)).toEqual(records.slice(4).map((r) => r.tool));
    const bad = spawnSync(process.execPath, [BIN, 'audit', '--since', 'yesterday-ish', '--config', join(root, 'config.yaml')], { encoding: 'utf8', cwd: REPO_ROOT });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--since needs a date and time/);
  });

  it("keeps a hostile nesting out of the record, so every JSON reader (Python's too) reads each audit line", async () => {
    let nested: unknown = 'bottom';
    for (let level = 0; level < 1000; level++) nested = { deeper: nested };
    const server = await startMcpServer(config(), { workDir: root, keepWorkDir: true, env: { AUDIT_TEST_SECRET: SECRET } });
    try {
      expect((await server.call('create_volume', { backend: 'files', size: 1, request_id: nested })).text).toMatch(/^INVALID_ARGUMENT: /);
    } finally {
      await server.close();
    }
    const last = readFileSync(join(root, 'audit.jsonl'), 'utf8').trim().split('\n').pop()!;
    const python = spawnSync('python3', ['-c', 'import json,sys; r=json.loads(sys.stdin.read()); print(r["tool"], r["outcome"])'], { input: last, encoding: 'utf8' });
    expect(python.stderr).toBe('');
    expect(python.stdout.trim()).toBe('create_volume error');
    expect(last).toContain('nested deeper than 16 levels');
    expect(last.length).toBeLessThan(2000);
  });
});
