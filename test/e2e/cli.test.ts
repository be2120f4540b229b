import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteVolumeStore } from '../../src/store/sqlite.js';
import { BIN, startMcpServer } from '../helpers/server.js';

const root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-cli-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function writeConfig(name: string, content: object | string): string {
  const path = join(root, name);
  writeFileSync(path, typeof content === 'string' ? content : name.endsWith('.json') ? JSON.stringify(content) : stringify(content));
  return path;
}

function run(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, XDG_DATA_HOME: join(root, 'xdg'), ...env },
    input: '',
    timeout: 60_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('the cinderlib-mcp command', () => {
  it('imports a cinder.conf into a config that check reads, with secrets as ${env:} references only', () => {
    const conf = writeConfig(
      'cinder.conf',
      [
        '[DEFAULT]',
        'enabled_backends = files, xtremio-1',
        'transport_url = rabbit://cinder:RabbitPass-93@mq:5672/',
        '[database]',
        'connection = mysql+pymysql://cinder:DbPass-41@db/cinder',
        '[files]',
        'volume_driver = file',
        `volumes_dir = ${join(root, 'imported-volumes')}`,
        '[xtremio-1]',
        'volume_driver = cinder.volume.drivers.dell_emc.xtremio.XtremIOISCSIDriver',
        'volume_backend_name = xtremio',
        'san_ip = 127.0.0.1:1',
        'san_login = admin',
        'san_password = XmsPass-77',
        'xtremio_cluster_name = cluster1',
        'rbd_pool = volumes',
        '',
      ].join('\n'),
    );
    const imported = run(['import-cinder-conf', conf]);
    expect(imported.code, imported.stderr).toBe(0);
    for (const secret of ['RabbitPass-93', 'DbPass-41', 'XmsPass-77']) expect(imported.stdout + imported.stderr).not.toContain(secret);
    expect(imported.stdout).toContain('san_password: ${env:CINDERLIB_XTREMIO_1_SAN_PASSWORD}');
    expect(imported.stderr).toMatch(/rbd_pool/);
    const config = writeConfig('imported.yaml', imported.stdout);
    const checked = run(['check', '--config', config], { CINDERLIB_XTREMIO_1_SAN_PASSWORD: 'XmsPass-77' });
    expect(checked.stdout).toMatch(/^files\tfile\tinitialized$/m);
    expect(checked.stdout).toMatch(/^xtremio\tcinder\.volume\.drivers\.dell_emc\.xtremio\.XtremIOISCSIDriver\tnot initialized: /m);
    expect(checked.stdout + checked.stderr).not.toContain('XmsPass-77');
  });

  it('prints --help and --version', () => {
    const help = run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/cinderlib-mcp check \[--config FILE\]/);
    const version = run(['--version']);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const wrong = run(['--frobnicate']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/unknown argument "--frobnicate"/);
  });

  it('check prints one masked line per backend and exits 0 only when all initialized', () => {
    const good = writeConfig('good.json', {
      backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'good') }],
    });
    const ok = run(['check', '--config', good]);
    expect(ok.stdout).toMatch(/^files\tfile\tinitialized$/m);
    expect(ok.code).toBe(0);

    const mixed = writeConfig('mixed.yaml', {
      backends: [
        { volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'mixed') },
        { volume_backend_name: 'nope', volume_driver: 'cinder.volume.drivers.netapp.common.NetAppDriver', san_password: 'hunter2-canary' },
        { volume_backend_name: 'typo', volume_driver: 'file', volumes_dir: join(root, 'typo'), reserved_percentage: 'lots', volume_grup: 'x' },
      ],
    });
    const bad = run(['check', '--config', mixed]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/^files\tfile\tinitialized$/m);
    expect(bad.stdout).toMatch(
      /^nope\tcinder\.volume\.drivers\.netapp\.common\.NetAppDriver\tnot initialized: backend "nope": volume_driver ".*" is not supported; use one of: file, .*lvm/m,
    );
    expect(bad.stdout).toMatch(/^typo\tfile\tnot initialized: backend "typo": option "reserved_percentage" must be an integer from 0 to 100, got "lots"$/m);
    expect(bad.stdout + bad.stderr).not.toContain('hunter2-canary');
  });

  it('warns once about an unknown option and keeps serving', async () => {
    const server = await startMcpServer({
      global: { persistence_config: { storage: 'memory' } },
      backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'warn'), volume_grup: 'x' }],
    });
    try {
      await server.call('list_backends');
      await server.call('get_stats', { backend: 'files' });
      const warnings = server.stderr().match(/option "volume_grup" is not used by the file driver/g) ?? [];
      expect(warnings.length).toBe(1);
    } finally {
      await server.close();
    }
  });

  it('check names what is wrong with a config and exits non-zero', () => {
    const duplicate = writeConfig('dup.yaml', {
      backends: [
        { volume_backend_name: 'same', volume_driver: 'file', volumes_dir: join(root, 'dup-1') },
        { volume_backend_name: 'same', volume_driver: 'file', volumes_dir: join(root, 'dup-2') },
        { volume_backend_name: 'fine', volume_driver: 'file', volumes_dir: join(root, 'dup-fine') },
      ],
    });
    const dup = run(['check', '--config', duplicate]);
    expect(dup.code).toBe(1);
    expect(dup.stdout).toMatch(/^same\tfile\tnot initialized: .*backends\[0\] and backends\[1\] are all named "same"/m);
    expect(dup.stdout).toMatch(/^fine\tfile\tinitialized$/m);

    const envMissing = writeConfig('env.yaml', {
      backends: [
        { volume_backend_name: 'x', volume_driver: 'file', volumes_dir: join(root, 'env-x'), san_password: '${env:NOT_SET_ANYWHERE}' },
        { volume_backend_name: 'y', volume_driver: 'file', volumes_dir: join(root, 'env-y') },
      ],
    });
    const missing = run(['check', '--config', envMissing]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toMatch(/^x\tfile\tnot initialized: .*environment variable NOT_SET_ANYWHERE is not set/m);
    expect(missing.stdout).toMatch(/^y\tfile\tinitialized$/m);

    const yamlBroken = writeConfig('broken.yaml', 'backends:\n  - volume_backend_name: x\n    volume_driver: [file\n');
    const broken = run(['check', '--config', yamlBroken]);
    expect(broken.code).toBe(1);
    // The file is named once.
    expect(broken.stdout).toMatch(/^config: config file \S*broken\.yaml is not valid YAML: .* at line \d+, column \d+:\n\n.*volume_driver: \[file/m);
    expect(run(['check', '--config', join(root, 'absent.yaml')]).stdout).toMatch(/cannot read config file .*absent\.yaml: ENOENT/);
    const engine = writeConfig('pg.yaml', {
      global: { persistence_config: { storage: 'db', connection: 'mysql://u:p@db/x' } },
      backends: [{ volume_backend_name: 'x', volume_driver: 'file' }],
    });
    expect(run(['check', '--config', engine]).stdout).toMatch(
      /"mysql:\.\.\." is not supported; use sqlite:\/\/\/ABS\/PATH \(one server\) or a postgresql:\/\/ URL with user, password, host, port and database \(several servers\)/,
    );
  });

  it('serves even a config it cannot use, and says why over MCP', async () => {
    const jsonBroken = writeConfig('broken.json', '{"backends": [\n  {"volume_backend_name": "x",}\n]}');
    const server = await startMcpServer(null, { args: ['--config', jsonBroken] });
    try {
      const listed = await server.call('list_backends');
      expect(listed.isError).toBe(false);
      expect(listed.data.backends).toEqual([]);
      expect(listed.data.config_error).toMatch(/broken\.json is not valid JSON: .*line 2, column \d+/);
      for (const [tool, args] of [
        ['get_stats', { backend: 'x' }],
        ['list_volumes', {}],
        ['create_volume', { backend: 'x', size: 1 }],
      ] as const) {
        const answer = await server.call(tool, args);
        expect(answer.text).toMatch(/^BACKEND_UNAVAILABLE: the server's config cannot be used, so it serves no backend: .*broken\.json is not valid JSON: .*line 2, column \d+/);
      }
    } finally {
      await server.close();
    }

    const healthyAndNot = await startMcpServer({
      global: { persistence_config: { storage: 'memory' } },
      backends: [
        { volume_backend_name: 'needs-env', volume_driver: 'file', volumes_dir: join(root, 'ne'), san_password: '${env:NOT_SET_ANYWHERE}' },
        { volume_backend_name: 'healthy', volume_driver: 'file', volumes_dir: join(root, 'healthy') },
      ],
    });
    try {
      const { backends } = (await healthyAndNot.call('list_backends')).data;
      expect(backends[0]).toMatchObject({ id: 'needs-env', initialized: false, error: expect.stringMatching(/environment variable NOT_SET_ANYWHERE is not set/) });
      expect(backends[0].next_retry_at).toBeUndefined(); // a config problem is not retried
      expect(backends[1]).toMatchObject({ id: 'healthy', initialized: true });
      expect((await healthyAndNot.call('create_volume', { backend: 'healthy', size: 1 })).isError).toBe(false);
    } finally {
      await healthyAndNot.close();
    }
  });

  it('check passes while the server it checks is running on the same folder and store', async () => {
    const config = {
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(root, 'live.sqlite')}` } },
      backends: [{ volume_backend_name: 'live', volume_driver: 'file', volumes_dir: join(root, 'live') }],
    };
    const server = await startMcpServer(config);
    try {
      expect((await server.call('list_backends')).data.backends[0].initialized).toBe(true);
      const checked = run(['check', '--config', writeConfig('live.yaml', config)]);
      expect(checked.stdout).toMatch(/^live\tfile\tinitialized$/m);
      expect(checked.stdout).toMatch(/^ {2}note: volumes_dir .*live is in use by cinderlib-mcp pid \d+/m);
      expect(checked.code).toBe(0);
      // And the server was not disturbed by it.
      expect((await server.call('create_volume', { backend: 'live', size: 1 })).isError).toBe(false);
    } finally {
      await server.close();
    }
  });

  it('finds its config through CINDERLIB_MCP_CONFIG when --config is absent', () => {
    const path = writeConfig('from-env.yaml', { backends: [{ volume_backend_name: 'via-env', volume_driver: 'file', volumes_dir: join(root, 'via-env') }] });
    const result = run(['check'], { CINDERLIB_MCP_CONFIG: path });
    expect(result.stdout).toMatch(/^via-env\tfile\tinitialized$/m);
  });
});

describe('start-up after a crash', () => {
  it('surfaces records left mid-operation as errors that delete_volume cleans up', async () => {
    const dbPath = join(root, 'crash.sqlite');
    const store = new SqliteVolumeStore(dbPath);
    const now = new Date().toISOString();
    const base = { backend: 'files', description: '', size: 1, pool_name: 'files', bootable: false, created_at: now, updated_at: now, status_reason: null, provider_location: null };
    await store.insert({ ...base, id: '11111111-1111-4111-8111-111111111111', name: 'was creating', status: 'creating' });
    await store.insert({ ...base, id: '22222222-2222-4222-8222-222222222222', name: 'was fine', status: 'available' });
    await store.close();

    const server = await startMcpServer({
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${dbPath}` } },
      backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'crash-vols') }],
    });
    try {
      const interrupted = await server.call('get_volume', { volume_id: '11111111-1111-4111-8111-111111111111' });
      expect(interrupted.data.status).toBe('error');
      expect(interrupted.data.status_reason).toMatch(/^interrupted while creating/);
      const fine = await server.call('get_volume', { volume_id: '22222222-2222-4222-8222-222222222222' });
      expect(fine.data.status).toBe('available');
      expect(server.stderr()).toMatch(/volume 11111111-1111-4111-8111-111111111111 on backend "files" was left/);
      const deleted = await server.call('delete_volume', { volume_id: '11111111-1111-4111-8111-111111111111' });
      expect(deleted.isError, deleted.text).toBe(false);
    } finally {
      await server.close();
    }
  });
});

describe('a reader that goes away (contract section 11)', () => {
  it('dump into a pipe closed after the first bytes ends quietly with status 0', async () => {
    const dbPath = join(root, 'big-dump.sqlite');
    const store = new SqliteVolumeStore(dbPath);
    const now = new Date().toISOString();
    // About 1 MiB of dump: far more than a pipe holds, so dump is still writing when the reader leaves.
    for (let i = 0; i < 2000; i++) {
      const id = `${i.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
      await store.insert({
        id,
        backend: 'files',
        name: `v${i}`,
        description: 'd'.repeat(300),
        size: 1,
        pool_name: 'files',
        bootable: false,
        created_at: now,
        updated_at: now,
        status: 'available',
        status_reason: null,
        provider_location: null,
      });
    }
    await store.close();
    const config = writeConfig('big-dump.yaml', {
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${dbPath}` } },
      backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'big-dump-vols') }],
    });
    const child = spawn(process.execPath, [BIN, 'dump', '--config', config], { env: { ...process.env, XDG_DATA_HOME: join(root, 'xdg') }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let first = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.once('data', (chunk: Buffer) => {
      first = chunk.toString();
      child.stdout.destroy(); // as `| head -c 300` does
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (status) => resolve(status)));
    clearTimeout(timer);
    expect(first).toMatch(/^\[/);
    expect(stderr).not.toMatch(/EPIPE|fatal/i);
    expect(code, stderr).toBe(0);
  });

  it('the stdio server keeps answering when stderr is closed, and exits 0 when stdout is', async () => {
    const child = spawn(process.execPath, [BIN], {
      env: { ...process.env, XDG_DATA_HOME: join(root, 'xdg-no-stderr'), CINDERLIB_MCP_LOG_LEVEL: 'debug' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (status) => resolve(status)));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stderr.destroy(); // every log line from here on hits a closed pipe
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const send = (message: object) => child.stdin.write(JSON.stringify(message) + '\n');
    const answered = async (id: number) => {
      for (let i = 0; i < 200 && !out.split('\n').some((line) => line.includes(`"id":${id}`)); i++) await new Promise((resolve) => setTimeout(resolve, 50));
      return out.split('\n').some((line) => line.includes(`"id":${id}`));
    };
    send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'no-stderr', version: '1' } } });
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    for (let id = 2; id < 5; id++) {
      send({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'list_volumes', arguments: {} } });
      expect(await answered(id), out).toBe(true);
    }
    expect(child.exitCode).toBeNull();
    child.stdout.destroy(); // the client leaves
    send({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'list_volumes', arguments: {} } });
    expect(await exited).toBe(0);
    clearTimeout(timer);
  });
});
