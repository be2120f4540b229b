import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import ssh2 from 'ssh2';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMcpServer, type McpHarness } from '../helpers/server.js';

/**
 * An ssh_hosts_key_file where no file can be made (under /proc, where Node's recursive mkdir
 * never returns) must fail that backend with a reason while the server keeps answering; before,
 * the first SSH handshake froze the whole server at 100% CPU.
 */
describe('ssh_hosts_key_file on a path that cannot hold a file', () => {
  let sshServer: ssh2.Server;
  let server: McpHarness;
  let root: string;
  const knownHostsFile = '/proc/cinderlib-mcp-test/known_hosts';

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-known-hosts-'));
    // A real SSH server on 127.0.0.1: the handshake reaches host-key verification, nothing more.
    const hostKey = ssh2.utils.generateKeyPairSync('ed25519');
    sshServer = new ssh2.Server({ hostKeys: [hostKey.private] }, (client) => {
      client.on('authentication', (context) => context.reject());
      client.on('error', () => {});
    });
    await new Promise<void>((resolve) => sshServer.listen(0, '127.0.0.1', resolve));
    const port = (sshServer.address() as AddressInfo).port;
    server = await startMcpServer({
      global: { persistence_config: { storage: 'memory' } },
      backends: [
        {
          volume_backend_name: 'remote-lvm',
          volume_driver: 'lvm',
          san_ip: `127.0.0.1:${port}`,
          san_login: 'root',
          san_password: 'unused-password',
          ssh_hosts_key_file: knownHostsFile,
        },
        { volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'volumes') },
      ],
    });
  });
  afterAll(async () => {
    await server?.close();
    await new Promise((resolve) => sshServer?.close(resolve));
    rmSync(root, { recursive: true, force: true });
  });

  it('fails that backend with a clear reason and keeps serving the others', async () => {
    let backends: Array<{ id: string; initialized: boolean; error?: string }> = [];
    // Wait for the SSH attempt to settle; a frozen server never answers and the test times out.
    for (;;) {
      backends = (await server.call('list_backends')).data.backends;
      if (backends.find((backend) => backend.id === 'remote-lvm')?.error) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const remote = backends.find((backend) => backend.id === 'remote-lvm')!;
    expect(remote.initialized).toBe(false);
    expect(remote.error).toMatch(/cannot record the host key of \[127\.0\.0\.1\]:\d+ \(SHA256:[^)]+\) in ssh_hosts_key_file \/proc\/cinderlib-mcp-test\/known_hosts: ENOENT/);
    const stats = await server.call('get_stats', { backend: 'files', refresh: true });
    expect(stats.isError, stats.text).toBe(false);
  });
});
