import { posix } from 'node:path';
import type { ConnectionInfo, DriverContext, ExportOperations, VolumeRef } from '../kit/types.js';
import type { BackingStore } from '../kit/targets/index.js';
import { monDumpSchema, volumeImage, type CephCli } from './cli.js';

/**
 * How a connecting host reaches an RBD volume. Cinder's answer is `rbd` connection info (monitors,
 * user, libvirt secret), which qemu/libvirt and os-brick's RBD connector take; the image itself
 * needs nothing exported. With target_helper tgtadm the image is also served over iSCSI through
 * tgt's rbd backing store (beyond Cinder), so that hosts without Ceph clients can use it.
 */
export interface RbdConnectionSettings {
  clusterName: string;
  user?: string;
  /** rbd_secret_uuid, or the cluster's fsid (Cinder's default). */
  secretUuid(): string;
  /** rbd_keyring_conf's contents (cinderlib's data.keyring): a secret. */
  keyringData(): string | undefined;
}

/** `ceph mon dump`: each monitor's v1 address, as Cinder's _get_mon_addrs reads it (ports as strings). */
export async function monitorAddresses(cli: CephCli): Promise<{ hosts: string[]; ports: string[]; fsid: string }> {
  const dump = await cli.json('ceph', ['mon', 'dump'], monDumpSchema, 'read the monitor map (ceph mon dump)');
  const hosts: string[] = [];
  const ports: string[] = [];
  for (const mon of dump.mons) {
    const addr = mon.addr ?? mon.public_addr;
    if (!addr || !addr.includes('/')) continue;
    const hostPort = addr.slice(0, addr.lastIndexOf('/'));
    const colon = hostPort.lastIndexOf(':');
    hosts.push(hostPort.slice(0, colon).replace(/^\[|\]$/g, ''));
    ports.push(hostPort.slice(colon + 1));
  }
  return { hosts, ports, fsid: dump.fsid };
}

/** Cinder's RBD create_export / initialize_connection / terminate_connection / remove_export. */
export class RbdConnections implements ExportOperations {
  /** os-brick's RBD connector needs nothing of the host. */
  readonly requiredConnectorKeys = [] as const;
  readonly connectionType = 'rbd';

  constructor(
    private readonly cli: CephCli,
    private readonly settings: RbdConnectionSettings,
  ) {}

  /** Nothing to export (Cinder: pass); the image must be there for a host to open it. */
  async createExport(volume: VolumeRef): Promise<void> {
    const image = volumeImage(volume.id);
    const result = await this.cli.rbd(['info', '--format', 'json', this.cli.spec(image)], `look up ${image}`);
    if (result.exitCode !== 0) throw this.cli.failure(`look up ${image} for its connection`, result);
  }

  async initializeConnection(volume: VolumeRef): Promise<ConnectionInfo> {
    const { hosts, ports } = await monitorAddresses(this.cli);
    const keyring = this.settings.keyringData();
    return {
      driver_volume_type: 'rbd',
      data: {
        name: `${this.cli.settings.pool}/${volumeImage(volume.id)}`,
        hosts,
        ports,
        cluster_name: this.settings.clusterName,
        auth_enabled: this.settings.user !== undefined,
        auth_username: this.settings.user ?? null,
        secret_type: 'ceph',
        secret_uuid: this.settings.secretUuid(),
        volume_id: volume.id,
        discard: true,
        ...(keyring !== undefined ? { keyring } : {}),
      },
    };
  }

  async terminateConnection(): Promise<void> {}

  async removeExport(): Promise<void> {}
}

/**
 * What tgt's rbd backing store opens for a volume: `pool/volume-<id>` with `conf=...;id=...`.
 * tgt's module takes no keyring option: when rbd_keyring_conf is set, tgt gets a conf of its own
 * (`tgtConf`) that is rbd_ceph_conf plus that keyring for the user.
 */
export function rbdBackingStore(cli: CephCli, volume: VolumeRef, tgtConf: string | undefined): BackingStore {
  const { user, cluster, conf } = cli.settings;
  const options = [...((tgtConf ?? conf) ? [`conf=${tgtConf ?? conf}`] : []), ...(user ? [`id=${user}`] : []), ...(cluster !== 'ceph' ? [`cluster=${cluster}`] : [])];
  return { type: 'rbd', name: `${cli.settings.pool}/${volumeImage(volume.id)}`, ...(options.length > 0 ? { options: options.join(';') } : {}) };
}

/** Where the tgt-only conf goes: beside the backend's target config files. */
export function tgtConfPath(configDir: string, backendName: string): string {
  return posix.join(configDir, `ceph-${backendName.replace(/[^A-Za-z0-9._-]/g, '_')}.conf`);
}

/**
 * Writes tgt's conf on the target host: rbd_ceph_conf's text, then the user's keyring. No key is in
 * it (paths only), but it goes 0600 in the 0700 target folder like everything there.
 */
export async function writeTgtConf(cli: CephCli, context: Pick<DriverContext, 'secrets'>, file: string): Promise<void> {
  const { conf, user, keyring } = cli.settings;
  const base = conf ? await cli.runner.run(['cat', conf], { operation: `read ${conf}` }) : { exitCode: 0, stdout: '', stderr: '' };
  if (base.exitCode !== 0) throw cli.error('BACKEND_UNAVAILABLE', `cannot read rbd_ceph_conf ${conf} on ${cli.runner.target}: ${context.secrets.redact(base.stderr.trim())}`);
  const text = `${base.stdout.replace(/\s*$/, '\n')}\n# Added by cinderlib-mcp for tgt's rbd backing store (rbd_keyring_conf)\n[client.${user ?? 'admin'}]\n\tkeyring = ${keyring}\n`;
  const script = 'umask 077 && mkdir -p "$1" && cat > "$2.tmp" && mv -f "$2.tmp" "$2"';
  const written = await cli.runner.run(['sh', '-c', script, 'sh', posix.dirname(file), file], { operation: `write ${file}`, input: text });
  if (written.exitCode !== 0) throw cli.error('BACKEND_UNAVAILABLE', `cannot write ${file} on ${cli.runner.target}: ${context.secrets.redact(written.stderr.trim())}`);
}
