import { StorageError } from '../../../src/base/errors.js';
import type { ExportOperations } from '../types.js';
import type { TargetHelper } from './options.js';
import { TgtTarget, type BackingStore, type TargetHost, type TgtSettings } from './tgt.js';
import { LioTarget, lioConfigfsRoot } from './lio.js';
import type { VolumeRef, DriverContext } from '../types.js';

export { TgtTarget, formatPortal, type BackingStore, type TargetHost, type TgtSettings } from './tgt.js';
export { LioTarget, LIO_CONFIGFS_ROOT, lioConfigfsRoot, type LioSettings } from './lio.js';
export { isValidProviderAuth, parseProviderAuth, formatProviderAuth } from '../iscsi/chap.js';
export { MY_IP, TARGET_HELPERS, otherTargetOptions, targetOptions, tgtSettings, thisHostAddress, type TargetHelper } from './options.js';

/**
 * Exports a driver cannot make, each call refused with the reason (the option to set, the
 * missing kernel feature) before anything is touched.
 */
export class UnsupportedExports implements ExportOperations {
  readonly requiredConnectorKeys = ['initiator'] as const;

  constructor(readonly unavailable: string) {}

  private refuse(): never {
    throw new StorageError('UNSUPPORTED', this.unavailable);
  }

  async createExport(): Promise<never> {
    this.refuse();
  }

  async initializeConnection(): Promise<never> {
    this.refuse();
  }

  async terminateConnection(): Promise<void> {}

  async removeExport(): Promise<void> {}
}

/** The export a `target_helper` setting gives, on the host whose commands the driver runs. */
export function targetFor(
  helper: TargetHelper,
  settings: TgtSettings,
  host: TargetHost,
  /** The volume's LUN: a path, or a store of a tgt backing-store module (rbd). */
  backing: (volume: VolumeRef) => BackingStore,
  context: Pick<DriverContext, 'secrets' | 'log'>,
): ExportOperations {
  const backend = `backend "${settings.backendName}"`;
  switch (helper) {
    case 'tgtadm':
      return new TgtTarget(settings, host, backing, context);
    case 'lioadm':
      // Where the host has no LIO (no configfs target tree), each export answers UNSUPPORTED naming tgtadm.
      return new LioTarget(
        {
          backendName: settings.backendName,
          ipAddress: settings.ipAddress,
          secondaryIpAddresses: settings.secondaryIpAddresses,
          port: settings.port,
          prefix: settings.prefix,
          configfsRoot: lioConfigfsRoot(),
        },
        host,
        (volume) => {
          const store = backing(volume);
          if (typeof store === 'string') return store;
          // LIO serves block devices and files; a module store (tgt's rbd) has neither here.
          throw new StorageError(
            'UNSUPPORTED',
            `${backend}: target_helper "lioadm" exports a block device or a file; a ${store.type} image is exported through tgt: set target_helper: tgtadm`,
          );
        },
        context,
      );
    default:
      return new UnsupportedExports(
        `${backend}: target_helper "${helper}" is not supported by this server; set target_helper: tgtadm (Linux SCSI target, Debian package tgt) and run tgtd`,
      );
  }
}
