import { readFile, readdir, realpath } from 'node:fs/promises';
import { basename } from 'node:path';
import type { ConnectionInfo } from '../../../drivers/kit/types.js';
import { StorageError } from '../../base/errors.js';
import type { CommandRunner } from '../../../drivers/kit/exec/runner.js';
import { pathExists, type AttachedDevice, type HostAttacher } from './attacher.js';

/** The kernel's iSCSI transport: present only where the iscsi_tcp module is loaded (never in a container without it). */
const KERNEL_TRANSPORT = '/sys/class/iscsi_transport/tcp';
export const INITIATOR_NAME_FILE = '/etc/iscsi/initiatorname.iscsi';
const DEVICE_WAIT_MS = 30_000;
/** iscsiadm's "no matching sessions/records" and "session exists": the state wanted is already there. */
const ISCSI_ERR_NO_OBJS_FOUND = 21;
const ISCSI_ERR_SESS_EXISTS = 15;

/**
 * Attaches iSCSI connections through open-iscsi's kernel initiator, as os-brick's ISCSIConnector
 * does for one portal: a node record with the CHAP settings, a login, the LUN's by-path device.
 * Detach deletes the SCSI device and logs out only when no other LUN of that target is still
 * attached here.
 */
export class OpenIscsiAttacher implements HostAttacher {
  constructor(
    private readonly runner: CommandRunner,
    private readonly privileged: () => Promise<string[]>,
  ) {}

  async cannotAttach(): Promise<string | undefined> {
    if (!(await pathExists(KERNEL_TRANSPORT))) {
      return `this host has no kernel iSCSI initiator (${KERNEL_TRANSPORT} is missing: the kernel's iscsi_tcp module is not loaded, or cannot be, as in most containers); attach the volume on a host with open-iscsi instead: connect_volume gives its target, portal and LUN`;
    }
    const which = await this.runner.run(['sh', '-c', 'command -v iscsiadm'], { operation: 'look for iscsiadm' });
    if (which.exitCode !== 0) return "open-iscsi's iscsiadm is not installed on this host (Debian: apt-get install open-iscsi)";
    if (!(await initiatorName())) return `this host has no iSCSI initiator name (${INITIATOR_NAME_FILE}); open-iscsi's package writes one`;
    return undefined;
  }

  async attach(info: ConnectionInfo): Promise<AttachedDevice> {
    const target = targetOf(info);
    await this.iscsiadm([...target.node, '--interface', 'default', '--op', 'new'], `record iSCSI node ${target.iqn}`);
    const data = info.data;
    if (data.auth_method) {
      for (const [name, value] of [
        ['node.session.auth.authmethod', data.auth_method],
        ['node.session.auth.username', data.auth_username],
        ['node.session.auth.password', data.auth_password],
      ] as const) {
        await this.iscsiadm([...target.node, '--op', 'update', '-n', name, '-v', String(value)], `set ${name} of ${target.iqn}`);
      }
    }
    try {
      await this.iscsiadm([...target.node, '--login'], `log in to ${target.iqn} at ${target.portal}`, [ISCSI_ERR_SESS_EXISTS]);
      return { type: 'block', path: await this.waitForDevice(target.byPath, target.iqn) };
    } catch (error) {
      await this.detach(info, null).catch(() => undefined);
      throw error;
    }
  }

  async detach(info: ConnectionInfo, _device: AttachedDevice | null): Promise<void> {
    const target = targetOf(info);
    const device = await realpath(target.byPath).catch(() => undefined);
    if (device) {
      await this.runner.run([...(await this.privileged()), 'blockdev', '--flushbufs', device], { operation: `flush ${device}` });
      await this.runner.run([...(await this.privileged()), 'sh', '-c', 'echo 1 > "$1"', 'sh', `/sys/block/${basename(device)}/device/delete`], { operation: `remove ${device}` });
    }
    const prefix = basename(target.byPath).replace(/-lun-\d+$/, '-lun-');
    const others = (await readdir('/dev/disk/by-path').catch(() => [] as string[])).filter((name) => name.startsWith(prefix) && name !== basename(target.byPath));
    if (others.length > 0) return; // other LUNs of this target are still attached here: keep the session
    await this.iscsiadm([...target.node, '--logout'], `log out of ${target.iqn}`, [ISCSI_ERR_NO_OBJS_FOUND]);
    await this.iscsiadm([...target.node, '--op', 'delete'], `forget iSCSI node ${target.iqn}`, [ISCSI_ERR_NO_OBJS_FOUND]);
  }

  async resize(info: ConnectionInfo): Promise<void> {
    const target = targetOf(info);
    await this.iscsiadm([...target.node, '-R'], `rescan ${target.iqn}`);
  }

  private async waitForDevice(byPath: string, iqn: string): Promise<string> {
    const deadline = Date.now() + DEVICE_WAIT_MS;
    while (Date.now() < deadline) {
      const device = await realpath(byPath).catch(() => undefined);
      if (device) return device;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new StorageError('BACKEND_UNAVAILABLE', `logged in to ${iqn}, but ${byPath} did not appear within ${DEVICE_WAIT_MS / 1000} s`);
  }

  private async iscsiadm(args: string[], operation: string, tolerated: number[] = []): Promise<void> {
    const result = await this.runner.run([...(await this.privileged()), 'iscsiadm', '-m', ...args], { operation });
    if (result.exitCode === 0 || tolerated.includes(result.exitCode)) return;
    throw new StorageError('BACKEND_UNAVAILABLE', `${operation}: iscsiadm failed (exit ${result.exitCode}): ${result.stderr.trim().slice(0, 500)}`);
  }
}

function targetOf(info: ConnectionInfo) {
  const { target_iqn: iqn, target_portal: portal, target_lun: lun } = info.data;
  if (typeof iqn !== 'string' || typeof portal !== 'string' || typeof lun !== 'number') {
    throw new StorageError('INTERNAL', 'an iSCSI connection without target_iqn, target_portal and target_lun');
  }
  return { iqn, portal, lun, node: ['node', '-T', iqn, '-p', portal], byPath: `/dev/disk/by-path/ip-${portal}-iscsi-${iqn}-lun-${lun}` };
}

/** This host's initiator IQN, when open-iscsi is installed. */
export async function initiatorName(): Promise<string | undefined> {
  const text = await readFile(INITIATOR_NAME_FILE, 'utf8').catch(() => '');
  return /^InitiatorName=(\S+)/m.exec(text)?.[1];
}
