import { BYTES_PER_GIB } from '../units.js';

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
  /** Root helper argv ("sudo"), empty when commands already run as root. */
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
  return [
    ...lvmPrefix(context),
    'vgs', '--noheadings', '--units', 'b', '-o', 'name,size,free', '--separator', ':', '--nosuffix',
    context.volumeGroup,
  ];
}

/** Every LV of the group, or one LV when `lvName` is given. */
export function lvsCommand(context: LvmCommandContext, lvName?: string): string[] {
  return [
    ...lvmPrefix(context),
    'lvs', '--noheadings', '--units', 'b', '-o', 'vg_name,name,size', '--nosuffix',
    lvName ? `${context.volumeGroup}/${lvName}` : context.volumeGroup,
  ];
}

export function thinPoolName(volumeGroup: string): string {
  return `${volumeGroup}-pool`;
}

export function thinPoolUsageCommand(context: LvmCommandContext): string[] {
  return [
    ...lvmPrefix(context),
    'lvs', '--noheadings', '--units', 'b', '-o', 'size,data_percent', '--separator', ':', '--nosuffix',
    `/dev/${context.volumeGroup}/${thinPoolName(context.volumeGroup)}`,
  ];
}

export function createThickCommand(context: LvmCommandContext, lvName: string, sizeGb: number, mirrors: number): string[] {
  const command = [...lvmPrefix(context), 'lvcreate', '-n', lvName, context.volumeGroup, '-L', `${sizeGb}g`];
  if (mirrors > 0) command.push('-m', String(mirrors), '--nosync', '--mirrorlog', 'mirrored');
  return command;
}

export function createThinCommand(context: LvmCommandContext, lvName: string, sizeGb: number): string[] {
  return [
    ...lvmPrefix(context),
    'lvcreate', '-T', '-V', `${sizeGb}g`, '-n', lvName, `${context.volumeGroup}/${thinPoolName(context.volumeGroup)}`,
  ];
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
  return [
    ...lvmPrefix(context),
    'lvremove', '--config', 'activation { retry_deactivation = 1} devices { ignore_suspended_devices = 1}', '-f',
    `${context.volumeGroup}/${lvName}`,
  ];
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
}

/** Parses `vgs ... --units b --separator : --nosuffix` lines; LVM's warnings go to stderr, not here. */
export function parseVgs(stdout: string): VolumeGroupInfo[] {
  return dataLines(stdout).map((line) => {
    const [name, size, free] = line.split(':');
    return { name: name!, sizeGb: gibFromBytes(size), freeGb: gibFromBytes(free) };
  });
}

export function parseLvs(stdout: string): LogicalVolumeInfo[] {
  return dataLines(stdout).map((line) => {
    const [vg, name, size] = line.split(/\s+/);
    return { vg: vg!, name: name!, sizeGb: gibFromBytes(size) };
  });
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
