import { z } from 'zod';
import { type ErrorCode, StorageError } from '../kit/base.js';
import { CommandTransportError, type CommandResult, type CommandRunner } from '../kit/exec/runner.js';
import type { DriverContext } from '../kit/types.js';

/**
 * The `rbd` and `ceph` command-line tools as the driver runs them: every call with Cinder's
 * `_ceph_args` (--id, --cluster, --conf) plus --keyring when rbd_keyring_conf names one, and
 * `--format json` answers read through zod schemas. The cephx key is never an argument: the tools
 * read it from the keyring file. Errors are the tools' errno exit codes, turned into the
 * contract's codes with the tool's own words.
 */
export interface CephSettings {
  pool: string;
  cluster: string;
  user?: string;
  conf?: string;
  keyring?: string;
  /** rados_connect_timeout: seconds, or below 0 for librados' defaults. */
  connectTimeout: number;
}

/** errno values the tools exit with. */
export const Errno = { NOENT: 2, PERM: 1, ACCES: 13, BUSY: 16, EXIST: 17, INVAL: 22, NOSPC: 28, NOTEMPTY: 39, TIMEDOUT: 110, DQUOT: 122 } as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function checkId(id: string, what: string): string {
  if (!UUID.test(id)) throw new StorageError('INVALID_ARGUMENT', `${what} id ${JSON.stringify(id)} is not a uuid, so it cannot name an RBD image`);
  return id;
}

/** Cinder's volume_name_template. */
export function volumeImage(volumeId: string): string {
  return `volume-${checkId(volumeId, 'volume')}`;
}

/** Cinder's snapshot_name_template. */
export function snapshotName(snapshotId: string): string {
  return `snapshot-${checkId(snapshotId, 'snapshot')}`;
}

/** The snapshot Cinder's create_cloned_volume takes of the source, named after the new volume. */
export function cloneSnapshotName(newVolumeId: string): string {
  return `${volumeImage(newVolumeId)}.clone_snap`;
}

/** What Cinder renames a volume with clone dependants to, so that it lives on silently until they go. */
export const DELETED_SUFFIX = '.deleted';

/** The volume id of an image named `volume-<uuid>` (or its `.deleted` form), else undefined. */
export function volumeIdOf(image: string): string | undefined {
  const match = /^volume-([0-9a-f-]{36})(\.deleted)?$/i.exec(image);
  return match && UUID.test(match[1]) ? match[1] : undefined;
}

const parentSchema = z.object({ pool: z.string(), image: z.string(), snapshot: z.string() }).loose();
export const imageInfoSchema = z
  .object({ name: z.string(), size: z.number(), object_size: z.number().optional(), parent: parentSchema.optional(), snapshot_count: z.number().optional() })
  .loose();
export type ImageInfo = z.output<typeof imageInfoSchema>;
export const snapListSchema = z.array(z.object({ name: z.string(), protected: z.union([z.string(), z.boolean()]).optional() }).loose());
/** Pacific answers objects; older tools answered "pool/image" strings. */
export const childrenSchema = z.array(
  z.union([z.object({ pool: z.string(), image: z.string() }).loose(), z.string().transform((text) => ({ pool: text.split('/')[0], image: text.split('/').pop() ?? text }))]),
);
export const longListSchema = z.array(
  z.object({ image: z.string(), size: z.number(), snapshot: z.string().optional(), protected: z.union([z.string(), z.boolean()]).optional() }).loose(),
);
export const statusSchema = z.object({ watchers: z.array(z.object({ address: z.string() }).loose()).default([]) }).loose();
export const dfSchema = z
  .object({
    pools: z.array(
      z
        .object({
          name: z.string(),
          stats: z.object({ stored: z.number().optional(), bytes_used: z.number().optional(), max_avail: z.number(), quota_bytes: z.number().optional() }).loose(),
        })
        .loose(),
    ),
  })
  .loose();
export const monDumpSchema = z
  .object({
    fsid: z.string(),
    mons: z.array(z.object({ name: z.string().optional(), addr: z.string().optional(), public_addr: z.string().optional() }).loose()),
  })
  .loose();

export class CephCli {
  constructor(
    readonly runner: CommandRunner,
    readonly settings: CephSettings,
    private readonly context: Pick<DriverContext, 'backendName' | 'secrets' | 'log'>,
  ) {}

  /** `pool/image` or `pool/image@snap`, as the tools take image specs. */
  spec(image: string, snapshot?: string): string {
    return `${this.settings.pool}/${image}${snapshot === undefined ? '' : `@${snapshot}`}`;
  }

  /** Cinder's _ceph_args, and the keyring by path. */
  commonArgs(): string[] {
    const { user, cluster, conf, keyring } = this.settings;
    return [...(user ? ['--id', user] : []), '--cluster', cluster, ...(conf ? ['--conf', conf] : []), ...(keyring ? ['--keyring', keyring] : [])];
  }

  /** rados_connect_timeout as librados options (Cinder sets the same three). */
  private timeoutArgs(): string[] {
    const seconds = this.settings.connectTimeout;
    if (seconds < 0) return [];
    return ['--rados-osd-op-timeout', String(seconds), '--rados-mon-op-timeout', String(seconds), '--client-mount-timeout', String(seconds)];
  }

  /** Runs `rbd <args>`; a non-zero exit is returned, not thrown. */
  rbd(args: string[], operation: string, options: { timeoutMs?: number } = {}): Promise<CommandResult> {
    return this.run(['rbd', ...this.commonArgs(), ...this.timeoutArgs(), ...args], operation, options.timeoutMs);
  }

  /** Runs `ceph <args>` (a mon command through the ceph CLI). */
  ceph(args: string[], operation: string): Promise<CommandResult> {
    const timeout = this.settings.connectTimeout >= 0 ? ['--connect-timeout', String(this.settings.connectTimeout)] : [];
    return this.run(['ceph', ...this.commonArgs(), ...timeout, ...args], operation);
  }

  /** Runs and requires success, answering the parsed JSON. */
  async json<T extends z.ZodType>(tool: 'rbd' | 'ceph', args: string[], schema: T, operation: string): Promise<z.output<T>> {
    const result = tool === 'rbd' ? await this.rbd([...args, '--format', 'json'], operation) : await this.ceph([...args, '--format', 'json'], operation);
    if (result.exitCode !== 0) throw this.failure(operation, result);
    return this.parse(schema, result.stdout, operation);
  }

  parse<T extends z.ZodType>(schema: T, stdout: string, operation: string): z.output<T> {
    let value: unknown;
    try {
      // `ceph mon dump` once printed "dumped monmap epoch N" before its JSON.
      value = JSON.parse(stdout.replace(/^dumped [^\n]*\n/, ''));
    } catch {
      throw this.error('BACKEND_UNAVAILABLE', `${operation}: the answer was not JSON: ${this.context.secrets.redact(stdout.slice(0, 200))}`);
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) throw this.error('BACKEND_UNAVAILABLE', `${operation}: unexpected answer (${parsed.error.issues[0]?.message ?? 'bad shape'})`);
    return parsed.data;
  }

  /** Requires success. */
  check(result: CommandResult, operation: string): CommandResult {
    if (result.exitCode !== 0) throw this.failure(operation, result);
    return result;
  }

  /** The tool's failure as a contract error: its errno picks the code, its words say why. */
  failure(operation: string, result: CommandResult, codes: Partial<Record<number, ErrorCode>> = {}): StorageError {
    const reason = toolErrorText(result.stderr);
    const code: ErrorCode = codes[result.exitCode] ?? DEFAULT_CODES[result.exitCode] ?? 'BACKEND_UNAVAILABLE';
    const hint =
      result.exitCode === Errno.PERM || result.exitCode === Errno.ACCES || /authenticat|keyring/i.test(reason)
        ? `; check rbd_user ("${this.settings.user ?? 'admin'}"), its caps on pool ${this.settings.pool}, and its keyring (rbd_keyring_conf or the one rbd_ceph_conf names)`
        : result.exitCode === Errno.TIMEDOUT
          ? '; is the cluster reachable from this host (mon host in rbd_ceph_conf)?'
          : '';
    return this.error(code, `${operation} failed on ${this.runner.target} (exit ${result.exitCode}): ${reason}${hint}`);
  }

  error(code: ErrorCode, message: string): StorageError {
    return new StorageError(code, this.context.secrets.redact(`backend "${this.context.backendName}": ${message}`));
  }

  private async run(argv: string[], operation: string, timeoutMs?: number): Promise<CommandResult> {
    try {
      return await this.runner.run(argv, { operation, timeoutMs });
    } catch (error) {
      if (error instanceof StorageError) throw error;
      const code: ErrorCode = error instanceof CommandTransportError && error.kind === 'timeout' ? 'BACKEND_BUSY' : 'BACKEND_UNAVAILABLE';
      const message = error instanceof Error ? error.message : String(error);
      const missing = /ENOENT|cannot run (rbd|ceph)/.test(message) ? ' (is ceph-common installed there?)' : '';
      throw this.error(code, `${message.startsWith(operation) ? message : `${operation}: ${message}`}${missing}`);
    }
  }
}

const DEFAULT_CODES: Partial<Record<number, ErrorCode>> = {
  [Errno.NOENT]: 'NOT_FOUND',
  [Errno.EXIST]: 'ALREADY_EXISTS',
  [Errno.BUSY]: 'IN_USE',
  [Errno.NOTEMPTY]: 'IN_USE',
  [Errno.NOSPC]: 'OUT_OF_CAPACITY',
  [Errno.DQUOT]: 'OUT_OF_CAPACITY',
  [Errno.TIMEDOUT]: 'BACKEND_BUSY',
};

/**
 * What the tool said, without its progress meter and its timestamped librados log lines: the
 * `rbd: ...` / `Error ...` lines, else the last line.
 */
export function toolErrorText(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((line) => line.replace(/^.*\r/, '').trim())
    .filter((line) => line && !/^\d{4}-\d\d-\d\dT[\d:.]+[+-]\d{4} [0-9a-f]+ /.test(line) && !/% complete/.test(line));
  const told = lines.filter((line) => /^(rbd|Error|error)\b/.test(line));
  return (told.length > 0 ? told.join('; ') : (lines.at(-1) ?? 'no error text')).slice(0, 1000);
}
