import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { stringify } from 'yaml';
import { TgtTarget, type TgtSettings } from '../../drivers/kit/targets/index.js';
import { isValidProviderAuth, parseProviderAuth } from '../../drivers/kit/iscsi/chap.js';
import { StorageError } from '../../src/base/errors.js';
import { LocalRunner } from '../../drivers/kit/exec/local.js';
import type { CommandRunner } from '../../drivers/kit/exec/runner.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { startMcpServer, type McpHarness } from '../helpers/server.js';
import { runBriefMarker, watchCommandLines } from './cmdline-watch.js';
import { chapEnvironment, iscsiPrerequisites, iscsiUrl, readCapacity, useTgtd, type TgtdFixture } from './fixtures.js';
import { connectionSecret } from '../helpers/connection-secret.js';

/**
 * Contract section 11 against a real tgtd: no CHAP password is ever on a command line (which
 * every local user reads in /proc/<pid>/cmdline), across connects, extends and disconnects.
 */
const missing = iscsiPrerequisites();
const inCi = process.env.CI === 'true';
const GIB = 1024 ** 3;
const INITIATOR = 'iqn.1994-05.com.example:host-a';
const SMUGGLING_AUTH = 'CHAP u000000000000000000 p000000000000000\n\tbacking-store\t/some/file\n';

describe('provider_auth parsing', () => {
  it('takes exactly "CHAP <user> <password>", both parts printable ASCII without spaces', () => {
    expect(parseProviderAuth('CHAP abcDEF234 pqr789XYZ')).toEqual({ username: 'abcDEF234', password: 'pqr789XYZ' });
    expect(isValidProviderAuth('CHAP a!b~c d#e$f')).toBe(true);
    for (const bad of [
      SMUGGLING_AUTH,
      'CHAP user pass extra',
      'CHAP user  pass',
      'CHAP user\tpass x',
      'CHAP user pass\n',
      ' CHAP user pass',
      'chap user pass',
      'CHAP user',
      'CHAP  pass',
      'CHAP user p\u00e4ss',
      'CHAP us\u0000er pass',
      '',
      null,
      undefined,
      42,
    ]) {
      expect(parseProviderAuth(bad), JSON.stringify(bad)).toBeUndefined();
      expect(isValidProviderAuth(bad), JSON.stringify(bad)).toBe(false);
    }
  });
});

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
    const secretOf = (connectionId: string) => connectionSecret(configPath, connectionId);
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

    it('refuses a provider_auth that would smuggle a second config line: nothing exported, nothing written, the stored value kept', async () => {
      const volume = (await server.call('create_volume', { backend: 'files', size: 1 })).data;
      await server.close();
      const db = new Database(join(root, 'meta.sqlite'));
      db.prepare('UPDATE volumes SET provider_auth = ? WHERE id = ?').run(SMUGGLING_AUTH, volume.id);
      db.close();
      server = await start();
      const refused = await server.call('connect_volume', { volume_id: volume.id, connector: { host: 'host-a', initiator: INITIATOR } });
      expect(refused.text).toMatch(/^(INVALID_ARGUMENT|INTERNAL): .*provider_auth/);
      expect(refused.text).toContain(volume.id);
      expect(refused.text).not.toContain('p000000000000000');
      expect((await server.call('list_connections', { volume_id: volume.id })).data.connections).toEqual([]);
      expect(tgtd.targets()).not.toContain(targetIqn(volume.id));
      expect(tgtd.targets()).not.toContain('/some/file');
      expect(existsSync(join(targetsDir(), `volume-${volume.id}`))).toBe(false);
      const check = new Database(join(root, 'meta.sqlite'), { readonly: true });
      const stored = check.prepare('SELECT provider_auth FROM volumes WHERE id = ?').get(volume.id) as { provider_auth: string };
      check.close();
      expect(stored.provider_auth).toBe(SMUGGLING_AUTH);
    });

    describe('TgtTarget on this host', () => {
      const settings = (extra: Partial<TgtSettings> = {}): TgtSettings => ({
        backendName: 'direct',
        ipAddress: tgtd.address,
        port: tgtd.port,
        prefix: 'iqn.2010-10.org.openstack:',
        configDir: join(root, 'direct-targets'),
        writeCache: 'on',
        backingFlags: '',
        ...extra,
      });
      const target = (extra: Partial<TgtSettings> = {}, backing?: string) => {
        const runner = new LocalRunner();
        return new TgtTarget(settings(extra), { runner, privileged: async () => [] }, (volume) => backing ?? join(root, 'direct', `volume-${volume.id}`), {
          secrets: new SecretRegistry(),
          log: createLogger('tgt-test'),
        });
      };
      const newVolume = (providerAuth: string | null = null) => {
        const id = randomUUID();
        mkdirSync(join(root, 'direct'), { recursive: true });
        writeFileSync(join(root, 'direct', `volume-${id}`), Buffer.alloc(0));
        execFileSync('truncate', ['-s', '64M', join(root, 'direct', `volume-${id}`)]);
        return { id, size: 1, pool_name: 'direct', provider_auth: providerAuth };
      };
      const accounts = () => execFileSync('tgtadm', ['--lld', 'iscsi', '--mode', 'account', '--op', 'show'], { encoding: 'utf8' });
      const leftNothing = (id: string) => {
        expect(tgtd.targets()).not.toContain(id);
        expect(existsSync(join(root, 'direct-targets', `volume-${id}`))).toBe(false);
        expect(existsSync(join(root, 'direct-targets')) ? readdirSync(join(root, 'direct-targets')).filter((name) => name.includes(id)) : []).toEqual([]);
      };
      const refusal = async (attempt: Promise<unknown>) => {
        const error = await attempt.then(
          () => undefined,
          (caught: unknown) => caught,
        );
        expect(error).toBeInstanceOf(StorageError);
        expect(['INVALID_ARGUMENT', 'INTERNAL']).toContain((error as StorageError).code);
        return (error as StorageError).message;
      };

      it('exports with write-through and bsoflags sync, the account only in tgtd and the 0600 file, and removes both', async () => {
        const volume = newVolume();
        const exporter = target({ writeCache: 'off', backingFlags: 'sync' });
        const update = await exporter.createExport(volume);
        const credentials = parseProviderAuth((update as { provider_auth: string }).provider_auth)!;
        try {
          expect(credentials.password).toHaveLength(16);
          const shown = tgtd.targets();
          expect(shown).toContain(`iqn.2010-10.org.openstack:volume-${volume.id}`);
          expect(shown).toMatch(/Backing store flags: sync$/m);
          expect(shown).toContain(`SCSI SN: volume-${volume.id}`.slice(0, 20));
          expect(accounts()).toContain(credentials.username);
          const file = join(root, 'direct-targets', `volume-${volume.id}`);
          expect(statSync(file).mode & 0o077).toBe(0);
          expect(statSync(join(root, 'direct-targets')).mode & 0o077).toBe(0);
          expect(readFileSync(file, 'utf8')).toBe(
            [
              `<target iqn.2010-10.org.openstack:volume-${volume.id}>`,
              `    backing-store ${join(root, 'direct', `volume-${volume.id}`)}`,
              '    driver iscsi',
              `    incominguser ${credentials.username} ${credentials.password}`,
              '    bsoflags sync',
              '    write-cache off',
              `    scsi_sn volume-${volume.id}`,
              `    scsi_id volume-${volume.id}`,
              '</target>',
              '',
            ].join('\n'),
          );
          const url = iscsiUrl(tgtd.portal, `iqn.2010-10.org.openstack:volume-${volume.id}`, 1);
          expect(readCapacity(url, chapEnvironment(credentials))).toEqual({ bytes: 64 * 1024 ** 2 });
          expect(readCapacity(url).error).toMatch(/Authentication failure|Login Failed/i);
        } finally {
          await exporter.removeExport({ ...volume, provider_auth: `CHAP ${credentials.username} ${credentials.password}` });
        }
        leftNothing(volume.id);
        expect(accounts()).not.toContain(credentials.username);
      });

      it('extends and removes a target while an initiator is logged in: its connections are closed, tgtd stays up', async () => {
        const volume = newVolume();
        const exporter = target();
        const credentials = parseProviderAuth(((await exporter.createExport(volume)) as { provider_auth: string }).provider_auth)!;
        const exported = { ...volume, provider_auth: `CHAP ${credentials.username} ${credentials.password}` };
        const iqn = `iqn.2010-10.org.openstack:volume-${volume.id}`;
        const url = iscsiUrl(tgtd.portal, iqn, 1);
        // qemu-io holds a session open while it sleeps.
        const holder = spawn('qemu-io', ['-f', 'raw', '-c', 'sleep 20000', url], { env: chapEnvironment(credentials), stdio: 'ignore' });
        try {
          const session = () =>
            /I_T nexus: \d+/.test(
              tgtd
                .targets()
                .split(/^(?=Target \d+: )/m)
                .find((section) => section.includes(iqn)) ?? '',
            );
          for (let i = 0; i < 100 && !session(); i++) await new Promise((resolve) => setTimeout(resolve, 100));
          expect(session()).toBe(true);
          execFileSync('truncate', ['-s', '128M', join(root, 'direct', `volume-${volume.id}`)]);
          await exporter.extendExport(exported);
          expect(readCapacity(url, chapEnvironment(credentials))).toEqual({ bytes: 128 * 1024 ** 2 });
          await exporter.removeExport(exported);
          leftNothing(volume.id);
          expect(accounts()).not.toContain(credentials.username);
          // tgtd is still there and answering.
          expect(execFileSync('tgtadm', ['--lld', 'iscsi', '--op', 'show', '--mode', 'portal'], { encoding: 'utf8' })).toContain(tgtd.portal);
        } finally {
          holder.kill('SIGKILL');
          await exporter.removeExport(exported).catch(() => undefined);
        }
      });

      it('works for a server that is not root, through sudo -n; without a root helper it says to set one', async () => {
        const user = `clmcp-tgt${process.pid % 100000}`;
        const sudoers = `/etc/sudoers.d/${user}`;
        spawnSync('userdel', [user], { stdio: 'ignore' });
        execFileSync('useradd', ['--no-create-home', '--shell', '/bin/sh', user]);
        writeFileSync(sudoers, `${user} ALL=(root) NOPASSWD: /usr/bin/perl\n`, { mode: 0o440 });
        const home = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-tgt-user-'));
        try {
          const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
          chownSync(home, uid, uid);
          const local = new LocalRunner();
          const asUser: CommandRunner = {
            target: 'this host',
            run: (argv, options) => local.run(['runuser', '-u', user, '--', ...argv], options),
            isRoot: async () => false,
            close: async () => undefined,
          };
          const id = randomUUID();
          const backing = join(home, `volume-${id}`);
          execFileSync('runuser', ['-u', user, '--', 'truncate', '-s', '32M', backing]);
          const volume = { id, size: 1, pool_name: 'user', provider_auth: null };
          const make = (privileged: string[]) =>
            new TgtTarget(settings({ configDir: join(home, 'targets') }), { runner: asUser, privileged: async () => privileged }, () => backing, {
              secrets: new SecretRegistry(),
              log: createLogger('tgt-test'),
            });
          const refused = await make([])
            .createExport(volume)
            .then(
              () => undefined,
              (caught: unknown) => caught as StorageError,
            );
          expect(refused?.code).toBe('UNSUPPORTED');
          expect(refused?.message).toMatch(/tgtd on this host answers root only .*root_helper/);
          const exporter = make(['sudo', '-n']);
          const credentials = parseProviderAuth(((await exporter.createExport(volume)) as { provider_auth: string }).provider_auth)!;
          try {
            const file = join(home, 'targets', `volume-${id}`);
            expect(statSync(file).uid).toBe(uid);
            expect(statSync(file).mode & 0o077).toBe(0);
            expect(readCapacity(iscsiUrl(tgtd.portal, `iqn.2010-10.org.openstack:volume-${id}`, 1), chapEnvironment(credentials))).toEqual({ bytes: 32 * 1024 ** 2 });
          } finally {
            await exporter.removeExport({ ...volume, provider_auth: `CHAP ${credentials.username} ${credentials.password}` });
          }
          expect(tgtd.targets()).not.toContain(id);
          expect(existsSync(join(home, 'targets', `volume-${id}`))).toBe(false);
        } finally {
          rmSync(sudoers, { force: true });
          spawnSync('userdel', [user], { stdio: 'ignore' });
          rmSync(home, { recursive: true, force: true });
        }
      });

      it('refuses the smuggling provider_auth, naming the volume and the field, leaving nothing', async () => {
        const volume = newVolume(SMUGGLING_AUTH);
        const message = await refusal(target().createExport(volume));
        expect(message).toContain(volume.id);
        expect(message).toContain('provider_auth');
        expect(message).not.toContain('p000000000000000');
        leftNothing(volume.id);
        expect(accounts()).not.toContain('u000000000000000000');
      });

      it('refuses CHAP parts tgt or its config would split (a comma, a comment sign)', async () => {
        for (const auth of ['CHAP us,er pass2345', 'CHAP user pass#2345']) {
          const volume = newVolume(auth);
          expect(await refusal(target().createExport(volume))).toMatch(/provider_auth (user name|password) must be printable ASCII/);
          leftNothing(volume.id);
        }
      });

      it('refuses a backing path with a newline, a comma or a relative part, naming the field, leaving nothing', async () => {
        for (const path of [
          `${join(root, 'direct', 'x')}\n\tincominguser evil evilpassword`,
          `${join(root, 'direct', 'a')},bsoflags=direct`,
          `${root}/direct/../direct/x`,
          'relative/path',
          `${root}/with space`,
        ]) {
          const volume = newVolume();
          const message = await refusal(target({}, path).createExport(volume));
          expect(message).toContain('backing store path');
          leftNothing(volume.id);
        }
      });

      it('refuses a target name with a newline or a comma (from target_prefix), naming the field, leaving nothing', async () => {
        for (const prefix of ['iqn.2010-10.org.openstack:\n<target evil>\n', 'iqn.2010-10.org.openstack,targetname=evil:', 'iqn.2010-10.org.openstack: ']) {
          const volume = newVolume();
          const message = await refusal(target({ prefix }).createExport(volume));
          expect(message).toContain('target name');
          leftNothing(volume.id);
          expect(tgtd.targets()).not.toContain('evil');
        }
      });

      it("refuses bsoflags other than tgt's", async () => {
        const volume = newVolume();
        expect(await refusal(target({ backingFlags: 'sync,path=/etc/shadow' }).createExport(volume))).toContain('iscsi_target_flags');
        leftNothing(volume.id);
      });
    });
  });
}
