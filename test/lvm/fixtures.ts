import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Real LVM on a loop device (metadata only: `activation = 0`, passed through lvm_conf_file as an
 * operator would) and a real OpenSSH server on 127.0.0.1. Both need root and Debian's lvm2 and
 * openssh-server; under CI=true their absence is a failure, elsewhere the suite is skipped.
 */
export function lvmPrerequisites(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  for (const binary of ['/usr/sbin/lvm', '/usr/sbin/losetup', '/usr/sbin/sshd', '/usr/bin/ssh-keygen', '/usr/bin/sudo', '/usr/sbin/useradd']) {
    if (!existsSync(binary) && !existsSync(binary.replace('/usr/sbin', '/sbin'))) return `needs ${binary} (apt-get install lvm2 openssh-server sudo)`;
  }
  return undefined;
}

export interface VolumeGroupFixture {
  dir: string;
  vg: string;
  loop: string;
  lvmConfFile: string;
  /** Names of the LVs in the group, read with lvs. */
  lvNames(): string[];
  lvm(...args: string[]): string;
  cleanup(): void;
}

export function makeVolumeGroup(vg: string, sizeGb = 40): VolumeGroupFixture {
  const dir = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-lvm-'));
  chmodSync(dir, 0o755); // the lvm.conf is readable by every login, as /etc/cinder/lvm.conf would be
  const image = join(dir, 'pv.img');
  execFileSync('truncate', ['-s', `${sizeGb}G`, image]);
  const loop = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
  const confDir = join(dir, 'lvm');
  mkdirSync(confDir);
  const lvmConfFile = join(confDir, 'lvm.conf');
  // Only our loop device is visible, so the test never touches the host's own volume groups.
  writeFileSync(
    lvmConfFile,
    [
      'global { activation = 0 }',
      `devices { use_devicesfile = 0 obtain_device_list_from_udev = 0 filter = [ "a|^${loop}$|", "r|.*|" ] }`,
      'activation { udev_sync = 0 udev_rules = 0 }',
      '',
    ].join('\n'),
  );
  const env = { ...process.env, LVM_SYSTEM_DIR: confDir, LVM_SUPPRESS_FD_WARNINGS: '1', LC_ALL: 'C' };
  const lvm = (...args: string[]) => execFileSync('lvm', args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    lvm('pvcreate', loop);
    lvm('vgcreate', vg, loop);
  } catch (error) {
    execFileSync('losetup', ['-d', loop]);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    dir,
    vg,
    loop,
    lvmConfFile,
    lvm,
    lvNames: () =>
      lvm('lvs', '--noheadings', '-o', 'lv_name', vg)
        .split('\n')
        .map((line) => line.trim())
        .filter(Boolean),
    cleanup() {
      try {
        lvm('vgremove', '-f', vg);
        lvm('pvremove', '-f', loop);
      } finally {
        execFileSync('losetup', ['-d', loop]);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

export interface SshdFixture {
  port: number;
  clientKey: string;
  hostPublicKey: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  cleanup(): Promise<void>;
}

/** A real sshd on 127.0.0.1 with a generated host key, accepting one generated client key for root. */
export async function makeSshd(): Promise<SshdFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-sshd-'));
  const keygen = (path: string) => execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path]);
  keygen(join(dir, 'host_key'));
  keygen(join(dir, 'client_key'));
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_key.pub')));
  const port = await freePort();
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'host_key')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication yes', // for the non-root login; root itself needs a key
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'MaxStartups 50',
      '',
    ].join('\n'),
  );
  mkdirSync('/run/sshd', { recursive: true }); // privilege separation directory
  let child: ChildProcess | undefined;
  const fixture: SshdFixture = {
    port,
    clientKey: join(dir, 'client_key'),
    hostPublicKey: readFileSync(join(dir, 'host_key.pub'), 'utf8').trim(),
    async start() {
      child = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
      let log = '';
      child.stderr?.on('data', (chunk) => (log += chunk));
      await waitForPort(port, () => log);
    },
    async stop() {
      if (!child || child.exitCode !== null) return;
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      // The listener and every session process: drops all connections at once, as a crash would.
      killTree(child.pid!);
      await exited;
    },
    async cleanup() {
      await fixture.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await fixture.start();
  return fixture;
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

async function waitForPort(port: number, log: () => string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`sshd did not listen on 127.0.0.1:${port}: ${log()}`);
}

function killTree(pid: number): void {
  let children: number[] = [];
  try {
    children = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    // pgrep exits 1 when there are no children
  }
  for (const childPid of children) killTree(childPid);
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

export interface SudoUserFixture {
  name: string;
  password: string;
  cleanup(): void;
}

/**
 * A non-root login with a password that may run `env` (and so `env ... lvm`) as root through
 * sudo: what an operator sets up for cinderlib's root_helper.
 */
export function makeSudoUser(name: string, password: string): SudoUserFixture {
  const sudoers = `/etc/sudoers.d/${name}`;
  try {
    execFileSync('userdel', ['-r', name], { stdio: 'ignore' });
  } catch {
    // not there from an earlier run
  }
  execFileSync('useradd', ['--create-home', '--shell', '/bin/sh', name]);
  execFileSync('chpasswd', { input: `${name}:${password}\n` });
  writeFileSync(sudoers, `${name} ALL=(root) NOPASSWD: /usr/bin/env\n`, { mode: 0o440 });
  return {
    name,
    password,
    cleanup() {
      rmSync(sudoers, { force: true });
      try {
        execFileSync('userdel', ['-r', name], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    },
  };
}
