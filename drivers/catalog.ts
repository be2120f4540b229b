import type { DriverDefinition } from './kit/types.js';

/**
 * Maps a `volume_driver` value (Cinder class path or short alias) to a driver folder. Drivers
 * load lazily so the server only pays for what its config uses (ssh2 and undici stay unloaded
 * on the embedded default).
 */
export interface CatalogEntry {
  alias: string;
  cinderPaths: readonly string[];
  load(): Promise<DriverDefinition>;
}

export const DRIVER_CATALOG: readonly CatalogEntry[] = [
  {
    alias: 'file',
    cinderPaths: ['cinderlib_mcp.drivers.file.FileDriver'],
    load: async () => (await import('./file/index.js')).default,
  },
  {
    alias: 'lvm',
    cinderPaths: ['cinder.volume.drivers.lvm.LVMVolumeDriver'],
    load: async () => (await import('./lvm/index.js')).default,
  },
  {
    alias: 'xtremio',
    cinderPaths: ['cinder.volume.drivers.dell_emc.xtremio.XtremIOISCSIDriver', 'cinder.volume.drivers.dell_emc.xtremio.XtremIOFCDriver'],
    load: async () => (await import('./xtremio/index.js')).default,
  },
  {
    alias: 'kaminario',
    cinderPaths: ['cinder.volume.drivers.kaminario.kaminario_iscsi.KaminarioISCSIDriver', 'cinder.volume.drivers.kaminario.kaminario_fc.KaminarioFCDriver'],
    load: async () => (await import('./kaminario/index.js')).default,
  },
  {
    alias: 'pure',
    cinderPaths: ['cinder.volume.drivers.pure.PureISCSIDriver'],
    load: async () => (await import('./pure/index.js')).default,
  },
  {
    alias: 'rbd',
    cinderPaths: ['cinder.volume.drivers.rbd.RBDDriver'],
    load: async () => (await import('./rbd/index.js')).default,
  },
];

/** Cinder's own default volume_driver is LVM; cinderlib inherits it. */
export const DEFAULT_VOLUME_DRIVER = 'cinder.volume.drivers.lvm.LVMVolumeDriver';

export function findDriver(volumeDriver: string): CatalogEntry | undefined {
  const wanted = volumeDriver.trim();
  return DRIVER_CATALOG.find((entry) => entry.alias === wanted.toLowerCase() || entry.cinderPaths.includes(wanted));
}

export function knownDriverNames(): string[] {
  return DRIVER_CATALOG.flatMap((entry) => [entry.alias, ...entry.cinderPaths]);
}
