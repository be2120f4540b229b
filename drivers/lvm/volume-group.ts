import { dirname } from 'node:path';
import { type ErrorCode, isRegularFile, StorageError } from '../kit/base.js';
import { LocalRunner } from '../kit/exec/local.js';
import { CommandTransportError, privilegedPrefix, type CommandResult, type CommandRunner } from '../kit/exec/runner.js';
import { SshRunner } from '../kit/exec/ssh.js';
import { sanCommandRunner } from '../kit/exec/san-runner.js';
import type { DriverContext, VolumeRef } from '../kit/types.js';
import { BYTES_PER_MIB } from '../kit/units.js';
import {
  clearRanges,
  createThickCommand,
  dataStartsCommand,
  segmentsCommand,
  zeroCommand,
  type DeviceRange,
  createThinCommand,
  createThinPoolCommand,
  dmTargetsCommand,
  lvmErrorText,
  lvsCommand,
  parseLvs,
  parseVgs,
  removeCommand,
  thinPoolName,
  vgsCommand,
  volumeLvName,
  type LogicalVolumeInfo,
  type LvmCommandContext,
  type VolumeGroupInfo,
} from './commands.js';
import type { LvmOptions } from './index.js';

/**
 * The volume group on its host (this one, or san_ip over SSH): the lvm commands run there, the
 * logical volumes created, looked up and removed, and the provisioning (thick or thin) chosen at
 * setup by Cinder's rules for lvm_type.
 */
export class VolumeGroup {
  readonly runner: CommandRunner;
  commands!: LvmCommandContext;
  thin = false;
  provisioningNote = '';
  hostLabel = 'this host';
  /** san_ip's host when lvm runs there over SSH (the target's address by default); undefined here. */
  remoteHost: string | undefined;

  constructor(
    readonly options: LvmOptions,
    readonly context: DriverContext,
  ) {
    this.runner = this.commandRunner();
  }

  private commandRunner(): CommandRunner {
    const { runner, hostLabel, remoteHost } = sanCommandRunner(this.options, this.context);
    this.hostLabel = hostLabel;
    this.remoteHost = remoteHost;
    return runner;
  }

  /**
   * Reaches the group's host, reads the group and chooses the provisioning; answers why the
   * kernel there cannot run snapshots and copies, or undefined when it can.
   */
  async setup(): Promise<string | undefined> {
    try {
      if (this.runner instanceof SshRunner) await this.runner.warmUp();
      const rootHelper = await privilegedPrefix(this.runner, this.context.rootHelper);
      const lvmSystemDir = (await this.fileExists(this.options.lvm_conf_file)) ? dirname(this.options.lvm_conf_file) : undefined;
      this.commands = {
        volumeGroup: this.options.volume_group,
        lvmSystemDir,
        suppressFdWarnings: this.options.lvm_suppress_fd_warnings,
        rootHelper,
      };
    } catch (error) {
      throw this.transportFailure('set up', error);
    }
    const group = await this.volumeGroup('set up');
    await this.chooseProvisioning(group);
    return this.deviceMapperMissing();
  }

  /** The LV of a new volume: thin in the pool, or thick (mirrored as lvm_mirrors says). */
  async createVolumeLv(volume: VolumeRef): Promise<{ provider_location: string }> {
    const name = volumeLvName(volume.id);
    const command = this.thin ? createThinCommand(this.commands, name, volume.size) : createThickCommand(this.commands, name, volume.size, this.options.lvm_mirrors);
    return this.createLv(name, command);
  }

  /** Why the kernel on the group's host cannot run snapshots and copies (lvcreate -s, active LVs for dd), or undefined when it can or cannot be told. */
  async deviceMapperMissing(): Promise<string | undefined> {
    try {
      const result = await this.runner.run(dmTargetsCommand(this.commands), { operation: 'list device-mapper targets' });
      if (result.exitCode !== 0 && /kernel device-mapper driver|device-mapper.*(not available|not loaded)|\/dev\/mapper\/control/i.test(result.stderr)) {
        return 'its kernel has no device-mapper (dmsetup cannot reach the kernel driver)';
      }
    } catch {
      // No dmsetup or no answer: leave the operations offered; they say why if they fail.
    }
    return undefined;
  }

  /** Runs an lvcreate; a failed one leaves no LV behind (unless the name was taken before). */
  async createLv(name: string, command: string[]): Promise<{ provider_location: string }> {
    const result = await this.run(command, `create ${name}`, { allowFailure: true });
    if (result.exitCode !== 0) {
      const reason = lvmErrorText(result.stderr);
      const code: ErrorCode = /already exists/i.test(reason) ? 'ALREADY_EXISTS' : /insufficient free space/i.test(reason) ? 'OUT_OF_CAPACITY' : 'BACKEND_UNAVAILABLE';
      const failure = new StorageError(code, `backend "${this.context.backendName}": lvcreate ${this.options.volume_group}/${name} failed on ${this.hostLabel}: ${reason}`);
      if (code !== 'ALREADY_EXISTS') await this.removeLvIfPresent(name).catch((error) => this.logLeftover(name, error));
      throw failure;
    }
    return { provider_location: `${this.options.volume_group}/${name}` };
  }

  /** Runs `work`; when it fails, removes the LV it was completing and rethrows the first failure. */
  async removingOnFailure(name: string, work: () => Promise<unknown>): Promise<void> {
    try {
      await work();
    } catch (error) {
      await this.removeLvIfPresent(name).catch((cleanupError) => this.logLeftover(name, cleanupError));
      throw error;
    }
  }

  logLeftover(name: string, error: unknown): void {
    this.context.log.error(`could not remove ${this.options.volume_group}/${name} after a failed operation: ${(error as Error).message}`);
  }

  /** Already gone counts as removed (Cinder's delete_snapshot and delete_volume). */
  async removeLvIfPresent(name: string): Promise<void> {
    if (await this.findLv(name)) await this.removeLv(name);
  }

  /** Deletes a user's LV when it is there (a snapshot), its blocks wiped first as volume_clear says. */
  async deleteLvIfPresent(name: string): Promise<void> {
    const lv = await this.findLv(name);
    if (!lv) return;
    await this.clearLv(lv, `delete ${name}`);
    await this.removeLv(name);
  }

  /**
   * Cinder's volume_clear on delete: zeros over the LV's blocks (its first volume_clear_size MiB, or
   * all of them) before lvremove hands its extents to the next volume, so that volume cannot read
   * this one's data. Written on the physical volumes the LV's segments lie on, so it needs no
   * device-mapper; thin LVs are skipped, as Cinder skips them (the pool hands out zeroed blocks).
   */
  async clearLv(lv: LogicalVolumeInfo, operation: string): Promise<void> {
    if (this.options.volume_clear === 'none' || lv.attr.startsWith('V')) return;
    const limit = this.options.volume_clear_size > 0 ? this.options.volume_clear_size * BYTES_PER_MIB : undefined;
    const segments = await this.run(segmentsCommand(this.commands), `${operation}: find its blocks`);
    const starts = await this.run(dataStartsCommand(this.commands), `${operation}: find the physical volumes' data areas`);
    let ranges: DeviceRange[];
    try {
      ranges = clearRanges(segments.stdout, starts.stdout, this.options.volume_group, lv.name, limit);
    } catch (error) {
      throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.context.backendName}": ${operation}: ${(error as Error).message}; nothing was wiped or removed`);
    }
    for (const range of ranges) {
      await this.run(zeroCommand(this.commands, range), `${operation}: wipe ${range.length} bytes of ${range.device} (volume_clear=zero)`);
    }
  }

  async removeLv(name: string): Promise<void> {
    const result = await this.run(removeCommand(this.commands, name), `remove ${name}`, { allowFailure: true });
    if (result.exitCode === 0) return;
    // lvremove of a thin LV commits the metadata, then tells the pool (which needs device-mapper);
    // when only the telling failed, the LV is gone and the pool learns it on its next activation.
    if (!(await this.findLv(name))) {
      this.context.log.warn(`lvremove ${this.options.volume_group}/${name} exited ${result.exitCode} but the LV is gone: ${lvmErrorText(result.stderr)}`);
      return;
    }
    throw new StorageError(
      'BACKEND_UNAVAILABLE',
      `backend "${this.context.backendName}": remove ${name} failed on ${this.hostLabel} (exit ${result.exitCode}): ${lvmErrorText(result.stderr)}`,
    );
  }

  async requireLv(name: string, operation: string): Promise<LogicalVolumeInfo> {
    const found = await this.findLv(name);
    if (found) return found;
    throw new StorageError('NOT_FOUND', `backend "${this.context.backendName}": cannot ${operation}: ${this.options.volume_group}/${name} does not exist on ${this.hostLabel}`);
  }

  async findLv(name: string): Promise<LogicalVolumeInfo | undefined> {
    return (await this.listLvs(`look up ${name}`)).find((lv) => lv.name === name);
  }

  async listLvs(operation: string): Promise<LogicalVolumeInfo[]> {
    return parseLvs((await this.run(lvsCommand(this.commands), `${operation}: list logical volumes`)).stdout);
  }

  async volumeGroup(operation: string): Promise<VolumeGroupInfo> {
    const result = await this.run(vgsCommand(this.commands), `${operation}: read volume group`, { allowFailure: true });
    const group = result.exitCode === 0 ? parseVgs(result.stdout).find((vg) => vg.name === this.options.volume_group) : undefined;
    if (group) return group;
    const reason = lvmErrorText(result.stderr);
    if (result.exitCode === 0 || /not found/i.test(reason)) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `backend "${this.context.backendName}": volume group "${this.options.volume_group}" does not exist on ${this.hostLabel}; create it or set volume_group`,
      );
    }
    throw new StorageError(
      'BACKEND_UNAVAILABLE',
      `backend "${this.context.backendName}": cannot read volume group "${this.options.volume_group}" on ${this.hostLabel}: ${reason}` +
        (this.commands.rootHelper.length === 0 && !(await this.runner.isRoot()) ? ' (lvm runs without a root helper; set the global root_helper)' : ''),
    );
  }

  /** Cinder's rules for lvm_type, with "auto" choosing thin only where thin pools can really work here. */
  async chooseProvisioning(group: VolumeGroupInfo): Promise<void> {
    const poolName = thinPoolName(this.options.volume_group);
    const lvs = await this.listLvs('set up');
    const poolExists = lvs.some((lv) => lv.name === poolName);
    if (this.options.lvm_type === 'default') {
      this.provisioningNote = 'thick (lvm_type: default)';
      return;
    }
    if (this.options.lvm_type === 'thin') {
      if (!poolExists) {
        const created = await this.run(createThinPoolCommand(this.commands, group.freeGb), `create thin pool ${poolName}`, { allowFailure: true });
        if (created.exitCode !== 0) {
          throw new StorageError(
            'BACKEND_UNAVAILABLE',
            `backend "${this.context.backendName}": lvm_type is thin but the thin pool ${this.options.volume_group}/${poolName} cannot be created on ${this.hostLabel}: ${lvmErrorText(created.stderr)}; use lvm_type: default or auto`,
          );
        }
      }
      this.thin = true;
      this.provisioningNote = `thin (lvm_type: thin, pool ${poolName})`;
      return;
    }
    if (poolExists) {
      this.thin = true;
      this.provisioningNote = `thin (lvm_type: auto, because the thin pool ${poolName} exists)`;
    } else if (lvs.length > 0) {
      this.provisioningNote = `thick (lvm_type: auto, because the group already holds ${lvs.length} LV(s) and no thin pool ${poolName})`;
    } else if (!(await this.kernelOffersThinPools())) {
      this.provisioningNote = `thick (lvm_type: auto, because the kernel on ${this.hostLabel} offers no device-mapper thin-pool target)`;
    } else {
      const created = await this.run(createThinPoolCommand(this.commands, group.freeGb), `create thin pool ${poolName}`, { allowFailure: true });
      this.thin = created.exitCode === 0;
      this.provisioningNote = this.thin
        ? `thin (lvm_type: auto, the group was empty; created thin pool ${poolName})`
        : `thick (lvm_type: auto, creating thin pool ${poolName} failed: ${lvmErrorText(created.stderr)})`;
    }
  }

  async kernelOffersThinPools(): Promise<boolean> {
    try {
      const result = await this.runner.run(dmTargetsCommand(this.commands), { operation: 'list device-mapper targets' });
      return result.exitCode === 0 && /^thin-pool\s/m.test(result.stdout);
    } catch {
      return false;
    }
  }

  async fileExists(path: string): Promise<boolean> {
    if (this.runner instanceof LocalRunner) {
      // Asynchronous: a path on a hung mount or under /proc must not stall the event loop. A FIFO
      // or a directory would make every lvm command wait or misread: refuse it with the reason.
      try {
        return await isRegularFile(path);
      } catch (error) {
        throw new StorageError(
          'BACKEND_UNAVAILABLE',
          `backend "${this.context.backendName}": cannot use lvm_conf_file ${path}: ${(error as Error).message}; point it at an lvm.conf file, or at a path that does not exist to run lvm without one`,
        );
      }
    }
    const result = await this.runner.run(['test', '-f', path], { operation: `look for ${path}` });
    return result.exitCode === 0;
  }

  async run(command: string[], operation: string, options: { allowFailure?: boolean } = {}): Promise<CommandResult> {
    let result: CommandResult;
    try {
      result = await this.runner.run(command, { operation });
    } catch (error) {
      throw this.transportFailure(operation, error);
    }
    if (result.exitCode !== 0 && !options.allowFailure) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `backend "${this.context.backendName}": ${operation} failed on ${this.hostLabel} (exit ${result.exitCode}): ${lvmErrorText(result.stderr)}`,
      );
    }
    return result;
  }

  transportFailure(operation: string, error: unknown): StorageError {
    if (error instanceof StorageError) return error;
    const message = error instanceof Error ? error.message : String(error);
    const code: ErrorCode = error instanceof CommandTransportError && error.kind === 'timeout' ? 'BACKEND_BUSY' : 'BACKEND_UNAVAILABLE';
    return new StorageError(code, `backend "${this.context.backendName}": ${message.startsWith(operation) ? message : `${operation}: ${message}`}`, { cause: error });
  }
}
