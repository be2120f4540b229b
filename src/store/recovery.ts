import type { VolumeRecord } from '../model/volume.js';
import type { RecoveryClaim } from './store.js';

/**
 * Whether a record under way may be recovered (marked as crashed) by the server making `claim`:
 * one nobody owns (written before owners were recorded), one whose owner stopped renewing its
 * lease, or at start-up the server's own.
 */
export function isRecoverable(record: Pick<VolumeRecord, 'owner' | 'lease_expires_at'>, claim: RecoveryClaim): boolean {
  if (!record.owner) return true;
  if (record.owner === claim.owner) return claim.includeOwn;
  return !record.lease_expires_at || record.lease_expires_at < claim.now;
}
