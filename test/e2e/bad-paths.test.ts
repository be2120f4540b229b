import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import ssh2 from 'ssh2';
import type { AddressInfo } from 'node:net';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XmsEmulator } from '../emulators/xtremio/server.js';
import { startMcpServer, type McpHarness } from '../helpers/server.js';

/**
 * Files a config names can be anything. Before, the server read them with Node's synchronous
 * calls: a FIFO, named directly or through /proc, made open() wait for a writer that never comes
 * and froze every backend and every call. Now each such option fails its own backend with a
 * reason naming the backend, the option and the path, while a file backend in the same config
 * keeps serving.
 */

/** A /proc file that stat calls regular but that cannot be read from its start. */
const PROC_MEM = '/proc/self/mem';

let root: string;
let fifo: string;
/** The same FIFO, reached through the server's own /proc entry. */
let procFifo: string;
let bigFile: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-bad-paths-'));
  fifo = join(root, 'lvm.conf');
  const made = spawnSync('mkfifo', [fifo]);
  if (made.status !== 0) throw new Error(`mkfifo failed: ${made.stderr.toString()}`);
  procFifo = `/proc/self/root${fifo}`;
  bigFile = join(root, 'two-mib');
  writeFileSync(bigFile, '');
  truncateSync(bigFile, 2 * 1024 * 1024);
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

type BackendRow = { id: string; initialized: boolean; error?: string };

/** list_backends until every backend in `ids` reports an error; a frozen server never answers and the test times out. */
async function settledBackends(server: McpHarness, ids: string[]): Promise<Record<string, BackendRow>> {
  for (;;) {
    const backends: BackendRow[] = (await server.call('list_backends')).data.backends;
    const byId = Object.fromEntries(backends.map((backend) => [backend.id, backend]));
    if (ids.every((id) => byId[id]?.error)) return byId;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The file backend of the same config still creates and deletes a volume. */
async function expectFileBackendServes(server: McpHarness): Promise<void> {
  const created = await server.call('create_volume', { backend: 'files', size: 1 });
  expect(created.isError, created.text).toBe(false);
  const deleted = await server.call('delete_volume', { volume_id: created.data.id });
  expect(deleted.isError, deleted.text).toBe(false);
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('san_private_key on a FIFO, under /proc, or too large', () => {
  let sshServer: ssh2.Server;
  let server: McpHarness;
  let connections = 0;

  beforeAll(async () => {
    // A real SSH server on 127.0.0.1: were the key skipped, the backend would log in here instead.
    const hostKey = ssh2.utils.generateKeyPairSync('ed25519');
    sshServer = new ssh2.Server({ hostKeys: [hostKey.private] }, (client) => {
      connections++;
      client.on('authentication', (context) => context.reject());
      client.on('error', () => {});
    });
    await new Promise<void>((resolve) => sshServer.listen(0, '127.0.0.1', resolve));
    const port = (sshServer.address() as AddressInfo).port;
    const sshBackend = (name: string, key: string) => ({
      volume_backend_name: name,
      volume_driver: 'lvm',
      san_ip: `127.0.0.1:${port}`,
      san_login: 'root',
      san_private_key: key,
      ssh_hosts_key_file: join(root, 'known_hosts'),
    });
    server = await startMcpServer({
      global: { persistence_config: { storage: 'memory' } },
      backends: [
        sshBackend('key-fifo', fifo),
        sshBackend('key-proc-fifo', procFifo),
        sshBackend('key-proc-mem', PROC_MEM),
        sshBackend('key-big', bigFile),
        { volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'volumes-ssh') },
      ],
    });
  });
  afterAll(async () => {
    await server?.close();
    await new Promise((resolve) => sshServer?.close(resolve));
  });

  it('fails each of those backends with the reason and keeps serving the others', async () => {
    const byId = await settledBackends(server, ['key-fifo', 'key-proc-fifo', 'key-proc-mem', 'key-big']);
    const reasons: Array<[string, string, string]> = [
      ['key-fifo', fifo, 'not a regular file (a FIFO)'],
      ['key-proc-fifo', procFifo, 'not a regular file (a FIFO)'],
      ['key-proc-mem', PROC_MEM, 'EIO (input/output error while reading)'],
      ['key-big', bigFile, 'larger than 1 MiB'],
    ];
    for (const [id, path, reason] of reasons) {
      expect(byId[id].initialized).toBe(false);
      // san_private_key is secret by its name (contract section 6), so its value, the path, reads as the mask.
      expect(byId[id].error).toMatch(new RegExp(`backend "${id}": .*cannot read san_private_key \\*\\*\\*: ${escape(reason)}`));
      expect(byId[id].error).not.toContain(path);
    }
    // The key is read before any connection: the SSH server never saw one.
    expect(connections).toBe(0);
    expect(byId.files.initialized).toBe(true);
    await expectFileBackendServes(server);
  });
});

describe('driver_ssl_cert_path on a FIFO, under /proc, or too large', () => {
  const xms = new XmsEmulator({ password: 'xms-bad-paths-pw' });
  let server: McpHarness;

  beforeAll(async () => {
    await xms.start();
    const restBackend = (name: string, ca: string) => ({
      volume_backend_name: name,
      volume_driver: 'xtremio',
      san_ip: xms.address,
      san_login: 'xtremio_user',
      san_password: 'xms-bad-paths-pw',
      driver_ssl_cert_path: ca,
    });
    server = await startMcpServer({
      global: { persistence_config: { storage: 'memory' } },
      backends: [
        restBackend('ca-fifo', fifo),
        restBackend('ca-proc-fifo', procFifo),
        restBackend('ca-proc-mem', PROC_MEM),
        restBackend('ca-big', bigFile),
        // The same array with its real CA: the other failures are the paths', not the array's.
        restBackend('ca-good', xms.certs.caPath),
        { volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'volumes-ca') },
      ],
    });
  });
  afterAll(async () => {
    await server?.close();
    await xms.cleanup();
  });

  it('fails each of those backends with the reason and keeps serving the others', async () => {
    const byId = await settledBackends(server, ['ca-fifo', 'ca-proc-fifo', 'ca-proc-mem', 'ca-big']);
    const reasons: Array<[string, string, string]> = [
      ['ca-fifo', fifo, 'not a regular file (a FIFO)'],
      ['ca-proc-fifo', procFifo, 'not a regular file (a FIFO)'],
      ['ca-proc-mem', PROC_MEM, 'EIO (input/output error while reading)'],
      ['ca-big', bigFile, 'larger than 1 MiB'],
    ];
    for (const [id, path, reason] of reasons) {
      expect(byId[id].initialized).toBe(false);
      expect(byId[id].error).toMatch(new RegExp(`backend "${id}": cannot read driver_ssl_cert_path ${escape(path)}: ${escape(reason)}`));
    }
    const good = await server.call('get_stats', { backend: 'ca-good', refresh: true });
    expect(good.isError, good.text).toBe(false);
    await expectFileBackendServes(server);
  });
});

describe('lvm_conf_file on a FIFO or under /proc', () => {
  let server: McpHarness;

  beforeAll(async () => {
    server = await startMcpServer({
      global: { persistence_config: { storage: 'memory' } },
      backends: [
        // Named lvm.conf: before, its directory became LVM_SYSTEM_DIR and every lvm command waited on it.
        { volume_backend_name: 'conf-fifo', volume_driver: 'lvm', volume_group: 'cinderlib-mcp-bad-paths', lvm_conf_file: fifo },
        { volume_backend_name: 'conf-proc-fifo', volume_driver: 'lvm', volume_group: 'cinderlib-mcp-bad-paths', lvm_conf_file: procFifo },
        { volume_backend_name: 'conf-proc-dir', volume_driver: 'lvm', volume_group: 'cinderlib-mcp-bad-paths', lvm_conf_file: '/proc/self' },
        { volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'volumes-lvm') },
      ],
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('fails each of those backends with the reason and keeps serving the others', async () => {
    const byId = await settledBackends(server, ['conf-fifo', 'conf-proc-fifo', 'conf-proc-dir']);
    const reasons: Array<[string, string, string]> = [
      ['conf-fifo', fifo, 'not a regular file (a FIFO)'],
      ['conf-proc-fifo', procFifo, 'not a regular file (a FIFO)'],
      ['conf-proc-dir', '/proc/self', 'not a regular file (a directory)'],
    ];
    for (const [id, path, reason] of reasons) {
      expect(byId[id].initialized).toBe(false);
      expect(byId[id].error).toMatch(new RegExp(`backend "${id}": cannot use lvm_conf_file ${escape(path)}: ${escape(reason)}`));
    }
    await expectFileBackendServes(server);
  });
});
