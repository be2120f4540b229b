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
 * died). The next server on the same store shows the connection in `error`, saying what was
 * interrupted; the volume cannot be deleted past it; disconnect_volume removes what is left on the
 * array, and the record.
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
  return answer.result!.structuredContent as any;
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
  it('marks a connect cut short as error; disconnect_volume removes the mapping the array made, and the host', async () => {
    let server = await startServer();
    const volume = data(await server.call('create_volume', { backend: 'k2', size: 1 }));
    await killDuring(server, 'connect_volume', { volume_id: volume.id, connector }, 'POST', '/mappings');
    expect(mappings()).toHaveLength(1); // the array made it though nobody heard

    server = await startServer();
    try {
      const [connection] = data(await server.call('list_connections', { volume_id: volume.id })).connections;
      expect(connection).toMatchObject({ volume_id: volume.id, status: 'error', status_reason: expect.stringMatching(/^interrupted while connecting: the server stopped/) });
      const refused = toolText(await server.call('delete_volume', { volume_id: volume.id }));
      expect(refused).toMatch(new RegExp(`^IN_USE: .*connection ${connection.id}`));
      expect(data(await server.call('disconnect_volume', { connection_id: connection.id }))).toEqual({ connection_id: connection.id, disconnected: true });
      expect(mappings()).toEqual([]);
      expect(hosts()).toEqual([]);
      expect(data(await server.call('get_volume', { volume_id: volume.id })).status).toBe('available');
      expect(data(await server.call('delete_volume', { volume_id: volume.id }))).toEqual({ volume_id: volume.id, deleted: true });
    } finally {
      await server.close();
    }
  });

  it('marks a disconnect cut short as error, keeps the volume in-use, and a second disconnect finishes it', async () => {
    let server = await startServer();
    const volume = data(await server.call('create_volume', { backend: 'k2', size: 1 }));
    const connection = data(await server.call('connect_volume', { volume_id: volume.id, connector }));
    expect(mappings()).toHaveLength(1);
    await killDuring(server, 'disconnect_volume', { connection_id: connection.id }, 'DELETE', '/mappings');

    server = await startServer();
    try {
      const [left] = data(await server.call('list_connections', { volume_id: volume.id })).connections;
      expect(left).toMatchObject({ id: connection.id, status: 'error', status_reason: expect.stringMatching(/^interrupted while disconnecting/) });
      expect(data(await server.call('get_volume', { volume_id: volume.id })).status).toBe('in-use');
      expect(data(await server.call('disconnect_volume', { connection_id: connection.id })).disconnected).toBe(true);
      expect(mappings()).toEqual([]);
      expect(hosts()).toEqual([]);
      expect(data(await server.call('list_connections', {})).connections).toEqual([]);
      expect(data(await server.call('delete_volume', { volume_id: volume.id })).deleted).toBe(true);
    } finally {
      await server.close();
    }
  });
});
