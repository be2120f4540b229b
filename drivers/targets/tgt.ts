import { posix } from 'node:path';
import { StorageError } from '../../src/errors.js';
import { KeyedMutex } from '../../src/locks.js';
import { CommandTransportError, type CommandResult, type CommandRunner } from '../../src/exec/runner.js';
import type { ConnectionInfo, Connector, DriverContext, ExportOperations, ExportUpdate, VolumeRef } from '../types.js';
import { formatProviderAuth, generateChapCredentials, parseProviderAuth, type ChapCredentials } from './chap.js';

/**
 * Cinder's TgtAdm target (cinder/volume/targets/tgt.py with iscsi.py): one target per volume named
 * <target_prefix>volume-<id>, the volume as LUN 1, CHAP credentials per volume kept as the
 * volume's provider_auth, a tgt configuration file per target and `tgt-admin --update` to apply
 * it. The host's administrator runs tgtd; this only configures it, on the host the driver's
 * commands run on (this one, or the LVM host over SSH).
 */
export interface TgtSettings {
  backendName: string;
  ipAddress: string;
  port: number;
  prefix: string;
  configDir: string;
  writeCache: 'on' | 'off';
  backingFlags: string;
}

export interface TargetHost {
  runner: CommandRunner;
  /** The root helper prefix for tgt's commands on that host ([] when they run as root). */
  privileged(): Promise<string[]>;
  /** Makes the backing device present before tgt opens it (LVM activates the LV). */
  prepareBacking?(volume: VolumeRef): Promise<void>;
}

/** tgt-admin picks a free target id by reading tgtd's list: two updates at once on one host would pick the same. */
const tgtAdminTurns = new KeyedMutex();

const TGT_LUN = 1;

export class TgtTarget implements ExportOperations {
  readonly requiredConnectorKeys = ['initiator'] as const;

  constructor(
    private readonly settings: TgtSettings,
    private readonly host: TargetHost,
    private readonly backingPath: (volume: VolumeRef) => string,
    private readonly context: Pick<DriverContext, 'secrets' | 'log'>,
  ) {}

  iqn(volume: VolumeRef): string {
    return `${this.settings.prefix}volume-${volume.id}`;
  }

  async createExport(volume: VolumeRef): Promise<ExportUpdate | void> {
    await this.requirePortal();
    await this.host.prepareBacking?.(volume);
    const backing = this.backingPath(volume);
    if ((await this.run(['test', '-e', backing], `look for ${backing}`)).exitCode !== 0) {
      throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.settings.backendName}": volume ${volume.id}'s backing store ${backing} does not exist on ${this.host.runner.target}, so it cannot be exported`);
    }
    const known = parseProviderAuth(volume.provider_auth);
    const credentials = known ?? generateChapCredentials();
    this.context.secrets.register(credentials.password);
    const file = this.configFile(volume);
    const iqn = this.iqn(volume);
    await this.writeConfig(file, this.configText(volume, credentials));
    try {
      await this.tgtAdmin(['-c', file, '--update', iqn], `export volume ${volume.id} as ${iqn}`);
      if (!(await this.hasLun(iqn))) {
        throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.settings.backendName}": tgt-admin applied ${file} but tgtd shows no LUN ${TGT_LUN} in target ${iqn}; tgtd's log says why (is ${this.backingPath(volume)} readable by tgtd?)`);
      }
    } catch (error) {
      // A failed export leaves nothing behind: no target, no file holding the credentials.
      await this.tgtAdmin(['--delete', iqn, '-f'], `undo the export of volume ${volume.id}`).catch(() => undefined);
      await this.removeConfig(file).catch(() => undefined);
      throw error;
    }
    return known ? undefined : { provider_auth: formatProviderAuth(credentials) };
  }

  async initializeConnection(volume: VolumeRef, connector: Connector): Promise<ConnectionInfo> {
    const credentials = parseProviderAuth(volume.provider_auth);
    if (!credentials) throw new StorageError('INTERNAL', `volume ${volume.id} has no CHAP credentials recorded for its export`);
    const portal = formatPortal(this.settings.ipAddress, this.settings.port);
    const data: Record<string, unknown> = {
      target_discovered: false,
      target_iqn: this.iqn(volume),
      target_portal: portal,
      target_lun: TGT_LUN,
      volume_id: volume.id,
      auth_method: 'CHAP',
      auth_username: credentials.username,
      auth_password: credentials.password,
      encrypted: false,
    };
    if (connector.multipath) Object.assign(data, { target_portals: [portal], target_iqns: [data.target_iqn], target_luns: [TGT_LUN] });
    return { driver_volume_type: 'iscsi', data };
  }

  /** tgt targets admit every initiator that knows the volume's CHAP credentials: nothing per host to take away (as Cinder). */
  async terminateConnection(): Promise<void> {}

  async removeExport(volume: VolumeRef): Promise<void> {
    const iqn = this.iqn(volume);
    await this.tgtAdmin(['--delete', iqn, '-f'], `remove the export of volume ${volume.id}`);
    if (await this.targetExists(iqn)) {
      // Cinder saw tgt-admin fail silently under load; one more try, then say so.
      await this.tgtAdmin(['--delete', iqn, '-f'], `remove the export of volume ${volume.id}`);
      if (await this.targetExists(iqn)) {
        throw new StorageError('BACKEND_BUSY', `backend "${this.settings.backendName}": tgtd still shows target ${iqn} after tgt-admin --delete; an initiator may hold it. Log it out, then disconnect again`);
      }
    }
    await this.removeConfig(this.configFile(volume));
  }

  /** Cinder's extend_target: the LUN takes the new size only when tgt re-reads it, which interrupts sessions briefly. */
  async extendExport(volume: VolumeRef): Promise<void> {
    const iqn = this.iqn(volume);
    if (!(await this.targetExists(iqn))) return;
    await this.tgtAdmin(['-c', this.configFile(volume), '--update', iqn, '-f'], `show volume ${volume.id}'s new size in target ${iqn}`);
  }

  private configFile(volume: VolumeRef): string {
    return posix.join(this.settings.configDir, `volume-${volume.id}`);
  }

  private configText(volume: VolumeRef, credentials: ChapCredentials): string {
    // Cinder's VOLUME_CONF. Paths and ids are ours (uuids, our folders); CHAP symbols have no spaces.
    const lines = [
      `<target ${this.iqn(volume)}>`,
      `    backing-store ${this.backingPath(volume)}`,
      '    driver iscsi',
      `    incominguser ${credentials.username} ${credentials.password}`,
      ...(this.settings.backingFlags ? [`    bsoflags ${this.settings.backingFlags}`] : []),
      `    write-cache ${this.settings.writeCache}`,
      `    scsi_sn volume-${volume.id}`,
      `    scsi_id volume-${volume.id}`,
      '</target>',
      '',
    ];
    return lines.join('\n');
  }

  /** Written through the command runner (the target's host may be remote), the password on stdin, never in argv. */
  private async writeConfig(file: string, text: string): Promise<void> {
    const script = 'umask 077 && mkdir -p "$1" && cat > "$2.tmp" && mv -f "$2.tmp" "$2"';
    await this.check(await this.run(['sh', '-c', script, 'sh', this.settings.configDir, file], `write ${file}`, text), `write ${file}`);
  }

  private async removeConfig(file: string): Promise<void> {
    await this.check(await this.run(['rm', '-f', file, `${file}.tmp`], `remove ${file}`), `remove ${file}`);
  }

  /** tgtd must listen where connecting hosts are told to go: refuse before exporting, naming both. */
  private async requirePortal(): Promise<void> {
    const output = await this.tgtadm(['--lld', 'iscsi', '--op', 'show', '--mode', 'portal'], 'list the portals tgtd listens on');
    const portals = [...output.matchAll(/^Portal:\s*(\S+),\d+/gm)].map((match) => match[1]!);
    const wanted = formatPortal(this.settings.ipAddress, this.settings.port);
    const anyAddress = [formatPortal('0.0.0.0', this.settings.port), formatPortal('::', this.settings.port)];
    if (portals.includes(wanted) || portals.some((portal) => anyAddress.includes(portal))) return;
    throw new StorageError(
      'BACKEND_UNAVAILABLE',
      `backend "${this.settings.backendName}": tgtd on ${this.host.runner.target} listens on ${portals.join(', ') || 'no portal'}, not on ${wanted} (target_ip_address:target_port); start tgtd with --iscsi portal=${wanted}, or set target_ip_address and target_port to where it listens`,
    );
  }

  private async targetExists(iqn: string): Promise<boolean> {
    return this.targetSection(await this.showTargets(), iqn) !== undefined;
  }

  private async hasLun(iqn: string): Promise<boolean> {
    return new RegExp(`^\\s+LUN: ${TGT_LUN}$`, 'm').test(this.targetSection(await this.showTargets(), iqn) ?? '');
  }

  private showTargets(): Promise<string> {
    return this.tgtadm(['--lld', 'iscsi', '--op', 'show', '--mode', 'target'], 'list tgtd targets');
  }

  private targetSection(show: string, iqn: string): string | undefined {
    const sections = show.split(/^(?=Target \d+: )/m);
    return sections.find((section) => section.startsWith('Target ') && section.split('\n', 1)[0]!.endsWith(`: ${iqn}`));
  }

  private async tgtadm(args: string[], operation: string): Promise<string> {
    const result = await this.run([...(await this.host.privileged()), 'tgtadm', ...args], operation);
    return this.check(result, operation).stdout;
  }

  private async tgtAdmin(args: string[], operation: string): Promise<void> {
    const privileged = await this.host.privileged();
    await tgtAdminTurns.run(this.host.runner.target, async () => this.check(await this.run([...privileged, 'tgt-admin', ...args], operation), operation));
  }

  private async run(argv: string[], operation: string, input?: string): Promise<CommandResult> {
    try {
      return await this.host.runner.run(argv, { operation, input });
    } catch (error) {
      if (error instanceof CommandTransportError) throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.settings.backendName}": ${this.context.secrets.redact(error.message)}`);
      throw error;
    }
  }

  private check(result: CommandResult, operation: string): CommandResult {
    if (result.exitCode === 0) return result;
    const output = this.context.secrets.redact(`${result.stderr}\n${result.stdout}`.trim()).slice(0, 2000);
    if (/not connected|can't connect|No such file or directory.*socket|failed to send request/i.test(output)) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `backend "${this.settings.backendName}": ${operation}: tgtd is not running on ${this.host.runner.target} (${firstLine(output)}); start tgtd (control port 0) listening on ${formatPortal(this.settings.ipAddress, this.settings.port)}`,
      );
    }
    if (result.exitCode === 127 || /command not found|No such file or directory/.test(output) && /tgt/.test(output)) {
      throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.settings.backendName}": ${operation}: tgt's commands are not installed on ${this.host.runner.target} (Debian: apt-get install tgt)`);
    }
    throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.settings.backendName}": ${operation} failed on ${this.host.runner.target} (exit ${result.exitCode}): ${output}`);
  }
}

export function formatPortal(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0] ?? '';
}
