import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  createThickCommand,
  dataStartsCommand,
  dmTargetsCommand,
  extendCommand,
  lvsCommand,
  removeCommand,
  segmentsCommand,
  vgsCommand,
  volumeLvName,
  zeroCommand,
  type LvmCommandContext,
} from '../../drivers/lvm/commands.js';
import { commandLineOf, processAlive } from '../helpers/processes.js';

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

/**
 * Rewrites the group's metadata: `vgcfgbackup` to a file, `edit` the text, `vgcfgrestore` it. This
 * is how the tests get snapshot and thin LVs on a host whose LVM cannot make them (no
 * device-mapper): LVM reads them back, lists, extends and removes them as it would real ones.
 */
export function editVolumeGroupMetadata(fixture: VolumeGroupFixture, edit: (metadata: string) => string): void {
  const file = join(fixture.dir, `${fixture.vg}.vgcfg`);
  fixture.lvm('vgcfgbackup', '-f', file, fixture.vg);
  writeFileSync(file, edit(readFileSync(file, 'utf8')));
  // --force: LVM refuses to restore thin volumes without it (the pool's own metadata may disagree).
  fixture.lvm('vgcfgrestore', '--force', '-f', file, fixture.vg);
}

/**
 * Writes a thick snapshot `name` of `origin` as lvcreate --snapshot -L <origin size> would: a
 * copy-on-write LV of the origin's size (allocated by lvcreate, so LVM picks the extents) and the
 * hidden snapshotN LV that ties it to the origin.
 */
export function writeThickSnapshot(fixture: VolumeGroupFixture, origin: string, name: string): void {
  const extents = extentsOf(fixture, origin);
  fixture.lvm('lvcreate', '-n', name, '-l', String(extents), fixture.vg);
  editVolumeGroupMetadata(fixture, (metadata) => {
    const index = (metadata.match(/type = "snapshot"/g) ?? []).length;
    return appendLvs(metadata, [
      lvBlock(`snapshot${index}`, { visible: true }, [`extent_count = ${extents}`, 'type = "snapshot"', 'chunk_size = 8', `origin = "${origin}"`, `cow_store = "${name}"`]),
    ]);
  });
}

export interface ThinLvSpec {
  name: string;
  sizeGb: number;
  /** Makes it a thin snapshot of that LV (with LVM's activation-skip flag, as lvcreate sets it). */
  origin?: string;
}

/**
 * Writes the thin pool `pool` (`dataGb` of data) holding `thinLvs`, as lvcreate -T would: its
 * _tdata, _tmeta and the spare metadata LV are allocated by lvcreate under placeholder names (LVM
 * refuses those suffixes) and then renamed and hidden.
 */
export function writeThinPool(fixture: VolumeGroupFixture, pool: string, dataGb: number, thinLvs: readonly ThinLvSpec[]): void {
  const parts = { data: `${pool}_tdata`, meta: `${pool}_tmeta`, spare: 'lvol0_pmspare' };
  const placeholders = { data: 'placeholder-tdata', meta: 'placeholder-tmeta', spare: 'placeholder-pmspare' };
  fixture.lvm('lvcreate', '-n', placeholders.data, '-L', `${dataGb}g`, fixture.vg);
  fixture.lvm('lvcreate', '-n', placeholders.meta, '-L', '4m', fixture.vg);
  fixture.lvm('lvcreate', '-n', placeholders.spare, '-L', '4m', fixture.vg);
  editVolumeGroupMetadata(fixture, (metadata) => {
    for (const part of ['data', 'meta', 'spare'] as const) metadata = renameHidden(metadata, placeholders[part], parts[part]);
    const extentBytes = extentSizeBytes(metadata);
    return appendLvs(metadata, [
      lvBlock(pool, { visible: true }, [
        `extent_count = ${(dataGb * 1024 ** 3) / extentBytes}`,
        'type = "thin-pool"',
        `metadata = "${parts.meta}"`,
        `pool = "${parts.data}"`,
        `transaction_id = ${thinLvs.length}`,
        'chunk_size = 128',
        'discards = "passdown"',
        'zero_new_blocks = 1',
      ]),
      ...thinLvs.map((lv, index) =>
        lvBlock(lv.name, { visible: true, activationSkip: Boolean(lv.origin) }, [
          `extent_count = ${(lv.sizeGb * 1024 ** 3) / extentBytes}`,
          'type = "thin"',
          `thin_pool = "${pool}"`,
          `transaction_id = ${index}`,
          `device_id = ${index + 1}`,
          ...(lv.origin ? [`origin = "${lv.origin}"`] : []),
        ]),
      ),
    ]);
  });
}

function extentsOf(fixture: VolumeGroupFixture, lvName: string): number {
  return Number(fixture.lvm('lvs', '--noheadings', '-o', 'seg_size_pe', `${fixture.vg}/${lvName}`).trim());
}

function extentSizeBytes(metadata: string): number {
  const sectors = /^\textent_size = (\d+)/m.exec(metadata);
  if (!sectors) throw new Error('no extent_size in the volume group metadata');
  return Number(sectors[1]) * 512;
}

/** The LVs go at the end of the logical_volumes section, the last section of the group. */
function appendLvs(metadata: string, blocks: readonly string[]): string {
  const sectionEnd = metadata.lastIndexOf('\n\t}\n');
  if (!metadata.includes('\tlogical_volumes {') || sectionEnd < 0) throw new Error('no logical_volumes section in the volume group metadata');
  return `${metadata.slice(0, sectionEnd)}\n${blocks.join('\n')}${metadata.slice(sectionEnd)}`;
}

function lvBlock(name: string, options: { visible: boolean; activationSkip?: boolean }, segment: readonly string[]): string {
  return [
    `\t\t${name} {`,
    `\t\t\tid = "${lvmUuid()}"`,
    `\t\t\tstatus = ["READ", "WRITE"${options.visible ? ', "VISIBLE"' : ''}]`,
    `\t\t\tflags = [${options.activationSkip ? '"ACTIVATION_SKIP"' : ''}]`,
    '\t\t\tsegment_count = 1',
    '\t\t\tsegment1 {',
    '\t\t\t\tstart_extent = 0',
    ...segment.map((line) => `\t\t\t\t${line}`),
    '\t\t\t}',
    '\t\t}',
    '',
  ].join('\n');
}

function renameHidden(metadata: string, from: string, to: string): string {
  const header = `\t\t${from} {\n`;
  const start = metadata.indexOf(header);
  if (start < 0) throw new Error(`no LV ${from} in the volume group metadata`);
  const visible = 'status = ["READ", "WRITE", "VISIBLE"]';
  const status = metadata.indexOf(visible, start);
  return `${metadata.slice(0, start)}\t\t${to} {\n${metadata.slice(start + header.length, status)}status = ["READ", "WRITE"]${metadata.slice(status + visible.length)}`;
}

/** LVM's id format: 32 letters and digits grouped 6-4-4-4-4-4-6. */
function lvmUuid(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return [6, 4, 4, 4, 4, 4, 6].map((length) => Array.from({ length }, () => alphabet[randomInt(alphabet.length)]).join('')).join('-');
}

export interface SshdFixture {
  port: number;
  clientKey: string;
  hostPublicKey: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  cleanup(): Promise<void>;
}

/** Every sshd of these tests lives in a directory with this prefix, holding an `owner` file (see removeStaleSshds). */
const SSHD_DIR_PREFIX = 'cinderlib-mcp-sshd-';

/**
 * A real sshd on 127.0.0.1 with a generated host key, accepting one generated client key (root
 * and `passwordUser` may use it). Key login only, except `passwordUser`, which may also log in
 * with its password from 127.0.0.1: the one password path, for the san_password test. An sshd
 * left running by an interrupted earlier run is stopped first.
 */
export async function makeSshd(options: { passwordUser?: string } = {}): Promise<SshdFixture> {
  removeStaleSshds();
  const dir = mkdtempSync(join(tmpdir(), SSHD_DIR_PREFIX));
  writeFileSync(join(dir, 'owner'), JSON.stringify({ owner: process.pid }));
  const keygen = (path: string) => execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path]);
  keygen(join(dir, 'host_key'));
  keygen(join(dir, 'client_key'));
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_key.pub')));
  const port = await freePort();
  const users = ['root', ...(options.passwordUser ? [options.passwordUser] : [])];
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'host_key')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      `AllowUsers ${users.map((user) => `${user}@127.0.0.1`).join(' ')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'MaxStartups 50',
      ...(options.passwordUser ? [`Match User ${options.passwordUser} Address 127.0.0.1`, '\tPasswordAuthentication yes'] : []),
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
      // Who started it and its pid: a later run stops it if this process dies without cleaning up.
      writeFileSync(join(dir, 'owner'), JSON.stringify({ owner: process.pid, sshd: child.pid }));
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

/**
 * Stops the sshd of an earlier run whose test process is gone (interrupted before its cleanup),
 * and removes its directory (keys included). One whose test process still runs is another run's.
 */
function removeStaleSshds(): void {
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith(SSHD_DIR_PREFIX)) continue;
    const dir = join(tmpdir(), entry);
    const recorded = readOwner(dir);
    if (recorded.owner !== undefined && recorded.owner !== 1 && processAlive(recorded.owner)) continue;
    // The pid may have been reused since: only a process running this directory's sshd_config is ours to stop.
    if (recorded.sshd !== undefined && commandLineOf(recorded.sshd).includes(join(dir, 'sshd_config'))) killTree(recorded.sshd);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The owner file; for a directory of a run from before owner files, sshd's own pid file and its parent. */
function readOwner(dir: string): { owner?: number; sshd?: number } {
  try {
    return JSON.parse(readFileSync(join(dir, 'owner'), 'utf8')) as { owner?: number; sshd?: number };
  } catch {
    try {
      const sshd = Number(readFileSync(join(dir, 'sshd.pid'), 'utf8').trim());
      return { sshd, owner: parentOf(sshd) };
    } catch {
      return {};
    }
  }
}

function parentOf(pid: number): number | undefined {
  try {
    // The field after the parenthesised command name and the state letter.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
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
    children = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
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

/** Test logins are named clmcp-<random> and say in their comment which test process made them (see removeStaleLogins). */
const LOGIN_PREFIX = 'clmcp-';
const LOGIN_MARK = 'cinderlib-mcp LVM test login of process ';
/** The login of the fixture before this one, with a published password and sudo for env: removed wherever found. */
const LEGACY_LOGIN = 'clmcp-test';

/** A fresh name for makeSudoUser, known before the user exists (makeSshd allows it a password login). */
export function testLoginName(): string {
  return `${LOGIN_PREFIX}${randomBytes(4).toString('hex')}`;
}

/**
 * A non-root login with a random password, allowed through sudo (NOPASSWD) exactly the commands
 * the LVM driver runs through root_helper on `group` for creating, extending, listing and
 * deleting volumes (and `dmsetup targets`): what an operator sets up for cinderlib's root_helper.
 *
 * The driver prefixes lvm with `env LVM_SYSTEM_DIR=... LC_ALL=C`, so sudo sees env as the
 * command; the entries pin every argument of env, the lvm.conf directory (root's, not writable by
 * the login) and every lvm argument but a volume id ([0-9a-f] per character) and a size of
 * 1-9 GiB. Residual risk: the login may create, extend, list and remove volume-<uuid> LVs in that
 * one group, and env finds lvm through sudo's secure_path, not the login's PATH. The password is
 * never on a command line (chpasswd reads it on stdin), and the sudoers file is checked by visudo
 * before it is installed.
 */
export function makeSudoUser(name: string, group: VolumeGroupFixture): SudoUserFixture {
  removeStaleLogins();
  const password = randomBytes(18).toString('base64url');
  const sudoers = `/etc/sudoers.d/${name}`;
  execFileSync('useradd', ['--create-home', '--shell', '/bin/sh', '--comment', `${LOGIN_MARK}${process.pid}`, name]);
  const fixture: SudoUserFixture = {
    name,
    password,
    cleanup: () => removeLogin(name),
  };
  try {
    execFileSync('chpasswd', { input: `${name}:${password}\n` });
    // sudo skips files of sudoers.d with a dot in their name: the draft is inert until renamed.
    const draft = `${sudoers}.draft`;
    writeFileSync(draft, sudoersFor(name, group), { mode: 0o440 });
    execFileSync('visudo', ['-c', '-q', '-f', draft]);
    renameSync(draft, sudoers);
  } catch (error) {
    fixture.cleanup();
    throw error;
  }
  return fixture;
}

/** Stands for the volume id and the size in the driver's commands, replaced by sudoers patterns. */
const ANY_VOLUME_ID = 'ANY-VOLUME-ID';
/** Stands for a byte offset or length (volume_clear's), replaced by a digits pattern. */
const ANY_NUMBER = 987654321987;
const ANY_SIZE_GB = 424242;

function sudoersFor(name: string, group: VolumeGroupFixture): string {
  const context: LvmCommandContext = { volumeGroup: group.vg, lvmSystemDir: dirname(group.lvmConfFile), suppressFdWarnings: false, rootHelper: [] };
  const lv = volumeLvName(ANY_VOLUME_ID);
  const commands = [
    vgsCommand(context),
    lvsCommand(context),
    lvsCommand(context, lv),
    createThickCommand(context, lv, ANY_SIZE_GB, 0),
    extendCommand(context, lv, ANY_SIZE_GB),
    removeCommand(context, lv),
    dmTargetsCommand(context),
    // volume_clear: where the LV's blocks lie, then zeros over them on the group's PV alone.
    segmentsCommand(context),
    dataStartsCommand(context),
    zeroCommand(context, { device: group.loop, offset: ANY_NUMBER, length: ANY_NUMBER }),
  ];
  const uuid = [8, 4, 4, 4, 12].map((length) => '[0-9a-f]'.repeat(length)).join('-');
  const lines = commands.map((argv) => {
    const [command, ...args] = argv;
    const pattern = args.map(sudoersArgument).join(' ').replaceAll(ANY_VOLUME_ID, uuid).replaceAll(`${ANY_SIZE_GB}g`, '[1-9]g').replaceAll(String(ANY_NUMBER), '[0-9]*');
    return `${name} ALL=(root) NOPASSWD: ${commandPath(command)} ${pattern}`;
  });
  return [`# ${LOGIN_MARK}${process.pid}: the LVM driver's commands on ${group.vg}, nothing else`, ...lines, ''].join('\n');
}

/** An argument as sudoers matches it literally: its special characters and glob characters escaped. */
function sudoersArgument(argument: string): string {
  return argument.replace(/[\\,:=*?[\]]/g, (character) => `\\${character}`);
}

/** Where sudo finds the command through its secure_path (sudoers names commands by full path). */
function commandPath(command: string): string {
  const path = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].map((dir) => join(dir, command)).find((candidate) => existsSync(candidate));
  if (!path) throw new Error(`${command} is not installed`);
  return path;
}

/**
 * Removes the logins (with their sudoers files and homes) of earlier runs whose test process is
 * gone, and the legacy login wherever it is. A login whose test process still runs is another
 * run's and stays.
 */
export function removeStaleLogins(): void {
  const logins = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((line) => line.split(':'))
    .filter((fields) => fields[0]?.startsWith(LOGIN_PREFIX));
  for (const [login, , , , comment] of logins) {
    const owner = comment?.startsWith(LOGIN_MARK) ? Number(comment.slice(LOGIN_MARK.length)) : undefined;
    if (login === LEGACY_LOGIN || (owner !== undefined && !processAlive(owner))) removeLogin(login);
  }
  const known = new Set(logins.map(([login]) => login));
  for (const entry of readdirSync('/etc/sudoers.d')) {
    if (entry.startsWith(LOGIN_PREFIX) && !known.has(entry.replace(/\.draft$/, ''))) rmSync(join('/etc/sudoers.d', entry), { force: true });
  }
  if (existsSync(join('/home', LEGACY_LOGIN))) rmSync(join('/home', LEGACY_LOGIN), { recursive: true, force: true });
}

function removeLogin(name: string): void {
  rmSync(`/etc/sudoers.d/${name}`, { force: true });
  rmSync(`/etc/sudoers.d/${name}.draft`, { force: true });
  try {
    // --force: even while a session of a killed sshd lingers.
    execFileSync('userdel', ['--remove', '--force', name], { stdio: 'ignore' });
  } catch {
    // already gone, or no home to remove
  }
  rmSync(join('/home', name), { recursive: true, force: true });
}
