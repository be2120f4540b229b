import { posix } from 'node:path';
import type { CommandResult } from '../exec/runner.js';
import { parseProviderAuth, type ChapCredentials } from '../iscsi/chap.js';
import { checkVolumeId } from './tgt-fields.js';

/** One volume's target, every field already checked (tgt-fields.ts). */
export interface TargetSpec {
  volumeId: string;
  iqn: string;
  /** An absolute path, or a name in a backing-store module (`backingType`: rbd's pool/image). */
  backing: string;
  backingType?: string;
  /** The module's --bsopts (rbd: conf=...;id=...). */
  backingOptions?: string;
  credentials: ChapCredentials;
  backingFlags: string;
  writeCache: 'on' | 'off';
}

type Run = (argv: string[], operation: string, input?: string) => Promise<CommandResult>;
type Check = (result: CommandResult, operation: string) => CommandResult;

/**
 * The per-target tgt configuration files (Cinder's VOLUME_CONF) in target_config_dir on the
 * target's host, so that tgtd finds its targets again after a restart: 0600 in a 0700 folder,
 * written through the command runner with the password on stdin, never in argv.
 */
export class TgtConfigFiles {
  constructor(
    private readonly configDir: string,
    private readonly run: Run,
    private readonly check: Check,
  ) {}

  pathOf(volumeId: string): string {
    return posix.join(this.configDir, `volume-${checkVolumeId(volumeId)}`);
  }

  /** From checked fields only: no value can open a line, block or comment of its own. */
  textOf(spec: TargetSpec): string {
    const lines = [
      `<target ${spec.iqn}>`,
      `    backing-store ${spec.backing}`,
      ...(spec.backingType ? [`    bs-type ${spec.backingType}`] : []),
      ...(spec.backingType && spec.backingOptions ? [`    bsopts "${spec.backingOptions}"`] : []),
      '    driver iscsi',
      `    incominguser ${spec.credentials.username} ${spec.credentials.password}`,
      ...(spec.backingFlags ? [`    bsoflags ${spec.backingFlags}`] : []),
      `    write-cache ${spec.writeCache}`,
      `    scsi_sn volume-${spec.volumeId}`,
      `    scsi_id volume-${spec.volumeId}`,
      '</target>',
      '',
    ];
    return lines.join('\n');
  }

  async write(file: string, text: string): Promise<void> {
    const script = 'umask 077 && mkdir -p "$1" && cat > "$2.tmp" && mv -f "$2.tmp" "$2"';
    this.check(await this.run(['sh', '-c', script, 'sh', this.configDir, file], `write ${file}`, text), `write ${file}`);
  }

  async remove(file: string): Promise<void> {
    this.check(await this.run(['rm', '-f', file, `${file}.tmp`], `remove ${file}`), `remove ${file}`);
  }

  /** The CHAP credentials an earlier export left in `file`, when it has a well-formed line. */
  async credentialsIn(file: string): Promise<ChapCredentials | undefined> {
    const read = await this.run(['cat', file], `read ${file}`);
    if (read.exitCode !== 0) return undefined;
    const line = /^ {4}incominguser (\S+) (\S+)$/m.exec(read.stdout);
    return line ? parseProviderAuth(`CHAP ${line[1]} ${line[2]}`) : undefined;
  }
}
