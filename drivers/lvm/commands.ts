import { BYTES_PER_GIB } from '../kit/units.js';

/**
 * The lvm commands and flags Cinder's LVM driver (os-brick's local_dev/lvm.py) runs, and parsers
 * for their output. Pure functions: the driver adds the runner, the tests feed real output.
 *
 * One deviation: sizes are read in bytes (`--units b`), where os-brick asks for `--unit=g`. LVM
 * rounds `g` figures to two decimals, to nearest: a group with 39.996 GiB free reads "40.00", so
 * a 40 GiB volume passed the capacity check and lvcreate then refused it. Bytes are exact
 * (whole extents), and GiB figures made from them are rounded down.
 */
export interface LvmCommandContext {
  volumeGroup: string;
  /** Directory of lvm_conf_file when that file exists: exported as LVM_SYSTEM_DIR. */
  lvmSystemDir?: string;
  suppressFdWarnings: boolean;
  /** Root helper argv (["sudo", "-n"]), empty when commands already run as root. */
  rootHelper: readonly string[];
}

/** Cinder's `env LC_ALL=C` prefix, with LVM_SYSTEM_DIR when an lvm.conf is configured. */
export function lvmPrefix(context: LvmCommandContext): string[] {
  const env = ['env'];
  if (context.lvmSystemDir) env.push(`LVM_SYSTEM_DIR=${context.lvmSystemDir}`);
  if (context.suppressFdWarnings) env.push('LVM_SUPPRESS_FD_WARNINGS=1');
  env.push('LC_ALL=C');
  return [...context.rootHelper, ...env];
}

export function vgsCommand(context: LvmCommandContext): string[] {
  return [...lvmPrefix(context), 'vgs', '--noheadings', '--units', 'b', '-o', 'name,size,free', '--separator', ':', '--nosuffix', context.volumeGroup];
}

/**
 * Every LV of the group, or one LV when `lvName` is given, with what Cinder's lv_has_snapshot and
 * lv_get_origin read (the origin and the attribute string), in one command.
 */
export function lvsCommand(context: LvmCommandContext, lvName?: string): string[] {
  return [
    ...lvmPrefix(context),
    'lvs',
    '--noheadings',
    '--units',
    'b',
    '-o',
    'vg_name,name,size,origin,lv_attr',
    '--separator',
    ':',
    '--nosuffix',
    lvName ? `${context.volumeGroup}/${lvName}` : context.volumeGroup,
  ];
}

export function thinPoolName(volumeGroup: string): string {
  return `${volumeGroup}-pool`;
}

export function thinPoolUsageCommand(context: LvmCommandContext): string[] {
  return [
    ...lvmPrefix(context),
    'lvs',
    '--noheadings',
    '--units',
    'b',
    '-o',
    'size,data_percent',
    '--separator',
    ':',
    '--nosuffix',
    `/dev/${context.volumeGroup}/${thinPoolName(context.volumeGroup)}`,
  ];
}

export function createThickCommand(context: LvmCommandContext, lvName: string, sizeGb: number, mirrors: number): string[] {
  const command = [...lvmPrefix(context), 'lvcreate', '-n', lvName, context.volumeGroup, '-L', `${sizeGb}g`];
  if (mirrors > 0) command.push('-m', String(mirrors), '--nosync', '--mirrorlog', 'mirrored');
  return command;
}

export function createThinCommand(context: LvmCommandContext, lvName: string, sizeGb: number): string[] {
  return [...lvmPrefix(context), 'lvcreate', '-T', '-V', `${sizeGb}g`, '-n', lvName, `${context.volumeGroup}/${thinPoolName(context.volumeGroup)}`];
}

/** Cinder sizes a new thin pool at 95% of the group's free space. */
export function createThinPoolCommand(context: LvmCommandContext, vgFreeGb: number): string[] {
  const sizeGb = Math.floor(vgFreeGb * 0.95 * 100) / 100;
  return [...lvmPrefix(context), 'lvcreate', '-T', '-L', `${sizeGb}g`, `${context.volumeGroup}/${thinPoolName(context.volumeGroup)}`];
}

export function extendCommand(context: LvmCommandContext, lvName: string, newSizeGb: number): string[] {
  return [...lvmPrefix(context), 'lvextend', '-L', `${newSizeGb}g`, `${context.volumeGroup}/${lvName}`];
}

export function removeCommand(context: LvmCommandContext, lvName: string): string[] {
  return [...lvmPrefix(context), 'lvremove', '--config', 'activation { retry_deactivation = 1} devices { ignore_suspended_devices = 1}', '-f', `${context.volumeGroup}/${lvName}`];
}

/** Cinder's volume_name_template. */
export function volumeLvName(volumeId: string): string {
  return `${VOLUME_LV_PREFIX}${volumeId}`;
}

const VOLUME_LV_PREFIX = 'volume-';

/** Cinder's snapshot_name_template, escaped as its driver does (_escape_snapshot). */
export function snapshotLvName(snapshotId: string): string {
  return escapeSnapshotName(`snapshot-${snapshotId}`);
}

/** LVM reserves LV names that start with "snapshot"; Cinder prefixes such names with "_". */
export function escapeSnapshotName(name: string): string {
  return name.startsWith('snapshot') ? `_${name}` : name;
}

/** The temporary snapshot Cinder's create_cloned_volume copies a thick clone from, named after the new volume. */
export function cloneSnapshotLvName(newVolumeId: string): string {
  return `clone-snap-${newVolumeId}`;
}

/**
 * os-brick's create_lv_snapshot: a thick snapshot gets copy-on-write space of the origin's full
 * size (so it can never overflow); a thin one (no size) shares the pool.
 */
export function createSnapshotCommand(context: LvmCommandContext, name: string, sourceLv: string, thickSizeGb?: number): string[] {
  const command = [...lvmPrefix(context), 'lvcreate', '--name', name, '--snapshot', `${context.volumeGroup}/${sourceLv}`];
  if (thickSizeGb !== undefined) command.push('-L', `${thickSizeGb}g`);
  return command;
}

/**
 * os-brick's activate_lv: thin snapshots carry LVM's activation-skip flag, so -K activates one
 * anyway; `permanent` clears the flag (-k n), for a volume made from a snapshot.
 */
export function activateCommand(context: LvmCommandContext, lvName: string, options: { permanent: boolean }): string[] {
  return [...lvmPrefix(context), 'lvchange', '-a', 'y', '--yes', ...(options.permanent ? ['-k', 'n'] : ['-K']), `${context.volumeGroup}/${lvName}`];
}

/** os-brick's rename_volume (Cinder's manage_existing renames the LV to its volume name). */
export function renameCommand(context: LvmCommandContext, lvName: string, newName: string): string[] {
  return [...lvmPrefix(context), 'lvrename', context.volumeGroup, lvName, newName];
}

/** Cinder's get_manageable_volumes: LVs that are volumes (not snapshots, not a thin pool or its hidden parts), with why one is not safe. */
export function manageableLvs(lvs: readonly LogicalVolumeInfo[], thinPool: string): Array<{ name: string; sizeGb: number; carriedId?: string; notSafe?: string }> {
  return lvs
    .filter((lv) => lv.name !== thinPool && !lv.attr.startsWith('t') && !lv.name.startsWith('[') && (lv.origin === '' || (isThinVolume(lv) && lv.name.startsWith(VOLUME_LV_PREFIX))))
    .map((lv) => ({
      name: lv.name,
      sizeGb: Math.ceil(lv.sizeGb - 1e-9),
      carriedId: lv.name.startsWith(VOLUME_LV_PREFIX) ? lv.name.slice(VOLUME_LV_PREFIX.length) : undefined,
      // lv_attr's sixth character is "o" while the device is open (Cinder's lv_is_open).
      ...(lv.attr[5] === 'o' ? { notSafe: 'volume in use' } : {}),
    }));
}

/** os-brick's deactivate_lv. */
export function deactivateCommand(context: LvmCommandContext, lvName: string): string[] {
  return [...lvmPrefix(context), 'lvchange', '-a', 'n', `${context.volumeGroup}/${lvName}`];
}

/** os-brick's revert: the snapshot merged back into its origin (the snapshot LV is gone after). */
export function mergeCommand(context: LvmCommandContext, snapshotLv: string): string[] {
  return [...lvmPrefix(context), 'lvconvert', '--merge', `${context.volumeGroup}/${snapshotLv}`];
}

/** The temporary volume Cinder's generic revert copies from, named after the reverted volume. */
export function revertTemporaryLvName(volumeId: string): string {
  return `revert-snap-${volumeId}`;
}

/** Cinder's local_path: the device-mapper node, with "-" doubled in both names as device-mapper does. */
export function devicePath(volumeGroup: string, lvName: string): string {
  return `/dev/mapper/${volumeGroup.replace(/-/g, '--')}-${lvName.replace(/-/g, '--')}`;
}

/** Cinder's volume_dd_blocksize default (1M). */
const COPY_BLOCK_BYTES = 1024 * 1024;
/** One dd per 256 MiB, so progress can be told between chunks (the runner returns output only at exit). */
export const COPY_CHUNK_BYTES = 256 * COPY_BLOCK_BYTES;

export interface CopyStep {
  command: string[];
  /** Bytes copied once this step has run. */
  bytesDone: number;
}

/**
 * Cinder's volume_utils.copy_volume, in chunks: dd with direct I/O both ways (not thrashing the
 * page cache), conv=sparse when the target is thin (zero blocks stay unallocated in the pool), and
 * notrunc because each chunk writes at its own offset (seek).
 */
export function copyCommands(context: LvmCommandContext, copy: { sourceLv: string; targetLv: string; sizeGb: number; sparse: boolean }): CopyStep[] {
  const totalBytes = Math.ceil(copy.sizeGb * BYTES_PER_GIB);
  const blocksPerChunk = COPY_CHUNK_BYTES / COPY_BLOCK_BYTES;
  const steps: CopyStep[] = [];
  for (let offset = 0; offset < totalBytes; offset += COPY_CHUNK_BYTES) {
    const firstBlock = offset / COPY_BLOCK_BYTES;
    const blocks = Math.min(blocksPerChunk, Math.ceil((totalBytes - offset) / COPY_BLOCK_BYTES));
    steps.push({
      command: [
        ...context.rootHelper,
        'env',
        'LC_ALL=C',
        'dd',
        `if=${devicePath(context.volumeGroup, copy.sourceLv)}`,
        `of=${devicePath(context.volumeGroup, copy.targetLv)}`,
        'bs=1M',
        `count=${blocks}`,
        `skip=${firstBlock}`,
        `seek=${firstBlock}`,
        'iflag=direct',
        'oflag=direct',
        copy.sparse ? 'conv=notrunc,sparse' : 'conv=notrunc',
      ],
      bytesDone: Math.min(totalBytes, offset + blocks * COPY_BLOCK_BYTES),
    });
  }
  return steps;
}

/** Lists device-mapper targets the kernel offers ("thin-pool" among them where thin works). */
export function dmTargetsCommand(context: LvmCommandContext): string[] {
  return [...context.rootHelper, 'dmsetup', 'targets'];
}

/** GiB figures read from LVM (free space, sizes), rounded down to two decimals. */
export interface VolumeGroupInfo {
  name: string;
  sizeGb: number;
  /**
   * Never above the bytes free: a whole-GiB lvcreate that passes `size <= freeGb` fits, since
   * free space is a whole number of extents and N GiB <= free bytes means the extents N GiB
   * rounds up to are free as well.
   */
  freeGb: number;
}

export interface LogicalVolumeInfo {
  vg: string;
  name: string;
  sizeGb: number;
  /** The LV this one is a snapshot of ('' for none). */
  origin: string;
  /** lvs' attribute string: the first letter is the type ('o' origin, 's' snapshot, 'V' thin volume, 't' thin pool). */
  attr: string;
}

/** Parses `vgs ... --units b --separator : --nosuffix` lines; LVM's warnings go to stderr, not here. */
export function parseVgs(stdout: string): VolumeGroupInfo[] {
  return dataLines(stdout).map((line) => {
    const [name, size, free] = line.split(':');
    return { name: name, sizeGb: gibFromBytes(size), freeGb: gibFromBytes(free) };
  });
}

export function parseLvs(stdout: string): LogicalVolumeInfo[] {
  return dataLines(stdout).map((line) => {
    const [vg, name, size, origin, attr] = line.split(':');
    return { vg: vg, name: name, sizeGb: gibFromBytes(size), origin: origin ?? '', attr: attr ?? '' };
  });
}

/**
 * The LVs that keep `lvName` from being deleted: its snapshots (Cinder's lv_has_snapshot; lvremove
 * -f of an origin would silently take its thick snapshots along). A thin volume made from it
 * (a thin clone, named volume-<id>) is independent in the pool and does not count.
 */
export function snapshotsOf(lvs: readonly LogicalVolumeInfo[], lvName: string): string[] {
  return lvs.filter((lv) => lv.origin === lvName && !(isThinVolume(lv) && lv.name.startsWith(VOLUME_LV_PREFIX))).map((lv) => lv.name);
}

function isThinVolume(lv: LogicalVolumeInfo): boolean {
  return lv.attr.startsWith('V');
}

export function parseThinPoolUsage(stdout: string): { sizeGb: number; dataPercent: number } {
  const [size, percent] = (dataLines(stdout)[0] ?? '').split(':');
  return { sizeGb: gibFromBytes(size), dataPercent: percent && percent.trim() ? number(percent) : 0 };
}

/** stderr without LVM's warnings and fd-leak notices, which are not failures. */
export function lvmErrorText(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !/^WARNING:/i.test(line) && !/^File descriptor \d+ .* leaked/.test(line));
  return lines.join('; ') || 'no error text';
}

function dataLines(stdout: string): string[] {
  return stdout
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0);
}

/** Bytes as GiB, rounded down to two decimals (39.996 GiB is 39.99, never 40). */
function gibFromBytes(text: string | undefined): number {
  const digits = (text ?? '').trim();
  if (!/^\d+$/.test(digits)) throw new Error(`unexpected lvm output: "${text}" is not a number of bytes`);
  return Math.floor((Number(digits) * 100) / BYTES_PER_GIB) / 100;
}

function number(text: string | undefined): number {
  const value = Number.parseFloat((text ?? '').trim().replace(',', '.'));
  if (!Number.isFinite(value)) throw new Error(`unexpected lvm output: "${text}" is not a number`);
  return value;
}

/**
 * Where an LV's blocks lie: each segment of it (and of its hidden sub-LVs, a mirror's images) on a
 * physical volume, with the group's extent size, for volume_clear.
 */
export function segmentsCommand(context: LvmCommandContext): string[] {
  return [
    ...lvmPrefix(context),
    'lvs',
    '-a',
    '--segments',
    '--noheadings',
    '--units',
    'b',
    '--nosuffix',
    '--separator',
    ':',
    '-o',
    'lv_name,seg_start,seg_size,vg_extent_size,seg_pe_ranges',
    context.volumeGroup,
  ];
}

/** Where each physical volume's data area starts (pe_start), for volume_clear. */
export function dataStartsCommand(context: LvmCommandContext): string[] {
  return [...lvmPrefix(context), 'pvs', '--noheadings', '--units', 'b', '--nosuffix', '--separator', ':', '-o', 'pv_name,pe_start,vg_name'];
}

/** A run of bytes on a physical volume. */
export interface DeviceRange {
  device: string;
  offset: number;
  length: number;
}

/** A device node lvs may name: nothing a command line could misread. */
const PV_PATH = /^\/dev\/[A-Za-z0-9_.+:@/-]+$/;

/**
 * The byte ranges on physical volumes that hold the first `limitBytes` of LV `lvName` (all of it
 * when undefined): its own segments and its hidden sub-LVs' (`[name_mimage_0]`), whose address
 * spaces each start at 0. lvs' answers are checked: a range on anything but a /dev path of the
 * group's PVs is refused, never written to.
 */
export function clearRanges(segmentsStdout: string, dataStartsStdout: string, volumeGroup: string, lvName: string, limitBytes?: number): DeviceRange[] {
  const peStart = new Map<string, number>();
  for (const line of dataLines(dataStartsStdout)) {
    const [device, start, vg] = line.split(':');
    if (vg === volumeGroup && PV_PATH.test(device) && /^\d+$/.test(start)) peStart.set(device, Number(start));
  }
  const ranges: DeviceRange[] = [];
  for (const line of dataLines(segmentsStdout)) {
    // The ranges hold colons themselves (/dev/loop0:0-255): the first four fields, then the rest.
    const [rawName, segStart, segSize, extentSize] = line.split(':');
    const peRanges = line.split(':').slice(4).join(':');
    const name = rawName.replace(/^\[(.*)\]$/, '$1');
    if (name !== lvName && !name.startsWith(`${lvName}_`)) continue;
    const extent = Number(extentSize);
    let logical = Number(segStart);
    for (const range of (peRanges ?? '').trim().split(/\s+/).filter(Boolean)) {
      const match = /^(.+):(\d+)-(\d+)$/.exec(range);
      // A segment on another LV (a mirror's top LV on its images): the images are wiped as LVs of their own.
      if (!match || !match[1].startsWith('/')) continue;
      const device = match[1];
      const start = peStart.get(device);
      if (start === undefined) throw new Error(`lvs places ${lvName} on ${JSON.stringify(device)}, which pvs does not list as a physical volume of ${volumeGroup}`);
      const first = Number(match[2]);
      const count = Number(match[3]) - first + 1;
      let length = count * extent;
      if (limitBytes !== undefined) length = Math.min(length, Math.max(0, limitBytes - logical));
      if (length > 0) ranges.push({ device, offset: start + first * extent, length });
      logical += count * extent;
    }
    if (!Number.isFinite(logical) || Number(segSize) <= 0) throw new Error(`lvs gave an unreadable segment of ${lvName}: ${JSON.stringify(line)}`);
  }
  return ranges;
}

/**
 * Cinder's clear_volume with volume_clear=zero: zeros over a range. Cinder writes them with dd;
 * blkdiscard --zeroout asks the kernel (BLKZEROOUT), which uses the device's own write-zeroes where
 * it has one and writes zero pages otherwise: the same guarantee, far faster on disks that can.
 */
export function zeroCommand(context: LvmCommandContext, range: DeviceRange): string[] {
  return [...context.rootHelper, 'blkdiscard', '--zeroout', '--offset', String(range.offset), '--length', String(range.length), range.device];
}
