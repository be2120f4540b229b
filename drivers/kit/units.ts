/** Units and small numeric rules shared by drivers. */
export const KIB_PER_GIB = 1024 * 1024;
export const BYTES_PER_GIB = 1024 ** 3;
export const BYTES_PER_MIB = 1024 ** 2;

/** Capacities are reported in GiB with two decimals, as Cinder drivers round them. */
export function roundGb(value: number): number {
  return Math.round(value * 100) / 100;
}

/** "4.2.0-30" -> [4, 2, 0]: the numeric part of an array's version string. */
export function versionNumbers(text: string): number[] {
  return (text.split('-')[0] ?? '').split('.').map((part) => Number.parseInt(part, 10) || 0);
}

export function compareVersions(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const difference = (a[i] ?? 0) - (b[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}
