import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { K2Emulator } from '../emulators/kaminario/server.js';
import { RawMcpServer, toolText, type RawAnswer } from '../helpers/raw-server.js';

/**
 * Connections are mutations with intent, locks and crash recovery like the others (issue 9): the
 * server is killed (SIGKILL) while the array is still working on a connect or a disconnect (the K2
 * emulator holds the mapping call, then does it anyway, as an array finishes a request whose caller
 * died). The volume is in-use from the connect's intent on, so its status never hides a record.
 * The next server undoes an interrupted connect and finishes an interrupted disconnect as soon as
 * its backend is up; one it cannot resolve yet stays in `error`, the volume in-use, until
 * disconnect_volume removes what is left on the array, and the record.
 */
const PASSWORD = 'k2-Crash-conn-4410';
const k2 = new K2Emulator({ password: PASSWORD });
const root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-crash-connections-'));
const configPath = join(root, 'config.json');
const connector = { host: 'crash-host', initiator: 'iqn.1994-05.com.example:crash-host' };

beforeAll(async () => {
  await k2.start();
  writeFileSync(
    configPath,
    JSON.stringify({
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(root, 'meta.sqlite')}` } },
      backends: [k2.cinderBackend('k2')],
    }),
  );
});
afterAll(async () => {
  await k2.cleanup();
  rmSync(root, { recursive: true, force: true });
});

const data = (answer: RawAnswer) => {
  const text = toolText(answer);
  if (answer.result?.isError) throw new Error(text);
  return answer.result!.structuredContent;
};
const mappings = () => [...k2.objects.get('mappings')!.values()];
const hosts = () => [...k2.objects.get('hosts')!.values()];

async function startServer(): Promise<RawMcpServer> {
  const server = new RawMcpServer(configPath);
  await server.initialize();
  return server;
}

/** Fires `tool`, waits until the array has the call it names, then kills the server; the array finishes the call after. */
async function killDuring(server: RawMcpServer, tool: string, args: Record<string, unknown>, method: string, path: string): Promise<void> {
  k2.slowDown({ method, pathIncludes: path, ms: 1_500 });
  const seen = k2.requests.length;
  server.callTool(tool, args);
  await server.until(() => k2.requests.slice(seen).some((line) => line.startsWith(`${method} `) && line.includes(path)), 20_000, `${method} ${path} reaching the array`);
  await server.kill9();
  await new Promise((resolve) => setTimeout(resolve, 1_800)); // the array finishes what it was asked
}

describe('connections survive a crash of the server', () => {
  /** Waits until start-up recovery has resolved the volume's interrupted connections. */
  async function untilResolved(server: RawMcpServer, volumeId: string): Promise<void> {
    await poll(
      async () => data(await server.call('list_connections', { volume_id: volumeId })).connections.length === 0,
      'start-up recovery resolving the interrupted connection',
    ).catch((error: Error) => {
      throw new Error(`${error.message}; server stderr:\n${server.stderr.slice(-3000)}`);
    });
  }

  async function poll(done: () => Promise<boolean>, what: string): Promise<void> {
    for (const deadline = Date.now() + 20_000; !(await done());) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  it('undoes a connect cut short at start-up: the mapping the array made and the host are removed, the volume is available again', async () => {
    let server = await startServer();
    const volume = data(await server.call('create_volume', { backend: 'k2', size: 1 }));
    await killDuring(server, 'connect_volume', { volume_id: volume.id, connector }, 'POST', '/mappings');
    expect(mappings()).toHaveLength(1); // the array made it though nobody heard

    server = await startServer();
    try {
      await untilResolved(server, volume.id);
      expect(mappings()).toEqual([]);
      expect(hosts()).toEqual([]);
      expect(data(await server.call('get_volume', { volume_id: volume.id })).status).toBe('available');
      expect(data(await server.call('delete_volume', { volume_id: volume.id }))).toEqual({ volume_id: volume.id, deleted: true });
    } finally {
      await server.close();
    }
  });

  it('finishes a disconnect cut short at start-up: nothing left on the array, the volume available', async () => {
    let server = await startServer();
    const volume = data(await server.call('create_volume', { backend: 'k2', size: 1 }));
    const connection = data(await server.call('connect_volume', { volume_id: volume.id, connector }));
    expect(mappings()).toHaveLength(1);
    await killDuring(server, 'disconnect_volume', { connection_id: connection.id }, 'DELETE', '/mappings');

    server = await startServer();
    try {
      await untilResolved(server, volume.id);
      expect(mappings()).toEqual([]);
      expect(hosts()).toEqual([]);
      expect(data(await server.call('get_volume', { volume_id: volume.id })).status).toBe('available');
      expect(data(await server.call('delete_volume', { volume_id: volume.id })).deleted).toBe(true);
    } finally {
      await server.close();
    }
  });

  it('keeps a connect it cannot undo yet (the array refuses) in error with the volume in-use; disconnect_volume removes it later', async () => {
    let server = await startServer();
    const volume = data(await server.call('create_volume', { backend: 'k2', size: 1 }));
    await killDuring(server, 'connect_volume', { volume_id: volume.id, connector }, 'POST', '/mappings');
    k2.failNext({ method: 'DELETE', pathIncludes: '/mappings', status: 400, times: 1 }); // not a busy answer: no retry

    server = await startServer();
    try {
      let connection: any;
      await poll(async () => {
        [connection] = data(await server.call('list_connections', { volume_id: volume.id })).connections;
        return connection?.status === 'error' && /disconnect failed/.test(connection.status_reason);
      }, 'the failed undo being recorded').catch((error: Error) => {
        throw new Error(`${error.message}; server stderr:\n${server.stderr.slice(-3000)}`);
      });
      expect(data(await server.call('get_volume', { volume_id: volume.id })).status).toBe('in-use');
      expect(toolText(await server.call('delete_volume', { volume_id: volume.id }))).toMatch(new RegExp(`^IN_USE: .*connection ${connection.id}`));
      expect(data(await server.call('disconnect_volume', { connection_id: connection.id })).disconnected).toBe(true);
      expect(mappings()).toEqual([]);
      expect(data(await server.call('get_volume', { volume_id: volume.id })).status).toBe('available');
      expect(data(await server.call('delete_volume', { volume_id: volume.id })).deleted).toBe(true);
    } finally {
      await server.close();
    }
  });
});
