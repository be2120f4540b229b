import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { StorageError, type ErrorCode } from '../../src/errors.js';
import { LocalRunner } from '../../src/exec/local.js';
import { CommandTransportError, type CommandResult, type CommandRunner } from '../../src/exec/runner.js';
import { SshRunner } from '../../src/exec/ssh.js';
import { isRegularFile } from '../../src/regular-file.js';
import { boolOption, capacityOptions, enumOption, intOption, sanIpOption, sanOptions, stringOption } from '../options.js';
import { defineDriver, type BackendStats, type DriverContext, type DriverOptions, type VolumeDriver, type VolumeRef } from '../types.js';
import {
  createThickCommand, createThinCommand, createThinPoolCommand, dmTargetsCommand, extendCommand, lvmErrorText, lvsCommand,
  parseLvs, parseThinPoolUsage, parseVgs, removeCommand, thinPoolName, thinPoolUsageCommand, vgsCommand,
  type LvmCommandContext, type VolumeGroupInfo,
} from './commands.js';
import { roundGb } from '../units.js';

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
  target_protocol: enumOption('Export protocol reported in stats (volumes are not exported yet).', ['iscsi', 'iser', 'nvmet_rdma', 'nvmet_tcp'] as const, {
    default: 'iscsi',
  }),
  target_helper: enumOption(
    'Target helper Cinder would export with; kept for config compatibility.',
    ['tgtadm', 'lioadm', 'scstadmin', 'iscsictl', 'ietadm', 'nvmet', 'spdk-nvmeof', 'fake'] as const,
    { default: 'tgtadm' },
  ),
  target_ip_address: stringOption('IP address of the export target; kept for config compatibility.'),
  target_port: intOption('Port of the export target; kept for config compatibility.', { default: 3260, min: 1, max: 65535 }),
  target_prefix: stringOption('Prefix of export target names; kept for config compatibility.', { default: 'iqn.2010-10.org.openstack:' }),
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
  private readonly hostLabel: string;

  constructor(
    private readonly options: LvmOptions,
    private readonly context: DriverContext,
  ) {
    if (options.san_ip) {
      const { host, port } = splitHost(options.san_ip, options.san_ssh_port);
      this.hostLabel = `${host}:${port}`;
      this.runner = new SshRunner({
        host,
        port,
        username: options.san_login,
        password: options.san_password || undefined,
        privateKeyPath: options.san_private_key,
        connectTimeoutMs: options.ssh_conn_timeout * 1000,
        minConnections: Math.min(options.ssh_min_pool_conn, options.ssh_max_pool_conn),
        maxConnections: options.ssh_max_pool_conn,
        knownHostsFile: options.ssh_hosts_key_file ?? join(context.dataDir, 'ssh_known_hosts'),
        strictHostKeyPolicy: options.strict_ssh_host_key_policy,
        log: context.log,
      });
    } else {
      this.hostLabel = 'this host';
      this.runner = new LocalRunner();
    }
  }

  async setup(): Promise<void> {
    try {
      if (this.runner instanceof SshRunner) await this.runner.warmUp();
      const asRoot = await this.runner.isRoot();
      const rootHelper = asRoot ? [] : this.context.rootHelper.split(/\s+/).filter(Boolean);
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
  }

  notes(): string[] {
    return [`runs lvm on ${this.hostLabel}${this.commands?.lvmSystemDir ? ` with LVM_SYSTEM_DIR=${this.commands.lvmSystemDir}` : ''}`, this.provisioningNote];
  }

  async getStats(): Promise<BackendStats> {
    const group = await this.volumeGroup('get stats');
    const volumes = parseLvs((await this.lvm(lvsCommand(this.commands), 'list logical volumes')).stdout);
    let total: number;
    let free: number;
    let provisioned: number;
    if (this.thin) {
      const pool = parseThinPoolUsage((await this.lvm(thinPoolUsageCommand(this.commands), 'read thin pool usage')).stdout);
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
    const name = lvName(volume.id);
    const command = this.thin
      ? createThinCommand(this.commands, name, volume.size)
      : createThickCommand(this.commands, name, volume.size, this.options.lvm_mirrors);
    const result = await this.lvm(command, `create ${name}`, { allowFailure: true });
    if (result.exitCode !== 0) {
      const reason = lvmErrorText(result.stderr);
      const code: ErrorCode = /already exists/i.test(reason) ? 'ALREADY_EXISTS' : /insufficient free space/i.test(reason) ? 'OUT_OF_CAPACITY' : 'BACKEND_UNAVAILABLE';
      throw new StorageError(code, `backend "${this.context.backendName}": lvcreate ${this.options.volume_group}/${name} failed on ${this.hostLabel}: ${reason}`);
    }
    return { provider_location: `${this.options.volume_group}/${name}` };
  }

  async extendVolume(volume: VolumeRef, newSizeGb: number): Promise<void> {
    const name = lvName(volume.id);
    const result = await this.lvm(extendCommand(this.commands, name, newSizeGb), `extend ${name}`, { allowFailure: true });
    if (result.exitCode !== 0) {
      const reason = lvmErrorText(result.stderr);
      const code: ErrorCode = /not found|failed to find/i.test(reason) ? 'NOT_FOUND' : /insufficient free space/i.test(reason) ? 'OUT_OF_CAPACITY' : 'BACKEND_UNAVAILABLE';
      throw new StorageError(code, `backend "${this.context.backendName}": lvextend ${this.options.volume_group}/${name} failed on ${this.hostLabel}: ${reason}`);
    }
  }

  async deleteVolume(volume: VolumeRef): Promise<void> {
    const name = lvName(volume.id);
    const present = await this.lvm(lvsCommand(this.commands, name), `look up ${name}`, { allowFailure: true });
    if (present.exitCode !== 0 || parseLvs(present.stdout).length === 0) return; // already gone counts as deleted
    await this.lvm(removeCommand(this.commands, name), `remove ${name}`);
  }

  async close(): Promise<void> {
    await this.runner.close();
  }

  private async volumeGroup(operation: string): Promise<VolumeGroupInfo> {
    const result = await this.lvm(vgsCommand(this.commands), `${operation}: read volume group`, { allowFailure: true });
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
    const lvs = parseLvs((await this.lvm(lvsCommand(this.commands), 'list logical volumes')).stdout);
    const poolExists = lvs.some((lv) => lv.name === poolName);
    if (this.options.lvm_type === 'default') {
      this.provisioningNote = 'thick (lvm_type: default)';
      return;
    }
    if (this.options.lvm_type === 'thin') {
      if (!poolExists) {
        const created = await this.lvm(createThinPoolCommand(this.commands, group.freeGb), `create thin pool ${poolName}`, { allowFailure: true });
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
      const created = await this.lvm(createThinPoolCommand(this.commands, group.freeGb), `create thin pool ${poolName}`, { allowFailure: true });
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

  private async lvm(command: string[], operation: string, options: { allowFailure?: boolean } = {}): Promise<CommandResult> {
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

/** Cinder's volume_name_template. */
function lvName(volumeId: string): string {
  return `volume-${volumeId}`;
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
  create: (opts, context) => new LvmDriver(opts, context),
});
