import type { ConnectionInfo } from '../../../drivers/kit/types.js';
import { StorageError } from '../../base/errors.js';
import type { CommandRunner } from '../../../drivers/kit/exec/runner.js';
import { pathExists, type AttachedDevice, type HostAttacher } from './attacher.js';

/**
 * Attaches an image file on this host through a loop device, as `losetup --find --show` picks
 * one: other processes use loop devices too, so never a fixed number. Detach releases every loop
 * device on the file, so one left by a crash goes too.
 */
export class LoopAttacher implements HostAttacher {
  constructor(
    private readonly runner: CommandRunner,
    private readonly privileged: () => Promise<string[]>,
  ) {}

  async cannotAttach(): Promise<string | undefined> {
    if (!(await pathExists('/dev/loop-control'))) return 'this host has no loop devices (/dev/loop-control is missing; the kernel needs loop support)';
    const asRoot = await this.runner.isRoot();
    if (!asRoot && (await this.privileged()).length === 0) {
      return 'attaching through a loop device needs root: run the server as root or set the global root_helper (e.g. "sudo -n")';
    }
    return undefined;
  }

  async attach(info: ConnectionInfo): Promise<AttachedDevice> {
    const file = imagePath(info);
    const result = await this.losetup(['--find', '--show', file], `attach ${file} to a loop device`);
    const path = result.trim();
    if (!path.startsWith('/dev/')) throw new StorageError('INTERNAL', `losetup --find --show ${file} answered "${path}", not a device path`);
    return { type: 'block', path };
  }

  async detach(info: ConnectionInfo, device: AttachedDevice | null): Promise<void> {
    const file = imagePath(info);
    const loops = new Set(
      (await this.losetup(['--noheadings', '--output', 'NAME', '--associated', file], `find the loop devices on ${file}`))
        .split('\n')
        .map((line) => line.trim())
        .filter(Boolean),
    );
    if (device && (await this.backingFile(device.path)) === file) loops.add(device.path);
    for (const loop of loops) await this.losetup(['--detach', loop], `detach ${loop} from ${file}`, /No such device or address/);
  }

  async resize(info: ConnectionInfo, device: AttachedDevice): Promise<void> {
    const file = imagePath(info);
    // A recorded device is someone else's until its backing file says otherwise (section 11).
    if ((await this.backingFile(device.path)) !== file) return;
    await this.losetup(['--set-capacity', device.path], `show ${file}'s new size in ${device.path}`);
  }

  private async backingFile(loop: string): Promise<string | undefined> {
    const text = await this.losetup(['--noheadings', '--output', 'BACK-FILE', loop], `read ${loop}'s file`, /No such device|not found|failed to get device/).catch(() => '');
    return text.trim().replace(/ \(deleted\)$/, '') || undefined;
  }

  private async losetup(args: string[], operation: string, tolerated?: RegExp): Promise<string> {
    const result = await this.runner.run([...(await this.privileged()), 'losetup', ...args], { operation });
    if (result.exitCode === 0 || (tolerated && tolerated.test(result.stderr))) return result.stdout;
    throw new StorageError('BACKEND_UNAVAILABLE', `${operation}: losetup failed (exit ${result.exitCode}): ${result.stderr.trim().slice(0, 500)}`);
  }
}

function imagePath(info: ConnectionInfo): string {
  const path = info.data.device_path;
  if (typeof path !== 'string' || !path.startsWith('/')) throw new StorageError('INTERNAL', 'a local connection carries no absolute device_path');
  return path;
}
