/**
 * Cinder's capacity filter (cinder/scheduler/filters/capacity_filter.py), applied before a create
 * touches the array.
 * - Thin pools: provisioned + size may not exceed total x max_over_subscription_ratio, and the
 *   physical free space (less the reserve) x ratio must hold it. GiB promised to operations under
 *   way are virtual: they count against the provisioned side only, never against physical bytes.
 * - Thick pools: the free space less the reserve and less what operations under way will take
 *   must hold it.
 */

import type { PoolStats } from '../../drivers/kit/types.js';
import { roundGb } from '../../drivers/kit/units.js';

export interface CapacityVerdict {
  fits: boolean;
  /** GiB that could still be created, for the error message (never rounded up). */
  roomGb: number;
  /** How the room was computed, in words, with the same figures the rule used. */
  explanation: string;
}

export interface CapacityClaims {
  /** GiB the provisioned figure does not show yet: operations under way, or finished after it was taken. */
  provisionedGb?: number;
  /** GiB the free space figure does not show yet (thick pools allocate what they provision). */
  allocatedGb?: number;
  /** GiB provisioned by other backends that share this pool's space (same filesystem, same VG). */
  sharedProvisionedGb?: number;
}

export function checkCapacity(pool: PoolStats, sizeGb: number, claims: CapacityClaims = {}): CapacityVerdict {
  const { total_capacity_gb: total, free_capacity_gb: free } = pool;
  if (total === 'infinite' || total === 'unknown' || free === 'infinite' || free === 'unknown') {
    return { fits: true, roomGb: Number.POSITIVE_INFINITY, explanation: `the pool reports ${free} free capacity` };
  }
  const shared = claims.sharedProvisionedGb ?? 0;
  const reservedGb = Math.floor(total * ((pool.reserved_percentage ?? 0) / 100));
  const physicalFree = Math.max(0, free - reservedGb);
  const reserveText = reservedGb ? ` - ${reservedGb} GiB reserved (${pool.reserved_percentage}%)` : '';
  const notInStats = (gb: number) => (gb ? ` - ${roundGb(gb)} GiB being created or not yet in the stats` : '');
  if (pool.thin_provisioning_support) {
    const outstanding = claims.provisionedGb ?? 0;
    const provisioned = pool.provisioned_capacity_gb ?? pool.allocated_capacity_gb ?? 0;
    const ratio = overSubscriptionRatio(pool.max_over_subscription_ratio, { total, free, provisioned });
    const byRatio = total * ratio - provisioned - shared - outstanding;
    const byFree = physicalFree * ratio;
    const roomGb = floorGb(Math.max(0, Math.min(byRatio, byFree)));
    const ratioName = pool.max_over_subscription_ratio === 'auto' ? `${roundGb(ratio)} (auto)` : `${ratio}`;
    const ratioText =
      `thin pool: ${roundGb(total)} GiB total x ${ratioName} over-subscription - ${roundGb(provisioned)} GiB provisioned` +
      (shared ? ` - ${roundGb(shared)} GiB provisioned by backends sharing this space` : '') +
      notInStats(outstanding);
    const freeText = `${roundGb(free)} GiB free${reserveText} = ${roundGb(physicalFree)} GiB x ${ratioName}`;
    return {
      fits: sizeGb <= roomGb,
      roomGb,
      explanation: byFree < byRatio ? `${ratioText}, limited by ${freeText}` : ratioText,
    };
  }
  const allocated = claims.allocatedGb ?? 0;
  const roomGb = floorGb(Math.max(0, physicalFree - allocated));
  return { fits: sizeGb <= roomGb, roomGb, explanation: `thick pool: ${roundGb(free)} GiB free${reserveText}${notInStats(allocated)}` };
}

/** Room is rounded down: showing 39.996 GiB as 40 would admit a volume the array then refuses. */
function floorGb(value: number): number {
  return Math.floor(value * 100 + 1e-9) / 100;
}

/** Cinder's automatic ratio while nothing is provisioned yet (cinder/utils.py INITIAL_AUTO_MOSR). */
export const INITIAL_AUTO_RATIO = 20;

/**
 * Cinder's calculate_max_over_subscription_ratio: "auto" is 1 + provisioned / (used + 1), or
 * INITIAL_AUTO_RATIO while nothing is provisioned; a number is taken as it is.
 */
export function overSubscriptionRatio(value: number | string, pool: { total: number; free: number; provisioned: number }): number {
  if (value === 'auto') return pool.provisioned !== 0 ? 1 + pool.provisioned / (pool.total - pool.free + 1) : INITIAL_AUTO_RATIO;
  const ratio = typeof value === 'number' ? value : Number.parseFloat(value);
  return Number.isFinite(ratio) && ratio >= 1 ? ratio : 1;
}
