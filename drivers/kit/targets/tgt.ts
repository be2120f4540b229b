import { StorageError } from '../../../src/base/errors.js';
import { KeyedMutex } from '../../../src/base/locks.js';
import { CommandTransportError, type CommandResult } from '../exec/runner.js';
import type { ConnectionInfo, Connector, DriverContext, ExportOperations, ExportUpdate, VolumeRef } from '../types.js';
import { iscsiConnection } from '../iscsi/connection.js';
import { formatProviderAuth, generateChapCredentials, parseProviderAuth, type ChapCredentials } from '../iscsi/chap.js';
import {
  checkBackingFlags,
  checkBackingOptions,
  checkBackingPath,
  checkBackingType,
  checkChapSymbols,
  checkInitiatorAddress,
  checkNamedBacking,
  checkTargetName,
  checkVolumeId,
  checkWriteCache,
} from './tgt-fields.js';
import { TgtError, tgtErrorText, tgtdRequests, type TgtReply, type TgtRequest } from './tgtd-protocol.js';
import { TgtConfigFiles, type TargetSpec } from './tgt-config.js';
import { TgtdChannel, type TargetHost } from './tgtd-relay.js';
import { parseAccounts, parsePortals, parseTargets, type ShownTarget } from './tgtd-show.js';

export type { TargetHost } from './tgtd-relay.js';

/**
 * Cinder's TgtAdm target (cinder/volume/targets/tgt.py with iscsi.py): one target per volume named
 * <target_prefix>volume-<id>, the volume as LUN 1, CHAP credentials per volume kept as the
 * volume's provider_auth, and a tgt configuration file per target (for tgtd restarts). What
 * Cinder applies with `tgt-admin --update` goes to tgtd through its management socket instead
 * (tgtd-relay), so the CHAP password is on no command line. The host's administrator runs tgtd;
 * this only configures it, on the host the driver's commands run on (this one, or the LVM host
 * over SSH).
 */
export interface TgtSettings {
  backendName: string;
  ipAddress: string;
  /** Cinder's iscsi_secondary_ip_addresses: more portals of the same target, given to multipath hosts. */
  secondaryIpAddresses?: readonly string[];
  port: number;
  prefix: string;
  configDir: string;
  writeCache: 'on' | 'off';
  backingFlags: string;
}

/**
 * What tgt serves as a volume's LUN: a file or block device (an absolute path), or a store that one
 * of tgt's backing-store modules opens by name (`type: 'rbd'`, `name: 'pool/image'`, `options:
 * 'conf=...;id=...'`, tgt's --bstype and --bsopts).
 */
export type BackingStore = string | { type: string; name: string; options?: string };

/** A new target takes the next free tid: two exports at once on one host would pick the same. */
const tgtdTurns = new KeyedMutex();

const TGT_LUN = 1;
/** tgt-admin's write-cache off: the caching mode page with WCE cleared. */
const WRITE_THROUGH_MODE_PAGE = '8:0:18:0x10:0:0xff:0xff:0:0:0xff:0xff:0xff:0xff:0x80:0x14:0:0:0:0:0:0';
/** How often, and how long apart, a target still closing its sessions is asked again to go. */
const DELETE_ATTEMPTS = 5;
const DELETE_PAUSE_MS = 200;

export class TgtTarget implements ExportOperations {
  readonly requiredConnectorKeys = ['initiator'] as const;
  private readonly tgtd: TgtdChannel;
  private readonly configFiles: TgtConfigFiles;

  constructor(
    private readonly settings: TgtSettings,
    private readonly host: TargetHost,
    private readonly backingOf: (volume: VolumeRef) => BackingStore,
    private readonly context: Pick<DriverContext, 'secrets' | 'log'>,
  ) {
    this.tgtd = new TgtdChannel(host, { backendName: settings.backendName, portal: formatPortal(settings.ipAddress, settings.port) }, context.secrets);
    this.configFiles = new TgtConfigFiles(
      settings.configDir,
      (argv, operation, input) => this.run(argv, operation, input),
      (result, operation) => this.check(result, operation),
    );
  }

  iqn(volume: VolumeRef): string {
    return checkTargetName(`${this.settings.prefix}volume-${checkVolumeId(volume.id)}`, `target name of volume ${volume.id}`);
  }

  async createExport(volume: VolumeRef): Promise<ExportUpdate | void> {
    const recorded = this.recordedCredentials(volume);
    // A volume restored from a dump (which never holds secrets) keeps the credentials its live target
    // already has, so hosts connected before the restore can still log in.
    const known = recorded ?? (await this.liveCredentials(volume));
    const credentials = known ?? generateChapCredentials();
    const spec = this.targetSpec(volume, credentials);
    this.context.secrets.register(credentials.password);
    await this.requirePortal();
    await this.host.prepareBacking?.(volume);
    // A module's store (an rbd image) is checked by tgt itself when it opens it: the LUN is there or tgtd says why.
    if (!spec.backingType && (await this.run(['test', '-e', spec.backing], `look for ${spec.backing}`)).exitCode !== 0) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `backend "${this.settings.backendName}": volume ${volume.id}'s backing store ${spec.backing} does not exist on ${this.host.runner.target}, so it cannot be exported`,
      );
    }
    const file = this.configFiles.pathOf(volume.id);
    await this.configFiles.write(file, this.configFiles.textOf(spec));
    try {
      await tgtdTurns.run(this.host.runner.target, () => this.applyTarget(spec, { closeSessions: false }));
      if (!(await this.hasLun(spec.iqn))) {
        throw new StorageError(
          'BACKEND_UNAVAILABLE',
          `backend "${this.settings.backendName}": tgtd shows no LUN ${TGT_LUN} in target ${spec.iqn}; tgtd's log says why (${backingHint(spec)})`,
        );
      }
    } catch (error) {
      // A failed export leaves nothing behind: no target, no account, no file holding the credentials.
      await tgtdTurns.run(this.host.runner.target, () => this.removeTarget(spec.iqn, credentials.username)).catch(() => undefined);
      await this.configFiles.remove(file).catch(() => undefined);
      throw error;
    }
    return recorded ? undefined : { provider_auth: formatProviderAuth(credentials) };
  }

  /** The CHAP credentials in the volume's own target config file, when an earlier export left one; only a well-formed line counts. */
  private async liveCredentials(volume: VolumeRef): Promise<ChapCredentials | undefined> {
    const file = this.configFiles.pathOf(volume.id);
    const credentials = await this.configFiles.credentialsIn(file);
    if (credentials) this.context.log.info(`volume ${volume.id} has no CHAP credentials recorded (restored from a dump?): its export keeps the ones in ${file}`);
    return credentials;
  }

  async initializeConnection(volume: VolumeRef, connector: Connector): Promise<ConnectionInfo> {
    const credentials = this.recordedCredentials(volume);
    if (!credentials) throw new StorageError('INTERNAL', `volume ${volume.id} has no CHAP credentials recorded for its export`);
    const target = { iqn: this.iqn(volume), portal: formatPortal(this.settings.ipAddress, this.settings.port), lun: TGT_LUN };
    const secondary = (this.settings.secondaryIpAddresses ?? []).map((address) => ({ ...target, portal: formatPortal(address, this.settings.port) }));
    return iscsiConnection({
      target,
      discovered: false,
      ...(connector.multipath ? { paths: [target, ...secondary] } : {}),
      volumeId: volume.id,
      chap: credentials,
      encrypted: false,
    });
  }

  /** tgt targets admit every initiator that knows the volume's CHAP credentials: nothing per host to take away (as Cinder). */
  async terminateConnection(): Promise<void> {}

  /** Cinder's remove_iscsi_target (`tgt-admin --force --delete`), then the volume's account and its config file. */
  async removeExport(volume: VolumeRef): Promise<void> {
    const iqn = this.iqn(volume);
    // Removal goes on with a damaged provider_auth: only the account it names is then left to tgtd.
    const username = safeUsername(volume.provider_auth);
    // tgtd answers each delete itself (deleteTarget retries while the target is active), so its answer
    // is the check Cinder made by listing again after tgt-admin, which could fail silently.
    await tgtdTurns.run(this.host.runner.target, () => this.removeTarget(iqn, username));
    await this.configFiles.remove(this.configFiles.pathOf(volume.id));
  }

  /** Cinder's extend_target (`tgt-admin --force --update`): the LUN takes the new size only when tgt re-opens it, which interrupts sessions briefly. */
  async extendExport(volume: VolumeRef): Promise<void> {
    const iqn = this.iqn(volume);
    if (!(await this.targetExists(iqn))) return;
    const credentials = this.recordedCredentials(volume);
    if (!credentials) throw new StorageError('INTERNAL', `volume ${volume.id} is exported as ${iqn} but has no CHAP credentials recorded`);
    const spec = this.targetSpec(volume, credentials);
    await tgtdTurns.run(this.host.runner.target, () => this.applyTarget(spec, { closeSessions: true }));
    if (!(await this.hasLun(iqn))) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `backend "${this.settings.backendName}": tgtd shows no LUN ${TGT_LUN} in target ${iqn} after re-reading volume ${volume.id}; tgtd's log says why`,
      );
    }
  }

  /**
   * The volume's recorded credentials; none when it has never been exported. A recorded value that
   * is not Cinder's form is refused, never replaced: new credentials would hide what happened to it.
   */
  private recordedCredentials(volume: VolumeRef): ChapCredentials | undefined {
    if (volume.provider_auth === null || volume.provider_auth === undefined || volume.provider_auth === '') return undefined;
    const credentials = parseProviderAuth(volume.provider_auth);
    if (!credentials) {
      throw new StorageError(
        'INVALID_ARGUMENT',
        `backend "${this.settings.backendName}": volume ${volume.id}'s provider_auth is not "CHAP <user> <password>" with both parts printable ASCII without spaces; it is left as it is, not replaced with new credentials, and nothing was exported. Restore it (or load a dump that has it right) before connecting`,
      );
    }
    return credentials;
  }

  private targetSpec(volume: VolumeRef, credentials: ChapCredentials): TargetSpec {
    const store = this.backingOf(volume);
    const backing =
      typeof store === 'string'
        ? { backing: checkBackingPath(store, `volume ${volume.id}'s backing store path`) }
        : {
            backing: checkNamedBacking(store.name, `volume ${volume.id}'s backing store`),
            backingType: checkBackingType(store.type),
            ...(store.options ? { backingOptions: checkBackingOptions(store.options, `volume ${volume.id}'s backing store options`) } : {}),
          };
    return {
      volumeId: volume.id,
      iqn: this.iqn(volume),
      ...backing,
      credentials: {
        username: checkChapSymbols(credentials.username, `volume ${volume.id}'s provider_auth user name`),
        password: checkChapSymbols(credentials.password, `volume ${volume.id}'s provider_auth password`),
      },
      backingFlags: checkBackingFlags(this.settings.backingFlags),
      writeCache: checkWriteCache(this.settings.writeCache),
    };
  }

  /**
   * tgt-admin --update IQN as tgtd requests: a target that exists is re-created with its tid (left
   * alone while initiators use it, unless `closeSessions`), a new one takes the next tid. The
   * initiator ACL (ALL) comes last, once the account is bound: no login without CHAP in between.
   */
  private async applyTarget(spec: TargetSpec, options: { closeSessions: boolean }): Promise<void> {
    const { username, password } = spec.credentials;
    for (let attempt = 1; ; attempt++) {
      const [targetsReply, accountsReply] = await this.sendAll([tgtdRequests.showTargets(), tgtdRequests.showAccounts()]);
      const targets = parseTargets(targetsReply.output);
      const existing = targets.find((target) => target.name === spec.iqn);
      if (existing && existing.connections.length > 0 && !options.closeSessions) return;
      if (existing) await this.deleteTarget(existing);
      const tid = existing?.tid ?? Math.max(0, ...targets.map((target) => target.tid)) + 1;
      const others = targets.filter((target) => target.name !== spec.iqn);
      const account: TgtRequest[] = [];
      if (!others.some((target) => target.accounts.includes(username))) {
        // Ours alone: made anew, so tgtd holds the password recorded for the volume.
        if (parseAccounts(accountsReply.output).includes(username)) account.push(tgtdRequests.deleteAccount(username));
        account.push(tgtdRequests.newAccount(username, password));
      }
      const unit = tgtdRequests.newUnit(tid, TGT_LUN, spec.backing, spec.backingFlags, { type: spec.backingType, options: spec.backingOptions });
      const requests = [
        tgtdRequests.newTarget(tid, spec.iqn),
        unit,
        ...(spec.writeCache === 'off' ? [tgtdRequests.updateUnit(tid, TGT_LUN, { mode_page: WRITE_THROUGH_MODE_PAGE })] : []),
        tgtdRequests.updateUnit(tid, TGT_LUN, { scsi_id: `volume-${spec.volumeId}`, scsi_sn: `volume-${spec.volumeId}` }),
        ...account,
        tgtdRequests.bindAccount(tid, username),
        tgtdRequests.bindAddress(tid, 'ALL'),
      ];
      const replies = await this.tgtd.send(requests);
      const failed = replies.length - 1;
      const last = replies[failed];
      if (last.code === 0) return;
      // Another tool took that tid between our look and our create: look again.
      if (failed === 0 && last.code === TgtError.TargetExists && !existing && attempt < 5) continue;
      if (requests[failed] === unit) {
        throw new StorageError(
          'BACKEND_UNAVAILABLE',
          `backend "${this.settings.backendName}": tgtd shows no LUN ${TGT_LUN} in target ${spec.iqn}: ${requests[failed].operation} failed (${tgtErrorText(last.code)}); tgtd's log says why (${backingHint(spec)})`,
        );
      }
      this.refused(requests[failed], last);
    }
  }

  /**
   * tgt-admin --force --delete: no new logins (ACLs off), open connections closed, then the
   * target deleted, asked again while tgtd still winds its sessions down. Without tgtd's own
   * force flag, with which tgtd exits if a session outlives its close.
   */
  private async deleteTarget(target: ShownTarget): Promise<void> {
    const acls = target.acls.filter((acl) => isInitiatorAddress(acl));
    await this.sendTolerating(
      [...acls.map((acl) => tgtdRequests.bindAddress(target.tid, acl, false)), ...target.connections.map(({ sid, cid }) => tgtdRequests.closeConnection(target.tid, sid, cid))],
      [TgtError.AclMissing, TgtError.NoConnection, TgtError.NoTarget],
    );
    for (let attempt = 1; ; attempt++) {
      const reply = await this.tgtd.ask(tgtdRequests.deleteTarget(target.tid, target.name));
      if (reply.code === 0 || reply.code === TgtError.NoTarget) return;
      if (reply.code === TgtError.TargetActive && attempt >= DELETE_ATTEMPTS) {
        throw new StorageError(
          'BACKEND_BUSY',
          `backend "${this.settings.backendName}": tgtd keeps target ${target.name} active after ${DELETE_ATTEMPTS} deletes; an initiator may hold it. Log it out, then disconnect again`,
        );
      }
      if (reply.code !== TgtError.TargetActive) this.refused(tgtdRequests.deleteTarget(target.tid, target.name), reply);
      await new Promise((resolve) => setTimeout(resolve, DELETE_PAUSE_MS));
      const again = parseTargets((await this.sendAll([tgtdRequests.showTargets()]))[0].output).find((shown) => shown.tid === target.tid && shown.name === target.name);
      if (!again) return;
      await this.sendTolerating(
        again.connections.map(({ sid, cid }) => tgtdRequests.closeConnection(again.tid, sid, cid)),
        [TgtError.NoConnection, TgtError.NoTarget],
      );
    }
  }

  /** The target if tgtd has it, then the accounts it used (and the volume's own) that no other target uses. */
  private async removeTarget(iqn: string, username: string | undefined): Promise<void> {
    const [targetsReply, accountsReply] = await this.sendAll([tgtdRequests.showTargets(), tgtdRequests.showAccounts()]);
    const targets = parseTargets(targetsReply.output);
    const target = targets.find((shown) => shown.name === iqn);
    if (target) await this.deleteTarget(target);
    const others = targets.filter((shown) => shown.name !== iqn);
    const accounts = parseAccounts(accountsReply.output);
    const candidates = new Set([...(target?.accounts ?? []), ...(username ? [username] : [])]);
    const unused = [...candidates].filter((name) => accounts.includes(name) && !others.some((shown) => shown.accounts.includes(name)) && isChapSymbols(name));
    await this.sendTolerating(
      unused.map((name) => tgtdRequests.deleteAccount(name)),
      [TgtError.NoUser],
    );
  }

  /** Sends each request, an error among `tolerated` being an answer (the rest are still sent). */
  private async sendTolerating(requests: TgtRequest[], tolerated: readonly number[]): Promise<void> {
    let rest = requests;
    while (rest.length > 0) {
      const replies = await this.tgtd.send(rest);
      const last = replies.at(-1)!;
      if (last.code !== 0 && !tolerated.includes(last.code)) this.refused(rest[replies.length - 1], last);
      rest = rest.slice(replies.length);
    }
  }

  /** Requests that must all succeed. */
  private async sendAll(requests: TgtRequest[]): Promise<TgtReply[]> {
    const replies = await this.tgtd.send(requests);
    const last = replies.at(-1)!;
    if (last.code !== 0) this.refused(requests[replies.length - 1], last);
    return replies;
  }

  private refused(request: TgtRequest, reply: TgtReply): never {
    throw new StorageError(
      'BACKEND_UNAVAILABLE',
      `backend "${this.settings.backendName}": ${request.operation}: tgtd on ${this.host.runner.target} answered "${tgtErrorText(reply.code)}" (tgtadm error ${reply.code}); tgtd's log says more`,
    );
  }

  /** tgtd must listen where connecting hosts are told to go: refuse before exporting, naming both. */
  private async requirePortal(): Promise<void> {
    const portals = parsePortals((await this.sendAll([tgtdRequests.showPortals()]))[0].output);
    const wanted = formatPortal(this.settings.ipAddress, this.settings.port);
    const anyAddress = [formatPortal('0.0.0.0', this.settings.port), formatPortal('::', this.settings.port)];
    if (portals.includes(wanted) || portals.some((portal) => anyAddress.includes(portal))) return;
    throw new StorageError(
      'BACKEND_UNAVAILABLE',
      `backend "${this.settings.backendName}": tgtd on ${this.host.runner.target} listens on ${portals.join(', ') || 'no portal'}, not on ${wanted} (target_ip_address:target_port); start tgtd with --iscsi portal=${wanted}, or set target_ip_address and target_port to where it listens`,
    );
  }

  private async shownTarget(iqn: string): Promise<ShownTarget | undefined> {
    return parseTargets((await this.sendAll([tgtdRequests.showTargets()]))[0].output).find((target) => target.name === iqn);
  }

  private async targetExists(iqn: string): Promise<boolean> {
    return (await this.shownTarget(iqn)) !== undefined;
  }

  private async hasLun(iqn: string): Promise<boolean> {
    return (await this.shownTarget(iqn))?.luns.includes(TGT_LUN) ?? false;
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
    throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.settings.backendName}": ${operation} failed on ${this.host.runner.target} (exit ${result.exitCode}): ${output}`);
  }
}

/** What to check when tgtd could not open a LUN's backing store. */
function backingHint(spec: TargetSpec): string {
  if (!spec.backingType) return `is ${spec.backing} readable by tgtd?`;
  return `can tgtd open ${spec.backingType} store ${spec.backing}? Its ${spec.backingType} backing-store module must be installed (Debian: tgt-${spec.backingType}) before tgtd starts, and reach the store with the options given`;
}

export function formatPortal(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function isChapSymbols(value: string): boolean {
  try {
    checkChapSymbols(value, 'CHAP user name');
    return true;
  } catch {
    return false;
  }
}

function isInitiatorAddress(value: string): boolean {
  try {
    checkInitiatorAddress(value);
    return true;
  } catch {
    return false;
  }
}

/** The user name of a provider_auth, when it has one fit to send to tgtd. */
function safeUsername(providerAuth: string | null | undefined): string | undefined {
  const username = parseProviderAuth(providerAuth)?.username;
  return username && isChapSymbols(username) ? username : undefined;
}
