import { existsSync } from 'node:fs';
import { StorageError } from '../../../src/base/errors.js';
import { KeyedMutex } from '../../../src/base/locks.js';
import type { ConnectionInfo, Connector, DriverContext, ExportOperations, ExportUpdate, VolumeRef } from '../types.js';
import { iscsiConnection } from '../iscsi/connection.js';
import { formatProviderAuth, generateChapCredentials, parseProviderAuth, type ChapCredentials } from '../iscsi/chap.js';
import { checkConfigfsRoot, checkIscsiName, checkLioBackingPath, checkLioChap, checkLioVolumeId, portalDirName } from './lio-fields.js';
import { ConfigfsChannel, ConfigfsOpError, type ConfigfsEntry, type ConfigfsOp } from './lio-relay.js';
import { readBacking, readLioState, type Backing, type LioState } from './lio-state.js';
import { LocalRunner } from '../exec/local.js';
import type { TargetHost } from './tgtd-relay.js';
import { formatPortal } from './tgt.js';

/**
 * Cinder's LioAdm target (cinder/volume/targets/lio.py driving cinder-rtstool, which drives
 * rtslib-fb), written natively to the kernel's configfs: a backstore named after the target
 * (block/iblock for a block device, fileio for an image file), the iSCSI target
 * <target_prefix>volume-<id> with TPG 1 requiring CHAP (attrib/authentication=1), the backstore as
 * LUN 0, a network portal per target address, and a node ACL per connecting initiator holding the
 * volume's CHAP credentials with LUN 0 mapped. Disconnect removes the initiator's ACL; the last
 * one removes the target and the backstore (rtstool delete). Every write goes through the host's
 * command runner (ConfigfsChannel), so it works as root, through the root helper and over SSH.
 */
export interface LioSettings {
  backendName: string;
  ipAddress: string;
  port: number;
  prefix: string;
  /** Cinder's target_secondary_ip_addresses: more portals, given as multipath paths. */
  secondaryIpAddresses?: readonly string[];
  /** Where configfs's target tree is on the host (lioConfigfsRoot()). */
  configfsRoot: string;
}

export const LIO_CONFIGFS_ROOT = '/sys/kernel/config/target';

/**
 * The configfs root: the kernel's, unless CINDERLIB_MCP_LIO_CONFIGFS_ROOT names another. That
 * variable is for the tests, which point it at a stand-in tree (test/lio/) because their hosts have
 * no LIO; it is not a user option and the README does not offer it.
 */
export function lioConfigfsRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.CINDERLIB_MCP_LIO_CONFIGFS_ROOT || LIO_CONFIGFS_ROOT;
}

/** Cinder's lioadm lock (utils.synchronized('lioadm', external=True)): one change to a host's configfs at a time. */
const lioTurns = new KeyedMutex();
const TPG = 'tpgt_1';
/** Cinder: "For lio, the lun starts at lun 0." */
const LUN = 0;

export class LioTarget implements ExportOperations {
  readonly requiredConnectorKeys = ['initiator'] as const;
  private readonly configfs: ConfigfsChannel;
  private readonly root: string;
  private probed: string | undefined;

  constructor(
    private readonly settings: LioSettings,
    private readonly host: TargetHost,
    private readonly backingPath: (volume: VolumeRef) => string,
    private readonly context: Pick<DriverContext, 'secrets' | 'log'>,
  ) {
    this.root = checkConfigfsRoot(settings.configfsRoot);
    this.configfs = new ConfigfsChannel(host, this.root, settings.backendName, context.secrets);
  }

  iqn(volume: VolumeRef): string {
    return checkIscsiName(`${this.settings.prefix}volume-${checkLioVolumeId(volume.id)}`, `target name of volume ${volume.id} (check target_prefix)`);
  }

  /** rtstool create: backstore, target, TPG with CHAP required, LUN 0, enabled, one portal per address. */
  async createExport(volume: VolumeRef): Promise<ExportUpdate | void> {
    const recorded = this.recordedCredentials(volume);
    const iqn = this.iqn(volume);
    const backingPath = checkLioBackingPath(this.backingPath(volume), `volume ${volume.id}'s backing store path`);
    const portals = this.portalNames();
    return this.turn(async () => {
      await this.requireLio();
      await this.host.prepareBacking?.(volume);
      const backing = await readBacking(this.configfs, backingPath, { backend: this.settings.backendName, volumeId: volume.id, host: this.host.runner.target });
      const state = await this.state(iqn);
      const known = recorded ?? (await this.liveCredentials(iqn, state));
      const credentials = known ?? generateChapCredentials();
      this.context.secrets.register(credentials.password);
      const created = !state.tpg;
      try {
        await this.configfs.send(this.createOps(volume, iqn, backingPath, backing, state, portals), `export volume ${volume.id} as ${iqn}`);
      } catch (error) {
        // A failed export leaves nothing behind, unless the target was there before (hosts may use it).
        if (created) await this.configfs.send(this.removeOps(iqn, await this.state(iqn)), `undo the export of volume ${volume.id}`).catch(() => undefined);
        throw this.failure(error, `export volume ${volume.id} as ${iqn}`);
      }
      return recorded ? undefined : { provider_auth: formatProviderAuth(credentials) };
    });
  }

  /** rtstool add-initiator: the initiator's ACL with the volume's CHAP credentials and LUN 0 mapped; Cinder's iSCSI properties. */
  async initializeConnection(volume: VolumeRef, connector: Connector): Promise<ConnectionInfo> {
    const credentials = this.recordedCredentials(volume);
    if (!credentials) throw new StorageError('INTERNAL', `volume ${volume.id} has no CHAP credentials recorded for its export`);
    const iqn = this.iqn(volume);
    const acl = this.aclName(connector);
    await this.turn(async () => {
      const state = await this.state(iqn);
      if (!state.tpg) {
        throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.settings.backendName}": LIO on ${this.host.runner.target} has no target ${iqn}; connect again to export it anew`);
      }
      const existing = state.tpg.find((entry) => entry.kind === 'd' && entry.path.toLowerCase() === `acls/${acl}`);
      const aclPath = `${this.tpgPath(iqn)}/${existing?.path ?? `acls/${acl}`}`;
      const mapped = state.tpg.some((entry) => entry.path.toLowerCase() === `acls/${acl}/lun_${LUN}`);
      const ops: ConfigfsOp[] = [
        ...(existing ? [] : [{ op: 'mkdir', path: aclPath } as const]),
        // Written again when the ACL exists: its credentials are always the ones recorded for the volume.
        { op: 'write', path: `${aclPath}/auth/userid`, value: checkLioChap(credentials.username, `volume ${volume.id}'s provider_auth user name`) },
        { op: 'write', path: `${aclPath}/auth/password`, value: checkLioChap(credentials.password, `volume ${volume.id}'s provider_auth password`) },
        ...(mapped
          ? []
          : ([
              { op: 'mkdir', path: `${aclPath}/lun_${LUN}` },
              { op: 'symlink', target: `${this.tpgPath(iqn)}/lun/lun_${LUN}`, path: `${aclPath}/lun_${LUN}/${linkAlias(volume)}` },
              { op: 'write', path: `${aclPath}/lun_${LUN}/write_protect`, value: '0' },
            ] as const)),
      ];
      try {
        await this.configfs.send(ops, `add initiator ${acl} to ${iqn}`);
      } catch (error) {
        // An ACL this call made goes again: no half-made access is left behind.
        if (!existing) await this.removeAcl(iqn, acl).catch(() => undefined);
        throw this.failure(error, `add initiator ${acl} to ${iqn}`);
      }
    });
    const portals = [this.settings.ipAddress, ...(this.settings.secondaryIpAddresses ?? [])].map((address) => formatPortal(address, this.settings.port));
    const paths = portals.map((portal) => ({ iqn, portal, lun: LUN }));
    return iscsiConnection({
      target: paths[0],
      discovered: false,
      ...(connector.multipath || paths.length > 1 ? { paths } : {}),
      volumeId: volume.id,
      chap: credentials,
      encrypted: false,
    });
  }

  /** rtstool delete-initiator: the initiator's ACL goes (an ACL already gone is fine, as rtstool). */
  async terminateConnection(volume: VolumeRef, connector: Connector): Promise<void> {
    const iqn = this.iqn(volume);
    const acl = this.aclName(connector);
    await this.turn(() =>
      this.removeAcl(iqn, acl).catch((error: unknown) => {
        throw this.failure(error, `delete initiator ${acl} from ${iqn}`);
      }),
    );
  }

  private async removeAcl(iqn: string, acl: string): Promise<void> {
    const state = await this.state(iqn);
    const existing = state.tpg?.find((entry) => entry.kind === 'd' && entry.path.toLowerCase() === `acls/${acl}`);
    if (!existing || !state.tpg) return;
    await this.configfs.send(this.aclRemoval(`${this.tpgPath(iqn)}/${existing.path}`, state.tpg, existing.path), `delete initiator ${acl} from ${iqn}`);
  }

  /** rtstool delete: the target (ACLs, LUN, portals, TPG) and then its backstore; what is already gone is skipped. */
  async removeExport(volume: VolumeRef): Promise<void> {
    const iqn = this.iqn(volume);
    await this.turn(async () => {
      if (!(await this.hasLio())) return;
      await this.configfs.send(this.removeOps(iqn, await this.state(iqn)), `remove target ${iqn}`).catch((error: unknown) => {
        throw this.failure(error, `remove target ${iqn}`);
      });
    });
  }

  /**
   * After the volume grew. A block backstore needs nothing: the kernel reads the device's size at
   * each READ CAPACITY (Cinder's LIO does nothing either). A fileio backstore over a regular file
   * keeps the fd_dev_size it was given, so the new size is written to its control file.
   */
  async extendExport(volume: VolumeRef): Promise<void> {
    const iqn = this.iqn(volume);
    const backingPath = checkLioBackingPath(this.backingPath(volume), `volume ${volume.id}'s backing store path`);
    await this.turn(async () => {
      if (!(await this.hasLio())) return;
      const fileio = (await this.state(iqn)).storageObjects.filter((path) => path.startsWith('fileio_'));
      if (fileio.length === 0) return;
      const backing = await readBacking(this.configfs, backingPath, { backend: this.settings.backendName, volumeId: volume.id, host: this.host.runner.target });
      await this.configfs
        .send(
          fileio.map((path) => ({ op: 'write', path: `${this.root}/core/${path}/control`, value: `fd_dev_size=${backing.size}` })),
          `resize backstore ${iqn}`,
        )
        .catch((error: unknown) => {
          throw this.failure(error, `resize backstore ${iqn}`);
        });
    });
  }

  private createOps(volume: VolumeRef, iqn: string, backingPath: string, backing: Backing, state: LioState, portals: readonly string[]): ConfigfsOp[] {
    const ops: ConfigfsOp[] = [];
    let objectPath = state.storageObjects[0] && `${this.root}/core/${state.storageObjects[0]}`;
    if (!objectPath) {
      let index = 0;
      while (state.hbaIndexes.has(index)) index++;
      const hba = `${this.root}/core/${backing.plugin}_${index}`;
      objectPath = `${hba}/${iqn}`;
      // rtslib-fb's order: the device's parameters, udev_path, enable, then its unit serial (before any LUN exports it).
      const control = backing.plugin === 'iblock' ? `udev_path=${backingPath},readonly=0` : `fd_dev_name=${backingPath},fd_dev_size=${backing.size}`;
      ops.push(
        { op: 'mkdir', path: hba },
        { op: 'mkdir', path: objectPath },
        { op: 'write', path: `${objectPath}/control`, value: control },
        { op: 'write', path: `${objectPath}/udev_path`, value: backingPath },
        { op: 'write', path: `${objectPath}/enable`, value: '1' },
        { op: 'write', path: `${objectPath}/wwn/vpd_unit_serial`, value: volume.id },
      );
    }
    const target = this.targetPath(iqn);
    const tpg = this.tpgPath(iqn);
    const has = (path: string) => state.tpg?.some((entry) => entry.path === path) ?? false;
    // mkdir of the fabric loads iscsi_target_mod, as rtslib-fb's FabricModule does.
    if (!state.fabric) ops.push({ op: 'mkdir', path: `${this.root}/iscsi`, tolerate: ['EEXIST'] });
    if (!state.tpg) ops.push({ op: 'mkdir', path: target, tolerate: ['EEXIST'] }, { op: 'mkdir', path: tpg });
    ops.push({ op: 'write', path: `${tpg}/attrib/authentication`, value: '1' });
    if (!has(`lun/lun_${LUN}`)) ops.push({ op: 'mkdir', path: `${tpg}/lun/lun_${LUN}` }, { op: 'symlink', target: objectPath, path: `${tpg}/lun/lun_${LUN}/${linkAlias(volume)}` });
    // The kernel refuses to enable a TPG twice.
    if (!state.tpgEnabled) ops.push({ op: 'write', path: `${tpg}/enable`, value: '1' });
    for (const portal of portals) if (!has(`np/${portal}`)) ops.push({ op: 'mkdir', path: `${tpg}/np/${portal}` });
    return ops;
  }

  /** rtslib-fb's TPG.delete then StorageObject.delete: disable, ACLs, LUNs, portals, the TPG, the target, the backstore and its HBA. */
  private removeOps(iqn: string, state: LioState): ConfigfsOp[] {
    const gone = ['ENOENT'];
    const ops: ConfigfsOp[] = [];
    const tpg = this.tpgPath(iqn);
    if (state.tpg) {
      if (state.tpgEnabled) ops.push({ op: 'write', path: `${tpg}/enable`, value: '0', tolerate: gone });
      for (const acl of state.tpg.filter((entry) => entry.kind === 'd' && /^acls\/[^/]+$/.test(entry.path))) ops.push(...this.aclRemoval(`${tpg}/${acl.path}`, state.tpg, acl.path));
      for (const lun of state.tpg.filter((entry) => entry.kind === 'd' && /^lun\/lun_\d+$/.test(entry.path))) {
        for (const link of state.tpg.filter((entry) => entry.kind === 'l' && entry.path.startsWith(`${lun.path}/`)))
          ops.push({ op: 'unlink', path: `${tpg}/${link.path}`, tolerate: gone });
        ops.push({ op: 'rmdir', path: `${tpg}/${lun.path}`, tolerate: gone });
      }
      for (const portal of state.tpg.filter((entry) => entry.kind === 'd' && /^np\/[^/]+$/.test(entry.path))) ops.push({ op: 'rmdir', path: `${tpg}/${portal.path}`, tolerate: gone });
      ops.push({ op: 'rmdir', path: tpg, tolerate: gone });
    }
    ops.push({ op: 'rmdir', path: this.targetPath(iqn), tolerate: gone });
    for (const object of state.storageObjects) {
      ops.push({ op: 'rmdir', path: `${this.root}/core/${object}`, tolerate: gone }, { op: 'rmdir', path: `${this.root}/core/${object.split('/')[0]}`, tolerate: gone });
    }
    return ops;
  }

  /** An ACL's mapped LUNs (their links first), then the ACL; `relative` is the ACL's path in the TPG listing. */
  private aclRemoval(aclPath: string, tpg: readonly ConfigfsEntry[], relative: string): ConfigfsOp[] {
    const gone = ['ENOENT'];
    const tpgPath = aclPath.slice(0, -(relative.length + 1));
    const ops: ConfigfsOp[] = [];
    for (const mapped of tpg.filter((entry) => entry.kind === 'd' && entry.path.startsWith(`${relative}/`) && /^lun_\d+$/.test(entry.path.slice(relative.length + 1)))) {
      for (const link of tpg.filter((entry) => entry.kind === 'l' && entry.path.startsWith(`${mapped.path}/`)))
        ops.push({ op: 'unlink', path: `${tpgPath}/${link.path}`, tolerate: gone });
      ops.push({ op: 'rmdir', path: `${tpgPath}/${mapped.path}`, tolerate: gone });
    }
    ops.push({ op: 'rmdir', path: aclPath, tolerate: gone });
    return ops;
  }

  /** The state of the target named `iqn`; a relay error becomes the user's answer. */
  private state(iqn: string): Promise<LioState> {
    return readLioState(this.configfs, this.root, this.tpgPath(iqn), iqn).catch((error: unknown) => {
      throw this.failure(error, `look at LIO target ${iqn}`);
    });
  }

  /**
   * Why exports cannot work here: no LIO on the host. This host is looked at each time (a stat of
   * the configfs root); another host (over SSH) as of the last probe, made at set-up and by each export.
   */
  get unavailable(): string | undefined {
    if (this.host.runner instanceof LocalRunner) return existsSync(this.root) ? undefined : this.noLio();
    return this.probed;
  }

  /** Looks for LIO on the host (at the driver's set-up); a host that cannot be asked yet is left to the first export. */
  async probe(): Promise<void> {
    await this.hasLio().catch(() => undefined);
  }

  private noLio(): string {
    return `backend "${this.settings.backendName}": target_helper "lioadm" needs the kernel's LIO target (configfs at ${this.root}) on ${this.host.runner.target}, which has none (load target_core_mod and iscsi_target_mod with configfs mounted at /sys/kernel/config); or set target_helper: tgtadm (Linux SCSI target, Debian package tgt) and run tgtd`;
  }

  private async requireLio(): Promise<void> {
    if (!(await this.hasLio())) throw new StorageError('UNSUPPORTED', this.noLio());
  }

  private async hasLio(): Promise<boolean> {
    const [probe] = await this.configfs.send([{ op: 'lstat', path: this.root }], 'look for LIO').catch((error: unknown) => {
      throw this.failure(error, 'look for LIO');
    });
    const present = probe.ok && probe.output.startsWith('d ');
    this.probed = present ? undefined : this.noLio();
    return present;
  }

  /** A volume restored from a dump (which holds no secrets) keeps the credentials its live ACLs hold, so connected hosts can log in again. */
  private async liveCredentials(iqn: string, state: LioState): Promise<ChapCredentials | undefined> {
    const acl = state.tpg?.find((entry) => entry.kind === 'd' && /^acls\/[^/]+$/.test(entry.path));
    if (!acl) return undefined;
    const [username, password] = await this.configfs.send(
      [
        { op: 'read', path: `${this.tpgPath(iqn)}/${acl.path}/auth/userid` },
        { op: 'read', path: `${this.tpgPath(iqn)}/${acl.path}/auth/password` },
      ],
      `read the CHAP credentials of ${iqn}`,
    );
    const credentials = username.ok && password.ok ? parseProviderAuth(`CHAP ${username.output.trim()} ${password.output.trim()}`) : undefined;
    if (credentials) this.context.log.info(`target ${iqn} has no CHAP credentials recorded (restored from a dump?): its export keeps the ones its ACLs hold`);
    return credentials;
  }

  private recordedCredentials(volume: VolumeRef): ChapCredentials | undefined {
    if (volume.provider_auth === null || volume.provider_auth === undefined || volume.provider_auth === '') return undefined;
    const credentials = parseProviderAuth(volume.provider_auth);
    if (!credentials) {
      throw new StorageError(
        'INVALID_ARGUMENT',
        `backend "${this.settings.backendName}": volume ${volume.id}'s provider_auth is not "CHAP <user> <password>" with both parts printable ASCII without spaces; it is left as it is, not replaced with new credentials, and nothing was exported. Restore it (or load a dump that has it right) before connecting`,
      );
    }
    checkLioChap(credentials.username, `volume ${volume.id}'s provider_auth user name`);
    checkLioChap(credentials.password, `volume ${volume.id}'s provider_auth password`);
    return credentials;
  }

  /** The ACL's directory name: the initiator as rtslib-fb normalizes it (lower case). */
  private aclName(connector: Connector): string {
    return checkIscsiName(connector.initiator ?? '', 'connector.initiator').toLowerCase();
  }

  private portalNames(): string[] {
    return [this.settings.ipAddress, ...(this.settings.secondaryIpAddresses ?? [])].map((address) => portalDirName(address, this.settings.port));
  }

  /** rtslib-fb names a target directory after the lower-cased IQN. */
  private targetPath(iqn: string): string {
    return `${this.root}/iscsi/${iqn.toLowerCase()}`;
  }

  private tpgPath(iqn: string): string {
    return `${this.targetPath(iqn)}/${TPG}`;
  }

  private turn<T>(task: () => Promise<T>): Promise<T> {
    return lioTurns.run(this.host.runner.target, task);
  }

  /** A relay error as the user's answer: no privilege is UNSUPPORTED naming root_helper; the rest names the errno. */
  private failure(error: unknown, operation: string): unknown {
    if (!(error instanceof ConfigfsOpError)) return error;
    const backend = `backend "${this.settings.backendName}"`;
    if (error.errno === 'EACCES' || error.errno === 'EPERM') {
      return new StorageError(
        'UNSUPPORTED',
        `${backend}: ${operation}: configfs on ${this.host.runner.target} is writable by root only (${error.detail}); run the server as root there, or set the global root_helper (e.g. "sudo -n") and let it run perl without a password`,
      );
    }
    const hint = error.errno === 'EADDRINUSE' ? ` (another service, tgtd perhaps, listens on port ${this.settings.port})` : '';
    return new StorageError('BACKEND_UNAVAILABLE', `${backend}: ${operation} failed on ${this.host.runner.target}: ${error.errno}${hint}: ${error.detail}`);
  }
}

/** The LUN symlink's name: rtslib-fb uses the last 10 characters of a uuid; the volume's own keeps it stable. */
function linkAlias(volume: VolumeRef): string {
  return checkLioVolumeId(volume.id).slice(-10);
}
