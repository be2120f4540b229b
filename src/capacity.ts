import type { PoolStats } from '../drivers/types.js';
import { roundGb } from '../drivers/units.js';

/**
 * Cinder's capacity filter (cinder/scheduler/filters/capacity_filter.py), applied before a create
 * touches the array. Thin pools: provisioned + size may not exceed total x
 * max_over_subscription_ratio, and the free space (less the reserve) x ratio must hold it.
 * Thick pools: the free space less the reserve must hold it.
 */
export interface CapacityVerdict {
  fits: boolean;
  /** GiB that could still be created, for the error message. */
  roomGb: number;
  /** How the room was computed, in words. */
  explanation: string;
}

export function checkCapacity(pool: PoolStats, sizeGb: number, pendingGb = 0): CapacityVerdict {
  const { total_capacity_gb: total, free_capacity_gb: free } = pool;
  if (total === 'infinite' || total === 'unknown' || free === 'infinite' || free === 'unknown') {
    return { fits: true, roomGb: Number.POSITIVE_INFINITY, explanation: `the pool reports ${free} free capacity` };
  }
  const reservedGb = Math.floor(total * ((pool.reserved_percentage ?? 0) / 100));
  const usableFree = free - reservedGb - pendingGb;
  if (pool.thin_provisioning_support) {
    const ratio = overSubscriptionRatio(pool.max_over_subscription_ratio);
    const provisioned = (pool.provisioned_capacity_gb ?? pool.allocated_capacity_gb ?? 0) + pendingGb;
    const byRatio = total * ratio - provisioned;
    const byFree = usableFree * ratio;
    const roomGb = roundGb(Math.max(0, Math.min(byRatio, byFree)));
    return {
      fits: sizeGb <= roomGb,
      roomGb,
      explanation:
        `thin pool: ${roundGb(total)} GiB total x ${ratio} over-subscription - ${roundGb(provisioned)} GiB provisioned` +
        (byFree < byRatio ? `, limited by ${roundGb(Math.max(0, usableFree))} GiB free x ${ratio}` : '') +
        (reservedGb ? ` (${pool.reserved_percentage}% reserved)` : ''),
    };
  }
  const roomGb = roundGb(Math.max(0, usableFree));
  return {
    fits: sizeGb <= roomGb,
    roomGb,
    explanation: `thick pool: ${roundGb(free)} GiB free` + (reservedGb ? ` - ${reservedGb} GiB reserved (${pool.reserved_percentage}%)` : '') + (pendingGb ? ` - ${pendingGb} GiB being created` : ''),
  };
}

function overSubscriptionRatio(value: number | string): number {
  const ratio = typeof value === 'number' ? value : Number.parseFloat(value);
  return Number.isFinite(ratio) && ratio >= 1 ? ratio : 1;
}

