import { describe, expect, it } from 'vitest';
import {
  createThickCommand, createThinCommand, createThinPoolCommand, extendCommand, lvmErrorText, lvsCommand, parseLvs, parseThinPoolUsage,
  parseVgs, removeCommand, thinPoolUsageCommand, vgsCommand, type LvmCommandContext,
} from '../../drivers/lvm/commands.js';
import { checkCapacity } from '../../src/capacity.js';
import { shellCommand, shellQuote } from '../../src/exec/quote.js';

/** Command construction and parsing, including the thin paths this kernel cannot run for real. */
const context: LvmCommandContext = { volumeGroup: 'cinder-volumes', lvmSystemDir: '/etc/cinder', suppressFdWarnings: false, rootHelper: ['sudo'] };

describe("LVM commands, as Cinder's driver runs them", () => {
  it('prefixes env LC_ALL=C, LVM_SYSTEM_DIR from lvm_conf_file, and the root helper for non-root logins', () => {
    expect(vgsCommand(context)).toEqual([
      'sudo', 'env', 'LVM_SYSTEM_DIR=/etc/cinder', 'LC_ALL=C',
      'vgs', '--noheadings', '--units', 'b', '-o', 'name,size,free', '--separator', ':', '--nosuffix', 'cinder-volumes',
    ]);
    const asRoot = { ...context, rootHelper: [], lvmSystemDir: undefined };
    expect(lvsCommand(asRoot, 'volume-1')).toEqual(['env', 'LC_ALL=C', 'lvs', '--noheadings', '--units', 'b', '-o', 'vg_name,name,size', '--nosuffix', 'cinder-volumes/volume-1']);
  });

  it('creates thick, mirrored and thin volumes with Cinder\'s flags', () => {
    const bare = { ...context, rootHelper: [], lvmSystemDir: undefined };
    expect(createThickCommand(bare, 'volume-1', 10, 0).slice(2)).toEqual(['lvcreate', '-n', 'volume-1', 'cinder-volumes', '-L', '10g']);
    expect(createThickCommand(bare, 'volume-1', 10, 2).slice(-5)).toEqual(['-m', '2', '--nosync', '--mirrorlog', 'mirrored']);
    expect(createThinCommand(bare, 'volume-1', 10).slice(2)).toEqual(['lvcreate', '-T', '-V', '10g', '-n', 'volume-1', 'cinder-volumes/cinder-volumes-pool']);
    expect(createThinPoolCommand(bare, 100).slice(2)).toEqual(['lvcreate', '-T', '-L', '95g', 'cinder-volumes/cinder-volumes-pool']);
    expect(thinPoolUsageCommand(bare).slice(-1)).toEqual(['/dev/cinder-volumes/cinder-volumes-pool']);
    expect(extendCommand(bare, 'volume-1', 12).slice(2)).toEqual(['lvextend', '-L', '12g', 'cinder-volumes/volume-1']);
    expect(removeCommand(bare, 'volume-1').slice(2)).toEqual([
      'lvremove', '--config', 'activation { retry_deactivation = 1} devices { ignore_suspended_devices = 1}', '-f', 'cinder-volumes/volume-1',
    ]);
  });

  it('parses vgs/lvs output as LVM prints it, warnings aside', () => {
    // A 40 GiB loop device: LVM keeps the first MiB for its label, so the group holds 10239 extents of 4 MiB.
    expect(parseVgs('  cinder-volumes:42945478656:41871736832\n')).toEqual([{ name: 'cinder-volumes', sizeGb: 39.99, freeGb: 38.99 }]);
    expect(parseLvs('  cinder-volumes foreign-lv   1073741824\n  cinder-volumes volume-a   2684354560\n')).toEqual([
      { vg: 'cinder-volumes', name: 'foreign-lv', sizeGb: 1 },
      { vg: 'cinder-volumes', name: 'volume-a', sizeGb: 2.5 },
    ]);
    // A thin pool as lvs reports it: size and data percent; an unused pool has an empty percent.
    expect(parseThinPoolUsage('  102005473280:12.50\n')).toEqual({ sizeGb: 95, dataPercent: 12.5 });
    expect(parseThinPoolUsage('  102005473280:\n')).toEqual({ sizeGb: 95, dataPercent: 0 });
    expect(lvmErrorText('  WARNING: Activation disabled. No device-mapper interaction will be attempted.\n  Volume group "x" not found\n')).toBe('Volume group "x" not found');
    expect(() => parseVgs('  cinder-volumes:abc:1\n')).toThrow(/"abc" is not a number of bytes/);
    expect(() => parseVgs('  cinder-volumes:40.00:39.00\n')).toThrow(/"40.00" is not a number of bytes/);
  });

  it('reads free space in bytes, so a group with 39.996 GiB free refuses a 40 GiB thick volume that lvcreate would refuse', () => {
    // `vgs --unit=g` (os-brick's flags) prints this group's free space as 40.00.
    const [group] = parseVgs('  cinder-volumes:42945478656:42945478656\n');
    expect(group!.freeGb).toBe(39.99);
    const pool = {
      pool_name: 'lvm', total_capacity_gb: group!.sizeGb, free_capacity_gb: group!.freeGb, reserved_percentage: 0,
      max_over_subscription_ratio: 1, thin_provisioning_support: false, thick_provisioning_support: true,
    };
    expect(checkCapacity(pool, 40)).toMatchObject({ fits: false, roomGb: 39.99 });
    expect(checkCapacity(pool, 39).fits).toBe(true);
    // Whole extents are never rounded down below what they hold.
    expect(parseVgs('  vg:8589934592:8589934592\n')[0]).toMatchObject({ sizeGb: 8, freeGb: 8 });
  });
});

describe('the one shell quoting function', () => {
  it('makes every byte literal for a POSIX shell', () => {
    expect(shellQuote('cinder-volumes/volume-1')).toBe('cinder-volumes/volume-1');
    expect(shellQuote("it's $(rm -rf /) `x` ; | &")).toBe(`'it'\\''s $(rm -rf /) \`x\` ; | &'`);
    expect(shellCommand(['lvremove', '--config', 'activation { a = 1}'])).toBe("lvremove --config 'activation { a = 1}'");
    expect(() => shellQuote('a\0b')).toThrow(/NUL/);
  });
});
