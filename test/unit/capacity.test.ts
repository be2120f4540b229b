import { describe, expect, it } from 'vitest';
import { checkCapacity } from '../../src/capacity.js';
import type { PoolStats } from '../../drivers/types.js';

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
    expect(checkCapacity(pool({}), 30, 40).roomGb).toBe(20); // 40 GiB already promised to creates under way
  });

  it('thin: total x ratio minus provisioned, and free x ratio', () => {
    const thin = pool({ thin_provisioning_support: true, thick_provisioning_support: false, provisioned_capacity_gb: 1900 });
    expect(checkCapacity(thin, 100)).toMatchObject({ fits: true, roomGb: 100 });
    expect(checkCapacity(thin, 101)).toMatchObject({ fits: false, roomGb: 100 });
    const nearlyFull = pool({ thin_provisioning_support: true, free_capacity_gb: 1, provisioned_capacity_gb: 10 });
    expect(checkCapacity(nearlyFull, 21).fits).toBe(false); // 1 GiB free x 20
    expect(checkCapacity(nearlyFull, 21).explanation).toMatch(/limited by 1 GiB free x 20/);
  });

  it('lets infinite or unknown capacity through, as Cinder does', () => {
    expect(checkCapacity(pool({ free_capacity_gb: 'unknown' }), 1_000_000).fits).toBe(true);
  });
});
