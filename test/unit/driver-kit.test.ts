import { describe, expect, it } from 'vitest';
import { distinctSymbolsSecret, generateChapCredentials } from '../../drivers/kit/iscsi/chap.js';
import { iscsiConnection } from '../../drivers/kit/iscsi/connection.js';
import { mapVolumeToHost, unmapVolumeFromHosts } from '../../drivers/kit/mapping/host-mapping.js';

describe('iscsiConnection', () => {
  const target = { iqn: 'iqn.2010-10.org.openstack:volume-1', portal: '127.0.0.1:3260', lun: 1 };

  it("gives tgt's data: told target, CHAP, encrypted false, lists only for multipath", () => {
    const chap = { username: 'user', password: 'secret' };
    expect(iscsiConnection({ target, discovered: false, volumeId: 'v1', chap, encrypted: false })).toEqual({
      driver_volume_type: 'iscsi',
      data: {
        target_discovered: false,
        target_iqn: target.iqn,
        target_portal: target.portal,
        target_lun: 1,
        volume_id: 'v1',
        auth_method: 'CHAP',
        auth_username: 'user',
        auth_password: 'secret',
        encrypted: false,
      },
    });
    expect(iscsiConnection({ target, discovered: false, paths: [target], chap }).data).toMatchObject({ target_iqns: [target.iqn], target_portals: [target.portal], target_luns: [1] });
  });

  it("gives K2's data: discovered, no CHAP, no volume_id; and login and discovery CHAP as XtremIO's", () => {
    expect(iscsiConnection({ target, discovered: true }).data).toEqual({ target_discovered: true, target_iqn: target.iqn, target_portal: target.portal, target_lun: 1 });
    const data = iscsiConnection({ target, discovered: false, chap: { username: 'chap_user', password: undefined }, discoveryChap: { username: 'chap_user', password: 'd' } }).data;
    expect(data).toMatchObject({ auth_method: 'CHAP', auth_username: 'chap_user', discovery_auth_method: 'CHAP', discovery_auth_username: 'chap_user', discovery_auth_password: 'd' });
    expect(data).toHaveProperty('auth_password', undefined);
  });
});

describe('CHAP secrets', () => {
  it("makes Cinder's forms", () => {
    const { username, password } = generateChapCredentials();
    expect(username).toMatch(/^[2-9A-HJ-NP-Za-km-z]{20}$/);
    expect(password).toMatch(/^[2-9A-HJ-NP-Za-km-z]{16}$/);
    const xtremio = distinctSymbolsSecret('ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', 12);
    expect(xtremio).toMatch(/^[A-Z0-9]{12}$/);
    expect(new Set(xtremio).size).toBe(12);
  });
});

describe('host mapping', () => {
  it('finds or creates the host, reuses a mapping, and undoes a host it created when mapping fails', async () => {
    const calls: string[] = [];
    const steps = (found: string | undefined, mapping: () => Promise<number>) => ({
      findHost: async () => (calls.push('find host'), found),
      createHost: async () => (calls.push('create host'), 'h1'),
      findMapping: async () => (calls.push('find mapping'), undefined),
      createMapping: async () => (calls.push('create mapping'), mapping()),
      undoHost: async (host: string) => void calls.push(`undo ${host}`),
    });
    expect(await mapVolumeToHost(steps('h0', async () => 5))).toEqual({ host: 'h0', mapping: 5, hostCreated: false });
    expect(calls.splice(0)).toEqual(['find host', 'find mapping', 'create mapping']);
    await expect(mapVolumeToHost(steps(undefined, async () => Promise.reject(new Error('refused'))))).rejects.toThrow('refused');
    expect(calls.splice(0)).toEqual(['find host', 'create host', 'find mapping', 'create mapping', 'undo h1']);
    await expect(mapVolumeToHost(steps('h0', async () => Promise.reject(new Error('refused'))))).rejects.toThrow('refused');
    expect(calls.splice(0)).not.toContain('undo h0');
    expect((await mapVolumeToHost({ ...steps('h0', async () => 7), findMapping: async () => 0 })).mapping).toBe(0);
  });

  it('unmaps from every host first, then removes the unused ones; a removal failure is reported when asked, thrown otherwise', async () => {
    const calls: string[] = [];
    const cleanup = {
      isUnused: async (host: number) => (calls.push(`used? ${host}`), host !== 2),
      removeHost: async (host: number) => {
        calls.push(`remove ${host}`);
        if (host === 3) throw new Error('busy');
      },
    };
    const unmap = async (host: number) => void calls.push(`unmap ${host}`);
    const failures: number[] = [];
    await unmapVolumeFromHosts({ findHosts: async () => [1, 2, 3], unmap, removeUnused: { ...cleanup, onFailure: (host) => void failures.push(host) } });
    expect(calls.splice(0)).toEqual(['unmap 1', 'unmap 2', 'unmap 3', 'used? 1', 'remove 1', 'used? 2', 'used? 3', 'remove 3']);
    expect(failures).toEqual([3]);
    await expect(unmapVolumeFromHosts({ findHosts: async () => [3], unmap, removeUnused: cleanup })).rejects.toThrow('busy');
    expect(await unmapVolumeFromHosts({ findHosts: async () => [], unmap })).toEqual([]);
  });
});
