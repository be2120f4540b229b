import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { type ErrorCode, isRegularFile, StorageError } from '../kit/base.js';
import { LocalRunner } from '../kit/exec/local.js';
import { CommandTransportError, privilegedPrefix, type CommandResult, type CommandRunner } from '../kit/exec/runner.js';
import { SshRunner } from '../kit/exec/ssh.js';
import { boolOption, capacityOptions, enumOption, intOption, sanIpOption, sanOptions, stringOption } from '../kit/options.js';
import {
  defineDriver, type BackendStats, type CloneOperations, type CopyProgress, type CreatedSnapshot, type CreatedVolume, type DriverContext,
  type DriverOptions, type ExportOperations, type SnapshotOperations, type SnapshotRef, type VolumeDriver, type VolumeRef,
} from '../kit/types.js';
import {
  activateCommand, cloneSnapshotLvName, copyCommands, createSnapshotCommand, createThickCommand, createThinCommand, createThinPoolCommand,
  dmTargetsCommand, extendCommand, lvmErrorText, lvsCommand, parseLvs, parseThinPoolUsage, parseVgs, removeCommand, snapshotLvName,
  snapshotsOf, thinPoolName, thinPoolUsageCommand, vgsCommand, volumeLvName, type LogicalVolumeInfo, type LvmCommandContext,
  type VolumeGroupInfo,
} from './commands.js';
import { BYTES_PER_GIB, roundGb } from '../kit/units.js';
import { TARGET_HELPERS, UnsupportedExports, targetFor, targetOptions, tgtSettings, thisHostAddress } from '../kit/targets/index.js';

/**
 * Cinder's LVM driver (cinder.volume.drivers.lvm.LVMVolumeDriver), run on this host or, when
 * san_ip is set, on a remote host over SSH. Logical volumes follow Cinder's `volume-<id>` name
 * template; LVs that are not ours are counted in capacity but never touched.
 */
const DRIVER_VERSION = '3.0.0';

const options = {
  volume_group: stringOption('Name of the volume group that holds the volumes.', { default: 'cinder-volumes' }),
  lvm_type: enumOption(
    'Provisioning: "default" (thick), "thin" (a <volume_group>-pool thin pool), or "auto": thin where this host can make and use thin pools, thick otherwise.',
    ['default', 'thin', 'auto'] as const,
    { default: 'auto' },
  ),
  lvm_conf_file: stringOption('An lvm.conf for every lvm command (its directory becomes LVM_SYSTEM_DIR); ignored when the file does not exist.', {
    default: '/etc/cinder/lvm.conf',
  }),
  lvm_mirrors: intOption('If above 0, create mirrored LVs with this many mirrors (needs lvm_mirrors + 2 PVs).', { default: 0, min: 0 }),
  lvm_suppress_fd_warnings: boolOption('Set LVM_SUPPRESS_FD_WARNINGS for lvm commands.', { default: false }),
  ...capacityOptions,
  target_protocol: enumOption('Export protocol; iSCSI through target_helper is the one this server exports with.', ['iscsi', 'iser', 'nvmet_rdma', 'nvmet_tcp'] as const, {
    default: 'iscsi',
  }),
  target_helper: enumOption('How volumes are exported to hosts: tgtadm (Linux SCSI target, tgtd) on the volume group\'s host.', TARGET_HELPERS, { default: 'tgtadm' }),
  ...targetOptions,
  ...sanOptions,
  san_ip: sanIpOption('Host holding the volume group; when set, lvm commands run there over SSH.'),
  san_login: stringOption('SSH user on san_ip; any user but root runs lvm through the global root_helper.', { default: 'admin' }),
  ssh_hosts_key_file: stringOption('known_hosts file for san_ip (default: ssh_known_hosts in the data directory).', {
    defaultText: '$XDG_DATA_HOME/cinderlib-mcp/ssh_known_hosts',
  }),
  strict_ssh_host_key_policy: boolOption('Refuse hosts not already in ssh_hosts_key_file (otherwise a new host is trusted and recorded).', {
    default: false,
  }),
};

type LvmOptions = DriverOptions<typeof options>;

const STORAGE_PROTOCOLS: Record<LvmOptions['target_protocol'], string> = {
  iscsi: 'iSCSI',
  iser: 'iSER',
  nvmet_rdma: 'NVMe-oF',
  nvmet_tcp: 'NVMe-oF',
};

class LvmDriver implements VolumeDriver {
  private readonly runner: CommandRunner;
  private commands!: LvmCommandContext;
  private thin = false;
  private provisioningNote = '';
  private hostLabel = 'this host';

  /** Cinder's create_snapshot, delete_snapshot and create_volume_from_snapshot. */
  readonly snapshots: SnapshotOperations = {
    createSnapshot: (snapshot, volume) => this.createSnapshot(snapshotLvName(snapshot.id), volume),
    deleteSnapshot: (snapshot) => this.removeLvIfPresent(snapshotLvName(snapshot.id)),
    createVolumeFromSnapshot: (volume, snapshot, progress) => this.createVolumeFromSnapshot(volume, snapshot, progress),
  };

  /** Cinder's create_cloned_volume. */
  readonly clones: CloneOperations = {
    createClonedVolume: (volume, source, progress) => this.createClonedVolume(volume, source, progress),
  };

  /** Cinder's create_export: the LV through target_helper, on the volume group's host. */
  readonly exports: ExportOperations;

  constructor(
    private readonly options: LvmOptions,
    private readonly context: DriverContext,
  ) {
    this.runner = this.commandRunner();
    this.exports =
      options.target_protocol === 'iscsi'
        ? targetFor(
            options.target_helper,
            tgtSettings(options, context, options.san_ip ? splitHost(options.san_ip, options.san_ssh_port).host : thisHostAddress()),
            {
              runner: this.runner,
              privileged: async () => [...this.commands.rootHelper],
              // Cinder's create_export activates the LV first: tgt needs its device node.
              prepareBacking: async (volume) => {
                const name = volumeLvName(volume.id);
                await this.run(activateCommand(this.commands, name, { permanent: false }), `activate ${name} for its export`);
              },
            },
            (volume) => `/dev/${options.volume_group}/${volumeLvName(volume.id)}`,
            context,
          )
        : new UnsupportedExports(`backend "${context.backendName}": target_protocol "${options.target_protocol}" is not exported by this server; use target_protocol: iscsi with target_helper: tgtadm`);
  }

  private commandRunner(): CommandRunner {
    const options = this.options;
    if (options.san_ip) {
      const { host, port } = splitHost(options.san_ip, options.san_ssh_port);
      this.hostLabel = `${host}:${port}`;
      return new SshRunner({
        host,
        port,
        username: options.san_login,
        password: options.san_password || undefined,
        privateKeyPath: options.san_private_key,
        connectTimeoutMs: options.ssh_conn_timeout * 1000,
        minConnections: Math.min(options.ssh_min_pool_conn, options.ssh_max_pool_conn),
        maxConnections: options.ssh_max_pool_conn,
        knownHostsFile: options.ssh_hosts_key_file ?? join(this.context.dataDir, 'ssh_known_hosts'),
        strictHostKeyPolicy: options.strict_ssh_host_key_policy,
        log: this.context.log,
      });
    }
    this.hostLabel = 'this host';
    return new LocalRunner();
  }

  async setup(): Promise<void> {
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
    const missing = await this.deviceMapperMissing();
    this.snapshots.unavailable = missing && `the LVM driver cannot make snapshots or volumes from them on ${this.hostLabel}: ${missing}; creating, extending and deleting volumes (and deleting snapshots) still work`;
    this.clones.unavailable = missing && `the LVM driver cannot clone volumes on ${this.hostLabel}: ${missing}; creating, extending and deleting volumes still work`;
  }

  /** Why the kernel on the group's host cannot run snapshots and copies (lvcreate -s, active LVs for dd), or undefined when it can or cannot be told. */
  private async deviceMapperMissing(): Promise<string | undefined> {
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

  notes(): string[] {
    return [`runs lvm on ${this.hostLabel}${this.commands?.lvmSystemDir ? ` with LVM_SYSTEM_DIR=${this.commands.lvmSystemDir}` : ''}`, this.provisioningNote];
  }

  async getStats(): Promise<BackendStats> {
    const group = await this.volumeGroup('get stats');
    const volumes = await this.listLvs('get stats');
    let total: number;
    let free: number;
    let provisioned: number;
    if (this.thin) {
      const pool = parseThinPoolUsage((await this.run(thinPoolUsageCommand(this.commands), 'read thin pool usage')).stdout);
      total = pool.sizeGb;
      free = roundGb(pool.sizeGb - (pool.sizeGb * pool.dataPercent) / 100);
      const poolName = thinPoolName(this.options.volume_group);
      provisioned = roundGb(volumes.filter((lv) => lv.name !== poolName).reduce((sum, lv) => sum + lv.sizeGb, 0));
    } else {
      total = group.sizeGb;
      free = group.freeGb; // rounded down from bytes: the core's check of whole-GiB sizes against it is what lvcreate accepts
      provisioned = roundGb(total - free);
    }
    const host = this.options.san_ip ? splitHost(this.options.san_ip, this.options.san_ssh_port).host : hostname();
    return {
      volume_backend_name: this.context.backendName,
      vendor_name: 'Open Source',
      driver_version: DRIVER_VERSION,
      storage_protocol: STORAGE_PROTOCOLS[this.options.target_protocol],
      pools: [
        {
          pool_name: this.context.backendName,
          total_capacity_gb: total,
          free_capacity_gb: free,
          reserved_percentage: this.options.reserved_percentage,
          location_info: `LVMVolumeDriver:${host}:${this.options.volume_group}:${this.thin ? 'thin' : 'default'}:${this.options.lvm_mirrors}`,
          QoS_support: false,
          provisioned_capacity_gb: provisioned,
          max_over_subscription_ratio: this.options.max_over_subscription_ratio,
          thin_provisioning_support: this.thin,
          thick_provisioning_support: !this.thin,
          total_volumes: volumes.length,
          multiattach: true,
          backend_state: 'up',
          provisioning: this.provisioningNote,
        },
      ],
      shared_targets: false,
      sparse_copy_volume: this.thin,
    };
  }

  async createVolume(volume: VolumeRef): Promise<{ provider_location: string }> {
    const name = volumeLvName(volume.id);
    const command = this.thin
      ? createThinCommand(this.commands, name, volume.size)
      : createThickCommand(this.commands, name, volume.size, this.options.lvm_mirrors);
    return this.createLv(name, command);
  }

  async extendVolume(volume: VolumeRef, newSizeGb: number): Promise<void> {
    const name = volumeLvName(volume.id);
    const result = await this.run(extendCommand(this.commands, name, newSizeGb), `extend ${name}`, { allowFailure: true });
    if (result.exitCode !== 0) {
      const reason = lvmErrorText(result.stderr);
      const code: ErrorCode = /not found|failed to find/i.test(reason) ? 'NOT_FOUND' : /insufficient free space/i.test(reason) ? 'OUT_OF_CAPACITY' : 'BACKEND_UNAVAILABLE';
      throw new StorageError(code, `backend "${this.context.backendName}": lvextend ${this.options.volume_group}/${name} failed on ${this.hostLabel}: ${reason}`);
    }
  }

  /** Cinder's delete_volume: already gone counts as deleted; refused while the volume has snapshots (VolumeIsBusy). */
  async deleteVolume(volume: VolumeRef): Promise<void> {
    const name = volumeLvName(volume.id);
    const lvs = await this.listLvs(`delete ${name}`);
    if (!lvs.some((lv) => lv.name === name)) return;
    const snapshots = snapshotsOf(lvs, name);
    if (snapshots.length > 0) {
      throw new StorageError(
        'IN_USE',
        `backend "${this.context.backendName}": volume ${volume.id} has snapshots in volume group ${this.options.volume_group}: ${snapshots.join(', ')}; delete them first`,
      );
    }
    await this.removeLv(name);
  }

  /** Thick snapshots reserve copy-on-write space of the volume's full size; thin ones share the pool. */
  snapshotSizeGb(volume: VolumeRef): number {
    return this.thin ? 0 : volume.size;
  }

  async close(): Promise<void> {
    await this.runner.close();
  }

  /** Cinder's create_snapshot (os-brick's create_lv_snapshot): the source must be there; -L its size when thick. */
  private async createSnapshot(name: string, volume: VolumeRef): Promise<CreatedSnapshot> {
    const sourceName = volumeLvName(volume.id);
    await this.requireLv(sourceName, `snapshot volume ${volume.id}`);
    return this.createLv(name, createSnapshotCommand(this.commands, name, sourceName, this.thin ? undefined : volume.size));
  }

  /**
   * Cinder's create_volume_from_snapshot: when thin, a snapshot of the snapshot named as the volume;
   * when thick, a new volume and a copy of the snapshot's data.
   */
  private async createVolumeFromSnapshot(volume: VolumeRef, snapshot: SnapshotRef, progress: CopyProgress): Promise<CreatedVolume> {
    const snapshotName = snapshotLvName(snapshot.id);
    await this.requireLv(snapshotName, `create volume ${volume.id} from snapshot ${snapshot.id}`);
    if (this.thin) return this.createThinSnapshotVolume(volume, snapshotName);
    return this.createVolumeCopy(volume, snapshotName, snapshot.volume_size, progress);
  }

  /**
   * Cinder's create_cloned_volume: when thin, a snapshot of the source named as the volume; when
   * thick, a copy from a temporary snapshot (so the source's bytes are those of the moment of the
   * call), which is removed whatever happens.
   */
  private async createClonedVolume(volume: VolumeRef, source: VolumeRef, progress: CopyProgress): Promise<CreatedVolume> {
    if (this.thin) {
      const sourceName = volumeLvName(source.id);
      await this.requireLv(sourceName, `clone volume ${source.id}`);
      return this.createThinSnapshotVolume(volume, sourceName);
    }
    const temporary = cloneSnapshotLvName(volume.id);
    await this.createSnapshot(temporary, source); // looks the source up first
    try {
      return await this.createVolumeCopy(volume, temporary, source.size, progress);
    } finally {
      await this.removeLvIfPresent(temporary);
    }
  }

  /** A thin volume that starts as a snapshot of `originName`, activated for good (thin snapshots skip activation otherwise). */
  private async createThinSnapshotVolume(volume: VolumeRef, originName: string): Promise<CreatedVolume> {
    const name = volumeLvName(volume.id);
    const created = await this.createLv(name, createSnapshotCommand(this.commands, name, originName));
    await this.removingOnFailure(name, () => this.run(activateCommand(this.commands, name, { permanent: true }), `activate ${name}`));
    return created;
  }

  /** A new volume holding `sizeGb` GiB copied from `sourceName`; the volume is removed again if the copy fails. */
  private async createVolumeCopy(volume: VolumeRef, sourceName: string, sizeGb: number, progress: CopyProgress): Promise<CreatedVolume> {
    const created = await this.createVolume(volume);
    const name = volumeLvName(volume.id);
    await this.removingOnFailure(name, async () => {
      // Cinder: some LVM configurations do not activate snapshot LVs by themselves.
      await this.run(activateCommand(this.commands, sourceName, { permanent: false }), `activate ${sourceName}`);
      await this.copyData(sourceName, name, sizeGb, progress);
    });
    return created;
  }

  private async copyData(sourceName: string, targetName: string, sizeGb: number, progress: CopyProgress): Promise<void> {
    const operation = `copy ${this.options.volume_group}/${sourceName} to ${targetName}`;
    const totalBytes = Math.ceil(sizeGb * BYTES_PER_GIB);
    progress(0, totalBytes);
    let bytesDone = 0;
    // Cinder's _sparse_copy_volume: zero blocks stay unallocated when the target is in a thin pool.
    for (const step of copyCommands(this.commands, { sourceLv: sourceName, targetLv: targetName, sizeGb, sparse: this.thin })) {
      const result = await this.run(step.command, operation, { allowFailure: true });
      if (result.exitCode !== 0) {
        const reason = lvmErrorText(result.stderr);
        const hint = /No such file or directory/.test(reason) ? ' (copies need active LVs, which need device-mapper on that host)' : '';
        throw new StorageError(
          'BACKEND_UNAVAILABLE',
          `backend "${this.context.backendName}": ${operation} failed on ${this.hostLabel} after ${bytesDone} of ${totalBytes} bytes: ${reason}${hint}`,
        );
      }
      bytesDone = step.bytesDone;
      progress(bytesDone, totalBytes);
    }
  }

  /** Runs an lvcreate; a failed one leaves no LV behind (unless the name was taken before). */
  private async createLv(name: string, command: string[]): Promise<{ provider_location: string }> {
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
  private async removingOnFailure(name: string, work: () => Promise<unknown>): Promise<void> {
    try {
      await work();
    } catch (error) {
      await this.removeLvIfPresent(name).catch((cleanupError) => this.logLeftover(name, cleanupError));
      throw error;
    }
  }

  private logLeftover(name: string, error: unknown): void {
    this.context.log.error(`could not remove ${this.options.volume_group}/${name} after a failed operation: ${(error as Error).message}`);
  }

  /** Already gone counts as removed (Cinder's delete_snapshot and delete_volume). */
  private async removeLvIfPresent(name: string): Promise<void> {
    if (await this.findLv(name)) await this.removeLv(name);
  }

  private async removeLv(name: string): Promise<void> {
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

  private async requireLv(name: string, operation: string): Promise<LogicalVolumeInfo> {
    const found = await this.findLv(name);
    if (found) return found;
    throw new StorageError('NOT_FOUND', `backend "${this.context.backendName}": cannot ${operation}: ${this.options.volume_group}/${name} does not exist on ${this.hostLabel}`);
  }

  private async findLv(name: string): Promise<LogicalVolumeInfo | undefined> {
    return (await this.listLvs(`look up ${name}`)).find((lv) => lv.name === name);
  }

  private async listLvs(operation: string): Promise<LogicalVolumeInfo[]> {
    return parseLvs((await this.run(lvsCommand(this.commands), `${operation}: list logical volumes`)).stdout);
  }

  private async volumeGroup(operation: string): Promise<VolumeGroupInfo> {
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
  private async chooseProvisioning(group: VolumeGroupInfo): Promise<void> {
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

  private async kernelOffersThinPools(): Promise<boolean> {
    try {
      const result = await this.runner.run(dmTargetsCommand(this.commands), { operation: 'list device-mapper targets' });
      return result.exitCode === 0 && /^thin-pool\s/m.test(result.stdout);
    } catch {
      return false;
    }
  }

  private async fileExists(path: string): Promise<boolean> {
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

  private async run(command: string[], operation: string, options: { allowFailure?: boolean } = {}): Promise<CommandResult> {
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

  private transportFailure(operation: string, error: unknown): StorageError {
    if (error instanceof StorageError) return error;
    const message = error instanceof Error ? error.message : String(error);
    const code: ErrorCode = error instanceof CommandTransportError && error.kind === 'timeout' ? 'BACKEND_BUSY' : 'BACKEND_UNAVAILABLE';
    return new StorageError(code, `backend "${this.context.backendName}": ${message.startsWith(operation) ? message : `${operation}: ${message}`}`, { cause: error });
  }
}

function splitHost(sanIp: string, defaultPort: number): { host: string; port: number } {
  const bracketed = /^\[(.+)\](?::(\d+))?$/.exec(sanIp);
  if (bracketed) return { host: bracketed[1]!, port: bracketed[2] ? Number(bracketed[2]) : defaultPort };
  const parts = sanIp.split(':');
  if (parts.length === 2 && /^\d+$/.test(parts[1]!)) return { host: parts[0]!, port: Number(parts[1]) };
  return { host: sanIp, port: defaultPort };
}


export default defineDriver({
  summary: "Cinder's LVM driver: logical volumes in a volume group, on this host or on san_ip over SSH.",
  options,
  version: DRIVER_VERSION,
  create: (opts, context) => new LvmDriver(opts, context),
});

