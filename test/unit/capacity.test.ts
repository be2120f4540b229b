import { describe, expect, it } from 'vitest';
import { INITIAL_AUTO_RATIO, checkCapacity, overSubscriptionRatio } from '../../src/core/capacity.js';
import type { PoolStats } from '../../drivers/kit/types.js';

const pool = (overrides: Partial<PoolStats>): PoolStats => ({
  pool_name: 'p',
  total_capacity_gb: 100,
  free_capacity_gb: 60,
  provisioned_capacity_gb: 40,
  reserved_percentage: 0,
  max_over_subscription_ratio: 20,
  thin_provisioning_support: false,
  thick_provisioning_support: true,
  ...overrides,
});

describe("Cinder's capacity rules", () => {
  it('thick: the free space less the reserve must hold the volume', () => {
    expect(checkCapacity(pool({}), 60)).toMatchObject({ fits: true, roomGb: 60 });
    expect(checkCapacity(pool({}), 61)).toMatchObject({ fits: false, roomGb: 60 });
    expect(checkCapacity(pool({ reserved_percentage: 10 }), 51)).toMatchObject({ fits: false, roomGb: 50 });
    expect(checkCapacity(pool({}), 30, { allocatedGb: 40 }).roomGb).toBe(20); // 40 GiB already promised to creates under way
  });

  it('thin: total x ratio minus provisioned, and free x ratio', () => {
    const thin = pool({ thin_provisioning_support: true, thick_provisioning_support: false, provisioned_capacity_gb: 1900 });
    expect(checkCapacity(thin, 100)).toMatchObject({ fits: true, roomGb: 100 });
    expect(checkCapacity(thin, 101)).toMatchObject({ fits: false, roomGb: 100 });
    const nearlyFull = pool({ thin_provisioning_support: true, free_capacity_gb: 1, provisioned_capacity_gb: 10 });
    expect(checkCapacity(nearlyFull, 21).fits).toBe(false); // 1 GiB free x 20
    expect(checkCapacity(nearlyFull, 21).explanation).toMatch(/limited by 1 GiB free = 1 GiB x 20/);
  });

  it('thin: GiB under way count against the provisioned side, never against physical free space', () => {
    const thin = pool({ thin_provisioning_support: true, total_capacity_gb: 100, free_capacity_gb: 100, provisioned_capacity_gb: 0 });
    const verdict = checkCapacity(thin, 3, { provisionedGb: 600 });
    expect(verdict).toMatchObject({ fits: true, roomGb: 1400 });
    expect(verdict.explanation).toBe('thin pool: 100 GiB total x 20 over-subscription - 0 GiB provisioned - 600 GiB being created or not yet in the stats');
    const shared = checkCapacity(thin, 3, { provisionedGb: 600, sharedProvisionedGb: 1398 });
    expect(shared).toMatchObject({ fits: false, roomGb: 2 });
    expect(shared.explanation).toMatch(/- 1398 GiB provisioned by backends sharing this space/);
  });

  it('never rounds room up: 39.996 GiB free does not admit 40 GiB', () => {
    const verdict = checkCapacity(pool({ free_capacity_gb: 39.996 }), 40);
    expect(verdict).toMatchObject({ fits: false, roomGb: 39.99 });
  });

  it('lets infinite or unknown capacity through, as Cinder does', () => {
    expect(checkCapacity(pool({ free_capacity_gb: 'unknown' }), 1_000_000).fits).toBe(true);
  });
});

describe("max_over_subscription_ratio auto (Cinder's calculate_max_over_subscription_ratio)", () => {
  it('is 1 + provisioned / (used + 1), and 20 while nothing is provisioned', () => {
    expect(overSubscriptionRatio('auto', { total: 100, free: 60, provisioned: 82 })).toBe(3);
    expect(overSubscriptionRatio('auto', { total: 100, free: 100, provisioned: 0 })).toBe(INITIAL_AUTO_RATIO);
    expect(overSubscriptionRatio(1.5, { total: 100, free: 60, provisioned: 82 })).toBe(1.5);
  });

  it('decides the room of a thin pool, and says it was computed', () => {
    // used 40, provisioned 82: ratio 3, so 300 - 82 = 218 GiB by the ratio; 60 free x 3 = 180 by the free space.
    const verdict = checkCapacity(
      pool({ thin_provisioning_support: true, total_capacity_gb: 100, free_capacity_gb: 60, provisioned_capacity_gb: 82, max_over_subscription_ratio: 'auto' }),
      180,
    );
    expect(verdict).toMatchObject({ fits: true, roomGb: 180 });
    expect(verdict.explanation).toMatch(/x 3 \(auto\)/);
    expect(
      checkCapacity(pool({ thin_provisioning_support: true, total_capacity_gb: 100, free_capacity_gb: 60, provisioned_capacity_gb: 82, max_over_subscription_ratio: 'auto' }), 181).fits,
    ).toBe(false);
  });
});
