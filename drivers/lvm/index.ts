import { hostname } from 'node:os';
import { type ErrorCode, StorageError } from '../kit/base.js';
import { boolOption, capacityOptions, chapOptionSet, enumOption, intOption, sanIpOption, sanOptionSet, stringOption } from '../kit/options.js';
import {
  defineDriver,
  type BackendStats,
  type CloneOperations,
  type DriverContext,
  type DriverOptions,
  type ExportOperations,
  type ManageOperations,
  type SnapshotOperations,
  type VolumeDriver,
  type VolumeRef,
} from '../kit/types.js';
import {
  activateCommand,
  extendCommand,
  lvmErrorText,
  manageableLvs,
  parseThinPoolUsage,
  renameCommand,
  snapshotLvName,
  snapshotsOf,
  thinPoolName,
  thinPoolUsageCommand,
  volumeLvName,
} from './commands.js';
import { roundGb } from '../kit/units.js';
import { TARGET_HELPERS, UnsupportedExports, otherTargetOptions, targetFor, targetOptions, tgtSettings, thisHostAddress } from '../kit/targets/index.js';
import { LvmSnapshots } from './snapshots.js';
import { VolumeGroup } from './volume-group.js';

/**
 * Cinder's LVM driver (cinder.volume.drivers.lvm.LVMVolumeDriver), run on this host or, when
 * san_ip is set, on a remote host over SSH. Logical volumes follow Cinder's `volume-<id>` name
 * template; LVs that are not ours are counted in capacity but never touched. The group and its
 * LVs on their host are volume-group.ts; snapshots, clones and copies snapshots.ts.
 */
const DRIVER_VERSION = '3.0.0';

/** Cinder's LVM driver runs on the volume group's host; reaching it over SSH is this project's. */
const REMOTE = "Cinder's LVM driver has no remote host: the volume group on another host, over SSH";

const options = {
  volume_group: stringOption('Name of the volume group that holds the volumes.', { default: 'cinder-volumes' }),
  lvm_type: enumOption(
    'Provisioning: "default" (thick), "thin" (a <volume_group>-pool thin pool), or "auto": thin where this host can make and use thin pools, thick otherwise.',
    ['default', 'thin', 'auto'] as const,
    { default: 'auto', choiceHelp: { default: 'Thick-provisioned LVM.', thin: 'Thin-provisioned LVM.', auto: 'Defaults to thin when supported.' } },
  ),
  lvm_conf_file: stringOption('An lvm.conf for every lvm command (its directory becomes LVM_SYSTEM_DIR); ignored when the file does not exist.', {
    default: '/etc/cinder/lvm.conf',
  }),
  lvm_mirrors: intOption('If above 0, create mirrored LVs with this many mirrors (needs lvm_mirrors + 2 PVs).', { default: 0, min: 0, oslo: { kind: 'Integer' } }),
  lvm_suppress_fd_warnings: boolOption('Set LVM_SUPPRESS_FD_WARNINGS for lvm commands.', { default: false }),
  ...capacityOptions,
  target_protocol: enumOption('Export protocol; iSCSI through target_helper is the one this server exports with.', ['iscsi', 'iser', 'nvmet_rdma', 'nvmet_tcp'] as const, {
    default: 'iscsi',
  }),
  target_helper: enumOption(
    "How volumes are exported to hosts on the volume group's host: tgtadm (Linux SCSI target, tgtd) or lioadm (the kernel's LIO target, through configfs).",
    TARGET_HELPERS,
    { default: 'tgtadm' },
  ),
  volume_clear: enumOption(
    'How a deleted volume\'s blocks are wiped before its space is reused: "zero" writes zeros over it, "none" leaves them (thin LVs need none).',
    ['none', 'zero'] as const,
    {
      default: 'zero',
    },
  ),
  volume_clear_size: intOption('MiB wiped at the start of a deleted volume; 0 wipes all of it.', { default: 0, min: 0, max: 1024, oslo: { kind: 'Integer', max: 1024 } }),
  volume_dd_blocksize: stringOption(
    "Cinder's dd block size (dd syntax: 512, 64K, 1M, 4M); copies here write 1 MiB blocks and wipes use the kernel's zero-out, so it is accepted and not used.",
    {
      default: '1M',
      pattern: /^\d+[kKMG]?$/,
      patternHelp: 'a dd block size such as 512, 64K, 1M or 4M',
      oslo: { kind: 'String' },
    },
  ),
  ...targetOptions,
  ...chapOptionSet("accepted as Cinder's targets take them: every export here has its own generated CHAP credentials, as Cinder's tgt and LIO exports do"),
  volumes_dir: stringOption("Folder for the per-target tgt configuration files (Cinder's name; target_config_dir, when set, wins).", { listedDefault: '$state_path/volumes' }),
  ...otherTargetOptions,
  ...sanOptionSet(REMOTE),
  san_ip: sanIpOption('Host holding the volume group; when set, lvm commands run there over SSH.', { ours: REMOTE }),
  san_login: stringOption('SSH user on san_ip; any user but root runs lvm through the global root_helper.', { default: 'admin', ours: REMOTE }),
  ssh_hosts_key_file: stringOption('known_hosts file for san_ip (default: ssh_known_hosts in the data directory).', {
    defaultText: '$XDG_DATA_HOME/cinderlib-mcp/ssh_known_hosts',
    ours: REMOTE,
  }),
  strict_ssh_host_key_policy: boolOption('Refuse hosts not already in ssh_hosts_key_file (otherwise a new host is trusted and recorded).', {
    default: false,
    ours: REMOTE,
  }),
};

export type LvmOptions = DriverOptions<typeof options>;

const STORAGE_PROTOCOLS: Record<LvmOptions['target_protocol'], string> = {
  iscsi: 'iSCSI',
  iser: 'iSER',
  nvmet_rdma: 'NVMe-oF',
  nvmet_tcp: 'NVMe-oF',
};

class LvmDriver implements VolumeDriver {
  private readonly group: VolumeGroup;
  private readonly copies: LvmSnapshots;

  /** Cinder's create_snapshot, delete_snapshot and create_volume_from_snapshot. */
  readonly snapshots: SnapshotOperations = {
    createSnapshot: (snapshot, volume) => this.copies.createSnapshot(snapshotLvName(snapshot.id), volume),
    deleteSnapshot: (snapshot) => this.group.deleteLvIfPresent(snapshotLvName(snapshot.id)),
    createVolumeFromSnapshot: (volume, snapshot, progress) => this.copies.createVolumeFromSnapshot(volume, snapshot, progress),
    revertToSnapshot: (volume, snapshot, progress) => this.copies.revertToSnapshot(volume, snapshot, progress),
  };

  /** Cinder's create_cloned_volume. */
  readonly clones: CloneOperations = {
    createClonedVolume: (volume, source, progress) => this.copies.createClonedVolume(volume, source, progress),
  };

  /** Cinder's get_manageable_volumes and manage_existing (which renames the LV to volume-<id>). */
  readonly manage: ManageOperations = {
    listManageable: async () => manageableLvs(await this.group.listLvs('list volumes to manage'), thinPoolName(this.options.volume_group)),
    manageExisting: async (volume, name) => {
      const target = volumeLvName(volume.id);
      if (name !== target) await this.group.run(renameCommand(this.group.commands, name, target), `rename ${name} to ${target}`);
      return { provider_location: `${this.options.volume_group}/${target}` };
    },
  };

  /** Cinder's create_export: the LV through target_helper, on the volume group's host. */
  readonly exports: ExportOperations;

  constructor(
    private readonly options: LvmOptions,
    private readonly context: DriverContext,
  ) {
    const group = new VolumeGroup(options, context);
    this.group = group;
    this.copies = new LvmSnapshots(group);
    this.exports =
      options.target_protocol === 'iscsi'
        ? targetFor(
            options.target_helper,
            tgtSettings(
              // Cinder's volumes_dir is target_config_dir's folder; $state_path is this project's data directory.
              { ...options, target_config_dir: options.target_config_dir ?? options.volumes_dir?.replace(/^\$state_path(?=\/|$)/, context.dataDir) },
              context,
              group.remoteHost ?? thisHostAddress(),
            ),
            {
              runner: group.runner,
              privileged: async () => [...group.commands.rootHelper],
              // Cinder's create_export activates the LV first: tgt needs its device node.
              prepareBacking: async (volume) => {
                const name = volumeLvName(volume.id);
                await group.run(activateCommand(group.commands, name, { permanent: false }), `activate ${name} for its export`);
              },
            },
            (volume) => `/dev/${options.volume_group}/${volumeLvName(volume.id)}`,
            context,
          )
        : new UnsupportedExports(
            `backend "${context.backendName}": target_protocol "${options.target_protocol}" is not exported by this server; use target_protocol: iscsi with target_helper: tgtadm`,
          );
  }

  async setup(): Promise<void> {
    const missing = await this.group.setup();
    await this.exports.probe?.();
    this.snapshots.unavailable =
      missing &&
      `the LVM driver cannot make snapshots, volumes from them or reverts on ${this.group.hostLabel}: ${missing}; creating, extending and deleting volumes (and deleting snapshots) still work`;
    this.clones.unavailable = missing && `the LVM driver cannot clone volumes on ${this.group.hostLabel}: ${missing}; creating, extending and deleting volumes still work`;
  }

  notes(): string[] {
    return [`runs lvm on ${this.group.hostLabel}${this.group.commands?.lvmSystemDir ? ` with LVM_SYSTEM_DIR=${this.group.commands.lvmSystemDir}` : ''}`, this.group.provisioningNote];
  }

  async getStats(): Promise<BackendStats> {
    const group = await this.group.volumeGroup('get stats');
    const volumes = await this.group.listLvs('get stats');
    let total: number;
    let free: number;
    let provisioned: number;
    if (this.group.thin) {
      const pool = parseThinPoolUsage((await this.group.run(thinPoolUsageCommand(this.group.commands), 'read thin pool usage')).stdout);
      total = pool.sizeGb;
      free = roundGb(pool.sizeGb - (pool.sizeGb * pool.dataPercent) / 100);
      const poolName = thinPoolName(this.options.volume_group);
      provisioned = roundGb(volumes.filter((lv) => lv.name !== poolName).reduce((sum, lv) => sum + lv.sizeGb, 0));
    } else {
      total = group.sizeGb;
      free = group.freeGb; // rounded down from bytes: the core's check of whole-GiB sizes against it is what lvcreate accepts
      provisioned = roundGb(total - free);
    }
    const host = this.group.remoteHost ?? hostname();
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
          location_info: `LVMVolumeDriver:${host}:${this.options.volume_group}:${this.group.thin ? 'thin' : 'default'}:${this.options.lvm_mirrors}`,
          QoS_support: false,
          provisioned_capacity_gb: provisioned,
          max_over_subscription_ratio: this.options.max_over_subscription_ratio,
          thin_provisioning_support: this.group.thin,
          thick_provisioning_support: !this.group.thin,
          total_volumes: volumes.length,
          multiattach: true,
          backend_state: 'up',
          provisioning: this.group.provisioningNote,
        },
      ],
      shared_targets: false,
      sparse_copy_volume: this.group.thin,
    };
  }

  createVolume(volume: VolumeRef): Promise<{ provider_location: string }> {
    return this.group.createVolumeLv(volume);
  }

  async extendVolume(volume: VolumeRef, newSizeGb: number): Promise<void> {
    const name = volumeLvName(volume.id);
    const result = await this.group.run(extendCommand(this.group.commands, name, newSizeGb), `extend ${name}`, { allowFailure: true });
    if (result.exitCode !== 0) {
      const reason = lvmErrorText(result.stderr);
      const code: ErrorCode = /not found|failed to find/i.test(reason) ? 'NOT_FOUND' : /insufficient free space/i.test(reason) ? 'OUT_OF_CAPACITY' : 'BACKEND_UNAVAILABLE';
      throw new StorageError(code, `backend "${this.context.backendName}": lvextend ${this.options.volume_group}/${name} failed on ${this.group.hostLabel}: ${reason}`);
    }
  }

  /** Cinder's delete_volume: already gone counts as deleted; refused while the volume has snapshots (VolumeIsBusy). */
  async deleteVolume(volume: VolumeRef): Promise<void> {
    const name = volumeLvName(volume.id);
    const lvs = await this.group.listLvs(`delete ${name}`);
    if (!lvs.some((lv) => lv.name === name)) return;
    const snapshots = snapshotsOf(lvs, name);
    if (snapshots.length > 0) {
      throw new StorageError(
        'IN_USE',
        `backend "${this.context.backendName}": volume ${volume.id} has snapshots in volume group ${this.options.volume_group}: ${snapshots.join(', ')}; delete them first`,
      );
    }
    await this.group.clearLv(
      lvs.find((lv) => lv.name === name)!,
      `delete ${name}`,
    );
    await this.group.removeLv(name);
  }

  /** Thick snapshots reserve copy-on-write space of the volume's full size; thin ones share the pool. */
  snapshotSizeGb(volume: VolumeRef): number {
    return this.group.thin ? 0 : volume.size;
  }

  async close(): Promise<void> {
    await this.group.runner.close();
  }
}

export default defineDriver({
  summary: "Cinder's LVM driver: logical volumes in a volume group, on this host or on san_ip over SSH.",
  options,
  version: DRIVER_VERSION,
  ciWikiName: 'Cinder_Jenkins',
  create: (opts, context) => new LvmDriver(opts, context),
});
