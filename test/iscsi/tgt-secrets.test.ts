import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { BIN, REPO_ROOT, startMcpServer, type McpHarness } from '../helpers/server.js';
import { runBriefMarker, watchCommandLines } from './cmdline-watch.js';
import { chapEnvironment, iscsiPrerequisites, iscsiUrl, readCapacity, useTgtd, type TgtdFixture } from './fixtures.js';

/**
 * Contract section 11 against a real tgtd: no CHAP password is ever on a command line (which
 * every local user reads in /proc/<pid>/cmdline), across connects, extends and disconnects.
 */
const missing = iscsiPrerequisites();
const inCi = process.env.CI === 'true';
const GIB = 1024 ** 3;
const INITIATOR = 'iqn.1994-05.com.example:host-a';

if (missing && !inCi) {
  describe.skip(`CHAP secrets and tgt (${missing})`, () => {
    it('runs where its prerequisites are', () => undefined);
  });
} else if (missing) {
  describe('CHAP secrets and tgt', () => {
    it('has its prerequisites under CI', () => {
      throw new Error(`the iSCSI suite ${missing}; .ci/run must install them`);
    });
  });
} else {
  describe('CHAP secrets and tgt', () => {
    let root: string;
    let tgtd: TgtdFixture;
    let server: McpHarness;
    let configPath: string;
    const targetsDir = () => join(root, 'targets');
    const config = () => ({
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(root, 'meta.sqlite')}` } },
      backends: [
        {
          volume_backend_name: 'files',
          volume_driver: 'file',
          volumes_dir: join(root, 'volumes'),
          target_helper: 'tgtadm',
          target_ip_address: tgtd.address,
          target_port: tgtd.port,
          target_config_dir: targetsDir(),
        },
      ],
    });
    const start = () => startMcpServer(config(), { workDir: root, keepWorkDir: true, configFileName: 'config.yaml' });
    const secretOf = (connectionId: string) => {
      const result = spawnSync(process.execPath, [BIN, 'connection-secret', connectionId, '--config', configPath], { encoding: 'utf8', cwd: REPO_ROOT });
      const lines = Object.fromEntries(result.stdout.trim().split('\n').filter(Boolean).map((line) => line.split(': ') as [string, string]));
      return { username: lines.auth_username as string, password: lines.auth_password as string };
    };
    const targetIqn = (volumeId: string) => `iqn.2010-10.org.openstack:volume-${volumeId}`;

    beforeAll(async () => {
      root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-tgt-secrets-'));
      tgtd = useTgtd();
      configPath = join(root, 'config.yaml');
      writeFileSync(configPath, stringify(config()));
      server = await start();
    });
    afterAll(async () => {
      for (const connection of (await server?.call('list_connections', { limit: 1000 }))?.data?.connections ?? []) {
        await server.call('disconnect_volume', { connection_id: connection.id });
      }
      await server?.close();
      tgtd?.stop();
      rmSync(root, { recursive: true, force: true });
    });

    it('puts no CHAP password on any command line across connect, extend and disconnect cycles', async () => {
      const watch = await watchCommandLines();
      const marker = `brief-marker-${process.pid}-${Date.now()}`;
      const passwords = new Set<string>();
      let seen: { scans: number; lines: string[] };
      try {
        runBriefMarker(marker);
        for (let cycle = 0; cycle < 4; cycle++) {
          const volume = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
          // Twice per volume: the second connect re-exports with the credentials already recorded.
          for (const size of [2, 3]) {
            const connected = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-a', initiator: INITIATOR } });
            expect(connected.isError, connected.text).toBe(false);
            const credentials = secretOf(connected.data.id);
            expect(credentials.password).toHaveLength(16);
            passwords.add(credentials.password);
            const extended = await server.call('extend_volume', { volume_id: volume.id, new_size: size });
            expect(extended.isError, extended.text).toBe(false);
            // The initiator takes the credentials from its environment: the test itself leaks nothing either.
            expect(readCapacity(iscsiUrl(tgtd.portal, targetIqn(volume.id), 1), chapEnvironment(credentials))).toEqual({ bytes: size * GIB });
            expect((await server.call('disconnect_volume', { connection_id: connected.data.id })).isError).toBe(false);
          }
          expect((await server.call('delete_volume', { volume_id: volume.id })).isError).toBe(false);
        }
      } finally {
        seen = await watch.stop();
      }
      // The watcher itself worked: it scanned often and caught a 20 ms command.
      expect(seen.scans).toBeGreaterThan(50);
      expect(seen.lines.some((line) => line.includes(marker))).toBe(true);
      expect(passwords.size).toBe(4);
      const leaked = seen.lines.filter((line) => [...passwords].some((password) => line.includes(password)));
      const masked = leaked.map((line) => [...passwords].reduce((text, password) => text.split(password).join('***'), line));
      expect(masked, 'command lines that carried a CHAP password (masked here)').toEqual([]);
    });
  });
}
