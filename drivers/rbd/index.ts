import { StorageError } from '../kit/base.js';
import { privilegedPrefix, type CommandRunner } from '../kit/exec/runner.js';
import { SshRunner } from '../kit/exec/ssh.js';
import { sanCommandRunner } from '../kit/exec/san-runner.js';
import { boolOption, capacityOptions, dictOption, enumOption, intOption, markedOurs, sanIpOption, sanOptions, stringOption, textOption } from '../kit/options.js';
import { TARGET_HELPERS, targetFor, targetOptions, tgtSettings, thisHostAddress } from '../kit/targets/index.js';
import { defineDriver, type BackendStats, type DriverContext, type DriverOptions, type ExportOperations, type VolumeDriver, type VolumeRef } from '../kit/types.js';
import { CephCli, volumeImage } from './cli.js';
import { RbdConnections, monitorAddresses, rbdBackingStore, tgtConfPath, writeTgtConf } from './exports.js';
import { RbdImages, RbdManage } from './images.js';
import { RbdSnapshots } from './snapshots.js';

/**
 * Cinder's RBD driver (cinder.volume.drivers.rbd.RBDDriver) on the `rbd` and `ceph` command-line
 * tools with --format json, run on this host or on san_ip over SSH. Images, snapshots and clones
 * are named and related as Cinder's driver does (images.ts, snapshots.ts); connections answer
 * Cinder's `rbd` connection info, or an iSCSI export through tgt's rbd backing store (exports.ts).
 */
const DRIVER_VERSION = '1.3.0';

/** Options of Cinder 21's RBD driver that cinderlib's single-process use never reaches: accepted and not used. */
function unusedCinderOptions() {
  const unused = (what: string) => `${what}: accepted and not used here.`;
  return {
    rados_connection_retries: intOption(unused('Times librados retries connecting (the tools connect per call)'), { default: 3, oslo: { kind: 'Integer' } }),
    rados_connection_interval: intOption(unused('Seconds between librados connection retries'), { default: 5, oslo: { kind: 'Integer' } }),
    replication_connect_timeout: intOption(unused("Timeout to reach a replication target's cluster (cinderlib does not replicate)"), { default: 5, oslo: { kind: 'Integer' } }),
    report_dynamic_total_capacity: boolOption(unused("Cinder's choice of total capacity formula; the one here is Cinder 21's default (max_avail + stored)"), { default: true }),
    enable_deferred_deletion: boolOption(unused("Cinder's delayed deletion through the trash; images with watchers or snapshots of others go to the trash here"), { default: false }),
    deferred_deletion_delay: intOption(unused('Seconds a deferred deletion waits'), { default: 0, oslo: { kind: 'Integer' } }),
    deferred_deletion_purge_interval: intOption(unused("Seconds between purges of Cinder's deferred deletions"), { default: 60, oslo: { kind: 'Integer' } }),
    replication_device: dictOption(unused('Replication target cluster (cinderlib does not replicate)')),
    volume_dd_blocksize: stringOption(unused("Block size of Cinder's generic dd copies (copies here are rbd's own)"), { default: '1M' }),
  };
}

const options = {
  rbd_pool: stringOption('The RADOS pool where rbd volumes are stored.', { default: 'rbd' }),
  rbd_user: stringOption('The RADOS client name for accessing rbd volumes (only set when using cephx authentication), e.g. cinder for client.cinder.'),
  rbd_ceph_conf: textOption('Path to the ceph configuration file on the host the tools run on; empty for their default (/etc/ceph/<cluster>.conf).', { default: '' }),
  rbd_cluster_name: stringOption('The name of the ceph cluster.', { default: 'ceph' }),
  rbd_secret_uuid: stringOption('The libvirt uuid of the secret for the rbd_user volumes; defaults to the cluster fsid.'),
  rbd_keyring_conf: textOption("Path to the ceph keyring file (cinderlib's option): the tools read the key from it, and its contents go in connections as data.keyring, a secret.", {
    default: '',
  }),
  rbd_flatten_volume_from_snapshot: boolOption('Flatten volumes created from snapshots to remove dependency from volume to snapshot.', { default: false }),
  rbd_max_clone_depth: intOption('Maximum number of nested volume clones that are taken before a flatten occurs; 0 copies instead of cloning.', {
    default: 5,
    min: 0,
    oslo: { kind: 'Integer' },
  }),
  rbd_store_chunk_size: intOption('Volumes will be chunked into objects of this size (in megabytes).', { default: 4, min: 1, max: 32, oslo: { kind: 'Integer' } }),
  rados_connect_timeout: intOption('Timeout in seconds for reaching the cluster; below 0 keeps librados defaults.', { default: -1 }),
  report_discard_supported: boolOption("Accepted as Cinder's; RBD connections always report discard: true, as Cinder's RBD driver does.", {
    default: false,
    ours: "a common Cinder option (cinder/volume/driver.py) the RBD driver's listing leaves out",
  }),
  ...unusedCinderOptions(),
  rbd_exclusive_cinder_pool: boolOption("The pool is used by this backend only: provisioned capacity counts this backend's volumes, not every image of the pool.", { default: true }),
  ...capacityOptions,
  ...markedOurs(
    {
      target_helper: enumOption(
        "Also export volumes over iSCSI with tgtadm (tgt's rbd backing store, Debian package tgt-rbd, on the host the tools run on). Unset: connections answer Cinder's rbd connection info.",
        TARGET_HELPERS,
      ),
      ...targetOptions,
    },
    "Cinder's RBD driver has no iSCSI export: tgt's rbd backing store",
  ),
  ...markedOurs(
    {
      ...sanOptions,
      san_ip: sanIpOption('Host where the rbd and ceph tools run (over SSH); unset runs them on this host.'),
      san_login: stringOption('SSH user on san_ip.', { default: 'admin' }),
      ssh_hosts_key_file: stringOption('known_hosts file for san_ip (default: ssh_known_hosts in the data directory).', {
        defaultText: '$XDG_DATA_HOME/cinderlib-mcp/ssh_known_hosts',
      }),
      strict_ssh_host_key_policy: boolOption('Refuse hosts not already in ssh_hosts_key_file (otherwise a new host is trusted and recorded).', { default: false }),
    },
    "Cinder's RBD driver runs where librados is: the rbd and ceph tools on another host, over SSH",
  ),
};

export type RbdOptions = DriverOptions<typeof options>;

class RbdDriver implements VolumeDriver {
  private readonly runner: CommandRunner;
  private readonly hostLabel: string;
  private readonly remoteHost: string | undefined;
  private readonly cli: CephCli;
  private readonly images: RbdImages;
  readonly snapshots: RbdSnapshots;
  readonly clones: RbdSnapshots;
  readonly manage: RbdManage;
  readonly exports: ExportOperations;
  private fsid = '';
  private keyringData: string | undefined;

  constructor(
    private readonly options: RbdOptions,
    private readonly context: DriverContext,
  ) {
    ({ runner: this.runner, hostLabel: this.hostLabel, remoteHost: this.remoteHost } = sanCommandRunner(options, context));
    this.cli = new CephCli(
      this.runner,
      {
        pool: options.rbd_pool,
        cluster: options.rbd_cluster_name,
        user: options.rbd_user,
        conf: options.rbd_ceph_conf || undefined,
        keyring: options.rbd_keyring_conf || undefined,
        connectTimeout: options.rados_connect_timeout,
      },
      context,
    );
    this.images = new RbdImages(this.cli, options.rbd_store_chunk_size, context);
    this.manage = new RbdManage(this.images);
    this.snapshots = this.clones = new RbdSnapshots(this.images, {
      maxCloneDepth: options.rbd_max_clone_depth,
      flattenFromSnapshot: options.rbd_flatten_volume_from_snapshot,
    });
    this.exports = options.target_helper ? this.iscsiExports(options.target_helper, this.remoteHost) : this.rbdConnections();
  }

  private rbdConnections(): RbdConnections {
    return new RbdConnections(this.cli, {
      clusterName: this.options.rbd_cluster_name,
      user: this.options.rbd_user,
      secretUuid: () => this.options.rbd_secret_uuid ?? this.fsid,
      keyringData: () => this.keyringData,
    });
  }

  private iscsiExports(helper: RbdOptions['target_helper'] & string, sshHost: string | undefined): ExportOperations {
    const settings = tgtSettings(this.options, this.context, sshHost ?? thisHostAddress());
    const tgtConf = this.options.rbd_keyring_conf ? tgtConfPath(settings.configDir, this.context.backendName) : undefined;
    return targetFor(
      helper,
      settings,
      {
        runner: this.runner,
        privileged: () => privilegedPrefix(this.runner, this.context.rootHelper),
        // tgt's module reports a missing image only as "no LUN": look first, and give tgt its conf.
        prepareBacking: async (volume) => {
          const image = volumeImage(volume.id);
          if (!(await this.images.info(image))) throw this.cli.error('NOT_FOUND', `cannot export volume ${volume.id}: ${image} does not exist in pool ${this.options.rbd_pool}`);
          if (tgtConf) await writeTgtConf(this.cli, this.context, tgtConf);
        },
      },
      (volume) => rbdBackingStore(this.cli, volume, tgtConf),
      this.context,
    );
  }

  /** Cinder's do_setup and check_for_setup_error: the keyring's data, the cluster reachable, the pool there. */
  async setup(): Promise<void> {
    if (this.runner instanceof SshRunner) {
      try {
        await this.runner.warmUp();
      } catch (error) {
        throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.context.backendName}": ${(error as Error).message}`, { cause: error });
      }
    }
    if (this.options.rbd_keyring_conf) await this.readKeyring(this.options.rbd_keyring_conf);
    this.fsid = (await monitorAddresses(this.cli)).fsid;
    const listed = await this.cli.rbd(['ls', '--format', 'json', this.options.rbd_pool], `look for pool ${this.options.rbd_pool}`);
    if (listed.exitCode === 2) {
      throw this.cli.error(
        'BACKEND_UNAVAILABLE',
        `pool "${this.options.rbd_pool}" does not exist in cluster ${this.fsid}; create it (ceph osd pool create, rbd pool init) or set rbd_pool`,
      );
    }
    this.cli.check(listed, `look for pool ${this.options.rbd_pool}`);
  }

  /** cinderlib's rbd_keyring_conf: its contents are a secret from the moment they are read. */
  private async readKeyring(path: string): Promise<void> {
    const read = await this.runner.run(['cat', path], { operation: `read rbd_keyring_conf ${path}` }).catch((error: Error) => ({ exitCode: -1, stdout: '', stderr: error.message }));
    const text = read.exitCode === 0 ? read.stdout : '';
    for (const match of text.matchAll(/^\s*key\s*=\s*(\S+)\s*$/gm)) this.context.secrets.register(match[1]);
    if (text.trim()) this.context.secrets.register(text);
    if (!/^\s*key\s*=/m.test(text)) {
      throw this.cli.error(
        'BACKEND_UNAVAILABLE',
        `no keyring data found in rbd_keyring_conf ${path} on ${this.hostLabel}${read.exitCode !== 0 ? ` (${this.context.secrets.redact(read.stderr.trim())})` : ''}`,
      );
    }
    this.keyringData = text;
  }

  notes(): string[] {
    const user = this.options.rbd_user ? `client.${this.options.rbd_user}` : 'the default client (client.admin)';
    return [
      `runs rbd and ceph on ${this.hostLabel} as ${user}, pool ${this.options.rbd_pool}`,
      this.options.target_helper ? `connections: iSCSI through tgt's rbd backing store (${this.options.target_helper})` : "connections: Cinder's rbd connection info",
    ];
  }

  /** Two backends on one pool of one cluster draw on the same space. */
  capacityDomain(): string | undefined {
    return this.fsid ? `ceph:${this.fsid}/${this.options.rbd_pool}` : undefined;
  }

  async getStats(request?: { recount?: boolean }): Promise<BackendStats> {
    const { totalGb, freeGb, provisionedGb } = await this.images.capacity(this.options.rbd_exclusive_cinder_pool, request?.recount === true);
    const o = this.options;
    return {
      volume_backend_name: this.context.backendName,
      vendor_name: 'Open Source',
      driver_version: DRIVER_VERSION,
      storage_protocol: 'ceph',
      pools: [
        {
          pool_name: this.context.backendName,
          total_capacity_gb: totalGb,
          free_capacity_gb: freeGb,
          provisioned_capacity_gb: provisionedGb,
          reserved_percentage: o.reserved_percentage,
          max_over_subscription_ratio: o.max_over_subscription_ratio,
          thin_provisioning_support: true,
          thick_provisioning_support: false,
          multiattach: true,
          location_info: `${o.rbd_cluster_name}:${o.rbd_ceph_conf}:${this.fsid}:${o.rbd_user ?? 'None'}:${o.rbd_pool}`,
          backend_state: 'up',
          qos_support: false,
          replication_enabled: false,
        },
      ],
    };
  }

  async createVolume(volume: VolumeRef): Promise<void> {
    await this.images.create(volume.id, volume.size);
  }

  async extendVolume(volume: VolumeRef, newSizeGb: number): Promise<void> {
    await this.images.resize(volumeImage(volume.id), newSizeGb);
  }

  async deleteVolume(volume: VolumeRef): Promise<void> {
    await this.images.deleteVolume(volume.id);
  }

  async close(): Promise<void> {
    await this.runner.close();
  }
}

export default defineDriver({
  summary: "Cinder's RBD driver: Ceph RBD images through the rbd and ceph tools, on this host or on san_ip over SSH.",
  options,
  version: DRIVER_VERSION,
  ciWikiName: 'Cinder_Jenkins',
  create: (opts, context) => new RbdDriver(opts, context),
});
