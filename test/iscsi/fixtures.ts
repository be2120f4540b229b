import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * A real iSCSI target (Debian's tgt: tgtd, control port 0) and libiscsi's user-space initiator
 * (iscsi-ls, iscsi-readcapacity16, qemu-io with iscsi:// URLs), which work here without kernel
 * SCSI. .ci/run starts tgtd; started by hand, the fixture starts one on a loopback portal and
 * stops it after. Under CI=true a missing piece is a failure, elsewhere the suite is skipped.
 */
// perl carries the server's requests to tgtd; sudo, runuser and useradd play a server that is not root.
const BINARIES = [
  '/usr/sbin/tgtd',
  '/usr/sbin/tgtadm',
  '/usr/bin/perl',
  '/usr/bin/iscsi-ls',
  '/usr/bin/iscsi-readcapacity16',
  '/usr/bin/qemu-io',
  '/usr/sbin/losetup',
  '/usr/bin/sudo',
  '/usr/sbin/runuser',
  '/usr/sbin/useradd',
];

export function iscsiPrerequisites(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (tgtd and loop devices)';
  for (const binary of BINARIES) if (!existsSync(binary)) return `needs ${binary} (apt-get install tgt libiscsi-bin qemu-utils qemu-block-extra sudo)`;
  const block = spawnSync('qemu-io', ['--help'], { encoding: 'utf8' });
  if (block.status !== 0) return 'needs a working qemu-io (qemu-utils)';
  return undefined;
}

export interface TgtdFixture {
  address: string;
  port: number;
  portal: string;
  /** True when the fixture started tgtd (and stops it). */
  started: boolean;
  targets(): string;
  stop(): void;
}

function portals(): string[] | undefined {
  const result = spawnSync('tgtadm', ['--lld', 'iscsi', '--op', 'show', '--mode', 'portal'], { encoding: 'utf8' });
  if (result.status !== 0) return undefined;
  return [...result.stdout.matchAll(/^Portal:\s*(\S+):(\d+),\d+/gm)].map((match) => `${match[1]}:${match[2]}`);
}

/** Uses the tgtd already running (its first IPv4 loopback portal), or starts one on 127.0.0.1:3260. */
export function useTgtd(): TgtdFixture {
  let listening = portals();
  let started = false;
  if (!listening) {
    execFileSync('tgtd', ['--iscsi', 'portal=127.0.0.1:3260']);
    started = true;
    for (let i = 0; i < 50 && !(listening = portals()); i++) execFileSync('sleep', ['0.1']);
    if (!listening) throw new Error('tgtd started but does not answer tgtadm');
  }
  const portal = listening.find((entry) => entry.startsWith('127.0.0.1:')) ?? listening.find((entry) => entry.startsWith('0.0.0.0:'))?.replace('0.0.0.0', '127.0.0.1');
  if (!portal) throw new Error(`tgtd listens on ${listening.join(', ')}, not on 127.0.0.1; the tests use loopback only`);
  const [address, port] = portal.split(':') as [string, string];
  return {
    address,
    port: Number(port),
    portal,
    started,
    targets: () => execFileSync('tgtadm', ['--lld', 'iscsi', '--op', 'show', '--mode', 'target'], { encoding: 'utf8' }),
    stop: () => {
      if (started) spawnSync('tgtadm', ['--op', 'delete', '--mode', 'system']);
    },
  };
}

/** An iscsi:// URL for libiscsi, with CHAP credentials when given. */
export function iscsiUrl(portal: string, iqn: string, lun: number, credentials?: { username: string; password: string }): string {
  const auth = credentials ? `${encodeURIComponent(credentials.username)}%${encodeURIComponent(credentials.password)}@` : '';
  return `iscsi://${auth}${portal}/${iqn}/${lun}`;
}

/** libiscsi's CHAP credentials through its environment (LIBISCSI_CHAP_*), off the command line. */
export function chapEnvironment(credentials: { username: string; password: string }): NodeJS.ProcessEnv {
  return { ...process.env, LIBISCSI_CHAP_USERNAME: credentials.username, LIBISCSI_CHAP_PASSWORD: credentials.password };
}

/** The LUN's size in bytes as the initiator sees it, or the initiator's error. */
export function readCapacity(url: string, env?: NodeJS.ProcessEnv): { bytes?: number; error?: string } {
  const result = spawnSync('iscsi-readcapacity16', [url], { encoding: 'utf8', timeout: 30_000, env });
  const match = /Total size:(\d+)/.exec(result.stdout);
  return match ? { bytes: Number(match[1]) } : { error: `${result.stdout}${result.stderr}`.trim() };
}

/** Bytes read over iSCSI with qemu-io's hex dump. */
export function readOverIscsi(url: string, offset: number, length: number): Buffer {
  const result = spawnSync('qemu-io', ['-f', 'raw', '-c', `read -v ${offset} ${length}`, url], { encoding: 'utf8', timeout: 60_000 });
  if (result.status !== 0 || !/^read \d+\/\d+ bytes/m.test(result.stdout)) {
    throw new Error(`qemu-io read failed: ${result.stdout}${result.stderr}`);
  }
  const bytes: number[] = [];
  for (const line of result.stdout.split('\n')) {
    const match = /^[0-9a-f]{8}:\s+((?:[0-9a-f]{2} ){1,16})/.exec(line);
    if (match)
      bytes.push(
        ...match[1]
          .trim()
          .split(/\s+/)
          .map((hex) => parseInt(hex, 16)),
      );
  }
  return Buffer.from(bytes);
}

export function writeOverIscsi(url: string, offset: number, length: number, pattern: number): void {
  const result = spawnSync('qemu-io', ['-f', 'raw', '-c', `write -P ${pattern} ${offset} ${length}`, url], { encoding: 'utf8', timeout: 60_000 });
  if (result.status !== 0 || !/wrote \d+\/\d+ bytes/.test(result.stdout)) throw new Error(`qemu-io write failed: ${result.stdout}${result.stderr}`);
}
