import { StorageError } from '../../../src/base/errors.js';
import type { ExportOperations } from '../types.js';
import type { TargetHelper } from './options.js';
import { TgtTarget, type BackingStore, type TargetHost, type TgtSettings } from './tgt.js';
import type { VolumeRef, DriverContext } from '../types.js';

export { TgtTarget, formatPortal, type BackingStore, type TargetHost, type TgtSettings } from './tgt.js';
export { isValidProviderAuth, parseProviderAuth, formatProviderAuth } from '../iscsi/chap.js';
export { TARGET_HELPERS, targetOptions, tgtSettings, thisHostAddress, type TargetHelper } from './options.js';

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
      // Accepted in configs, as Cinder's; this server drives tgt only.
      return new UnsupportedExports(
        `${backend}: target_helper "lioadm" needs the kernel's LIO target (configfs at /sys/kernel/config/target) on ${host.runner.target}, which this server does not drive; set target_helper: tgtadm (Linux SCSI target, Debian package tgt) and run tgtd`,
      );
    default:
      return new UnsupportedExports(
        `${backend}: target_helper "${helper}" is not supported by this server; set target_helper: tgtadm (Linux SCSI target, Debian package tgt) and run tgtd`,
      );
  }
}
