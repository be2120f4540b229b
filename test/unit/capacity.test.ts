import { describe, expect, it } from 'vitest';
import { checkCapacity } from '../../src/core/capacity.js';
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
