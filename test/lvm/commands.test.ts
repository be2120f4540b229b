import { describe, expect, it } from 'vitest';
import {
  clearRanges,
  zeroCommand,
  activateCommand,
  cloneSnapshotLvName,
  copyCommands,
  createSnapshotCommand,
  createThickCommand,
  createThinCommand,
  createThinPoolCommand,
  devicePath,
  escapeSnapshotName,
  extendCommand,
  lvmErrorText,
  lvsCommand,
  parseLvs,
  parseThinPoolUsage,
  parseVgs,
  removeCommand,
  snapshotLvName,
  snapshotsOf,
  thinPoolUsageCommand,
  vgsCommand,
  volumeLvName,
  type LvmCommandContext,
} from '../../drivers/lvm/commands.js';
import { checkCapacity } from '../../src/core/capacity.js';
import { shellCommand, shellQuote } from '../../drivers/kit/exec/quote.js';

/** Command construction and parsing, including the thin paths this kernel cannot run for real. */
const context: LvmCommandContext = { volumeGroup: 'cinder-volumes', lvmSystemDir: '/etc/cinder', suppressFdWarnings: false, rootHelper: ['sudo'] };

describe("LVM commands, as Cinder's driver runs them", () => {
  it('prefixes env LC_ALL=C, LVM_SYSTEM_DIR from lvm_conf_file, and the root helper for non-root logins', () => {
    expect(vgsCommand(context)).toEqual([
      'sudo',
      'env',
      'LVM_SYSTEM_DIR=/etc/cinder',
      'LC_ALL=C',
      'vgs',
      '--noheadings',
      '--units',
      'b',
      '-o',
      'name,size,free',
      '--separator',
      ':',
      '--nosuffix',
      'cinder-volumes',
    ]);
    const asRoot = { ...context, rootHelper: [], lvmSystemDir: undefined };
    expect(lvsCommand(asRoot, 'volume-1')).toEqual([
      'env',
      'LC_ALL=C',
      'lvs',
      '--noheadings',
      '--units',
      'b',
      '-o',
      'vg_name,name,size,origin,lv_attr',
      '--separator',
      ':',
      '--nosuffix',
      'cinder-volumes/volume-1',
    ]);
  });

  it("creates thick, mirrored and thin volumes with Cinder's flags", () => {
    const bare = { ...context, rootHelper: [], lvmSystemDir: undefined };
    expect(createThickCommand(bare, 'volume-1', 10, 0).slice(2)).toEqual(['lvcreate', '-n', 'volume-1', 'cinder-volumes', '-L', '10g']);
    expect(createThickCommand(bare, 'volume-1', 10, 2).slice(-5)).toEqual(['-m', '2', '--nosync', '--mirrorlog', 'mirrored']);
    expect(createThinCommand(bare, 'volume-1', 10).slice(2)).toEqual(['lvcreate', '-T', '-V', '10g', '-n', 'volume-1', 'cinder-volumes/cinder-volumes-pool']);
    expect(createThinPoolCommand(bare, 100).slice(2)).toEqual(['lvcreate', '-T', '-L', '95g', 'cinder-volumes/cinder-volumes-pool']);
    expect(thinPoolUsageCommand(bare).slice(-1)).toEqual(['/dev/cinder-volumes/cinder-volumes-pool']);
    expect(extendCommand(bare, 'volume-1', 12).slice(2)).toEqual(['lvextend', '-L', '12g', 'cinder-volumes/volume-1']);
    expect(removeCommand(bare, 'volume-1').slice(2)).toEqual([
      'lvremove',
      '--config',
      'activation { retry_deactivation = 1} devices { ignore_suspended_devices = 1}',
      '-f',
      'cinder-volumes/volume-1',
    ]);
  });

  it('parses vgs/lvs output as LVM prints it, warnings aside', () => {
    // A 40 GiB loop device: LVM keeps the first MiB for its label, so the group holds 10239 extents of 4 MiB.
    expect(parseVgs('  cinder-volumes:42945478656:41871736832\n')).toEqual([{ name: 'cinder-volumes', sizeGb: 39.99, freeGb: 38.99 }]);
    expect(parseLvs('  cinder-volumes:foreign-lv:1073741824::-wi-a-----\n  cinder-volumes:volume-a:2684354560::owi-a-s---\n')).toEqual([
      { vg: 'cinder-volumes', name: 'foreign-lv', sizeGb: 1, origin: '', attr: '-wi-a-----' },
      { vg: 'cinder-volumes', name: 'volume-a', sizeGb: 2.5, origin: '', attr: 'owi-a-s---' },
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
    expect(group.freeGb).toBe(39.99);
    const pool = {
      pool_name: 'lvm',
      total_capacity_gb: group.sizeGb,
      free_capacity_gb: group.freeGb,
      reserved_percentage: 0,
      max_over_subscription_ratio: 1,
      thin_provisioning_support: false,
      thick_provisioning_support: true,
    };
    expect(checkCapacity(pool, 40)).toMatchObject({ fits: false, roomGb: 39.99 });
    expect(checkCapacity(pool, 39).fits).toBe(true);
    // Whole extents are never rounded down below what they hold.
    expect(parseVgs('  vg:8589934592:8589934592\n')[0]).toMatchObject({ sizeGb: 8, freeGb: 8 });
  });
});

describe("LVM snapshots and copies, as Cinder's LVM driver makes them", () => {
  const bare = { ...context, rootHelper: [], lvmSystemDir: undefined };

  it("names snapshot LVs _snapshot-<id> (LVM reserves names starting with 'snapshot'), the clone's temporary snapshot clone-snap-<new volume id>", () => {
    expect(volumeLvName('v1')).toBe('volume-v1');
    expect(snapshotLvName('s1')).toBe('_snapshot-s1');
    expect(escapeSnapshotName('snapshot-s1')).toBe('_snapshot-s1');
    expect(escapeSnapshotName('clone-snap-v2')).toBe('clone-snap-v2');
    expect(cloneSnapshotLvName('v2')).toBe('clone-snap-v2');
  });

  it('snapshots with lvcreate --snapshot: -L the origin size when thick, no size when thin', () => {
    expect(createSnapshotCommand(context, '_snapshot-s1', 'volume-v1', 10)).toEqual([
      'sudo',
      'env',
      'LVM_SYSTEM_DIR=/etc/cinder',
      'LC_ALL=C',
      'lvcreate',
      '--name',
      '_snapshot-s1',
      '--snapshot',
      'cinder-volumes/volume-v1',
      '-L',
      '10g',
    ]);
    expect(createSnapshotCommand(bare, '_snapshot-s1', 'volume-v1').slice(2)).toEqual(['lvcreate', '--name', '_snapshot-s1', '--snapshot', 'cinder-volumes/volume-v1']);
    // A thin volume from a snapshot is a snapshot of the snapshot, named as the volume.
    expect(createSnapshotCommand(bare, 'volume-v2', '_snapshot-s1').slice(2)).toEqual(['lvcreate', '--name', 'volume-v2', '--snapshot', 'cinder-volumes/_snapshot-s1']);
  });

  it("activates snapshot LVs despite LVM's activation-skip flag, and clears the flag for a volume made from one", () => {
    expect(activateCommand(bare, '_snapshot-s1', { permanent: false }).slice(2)).toEqual(['lvchange', '-a', 'y', '--yes', '-K', 'cinder-volumes/_snapshot-s1']);
    expect(activateCommand(bare, 'volume-v2', { permanent: true }).slice(2)).toEqual(['lvchange', '-a', 'y', '--yes', '-k', 'n', 'cinder-volumes/volume-v2']);
  });

  it("copies device-mapper nodes (Cinder's local_path) with dd in 256 MiB chunks, direct I/O, sparse only onto thin targets", () => {
    expect(devicePath('cinder-volumes', '_snapshot-a-b')).toBe('/dev/mapper/cinder--volumes-_snapshot--a--b');
    const steps = copyCommands(context, { sourceLv: '_snapshot-s1', targetLv: 'volume-v2', sizeGb: 1, sparse: false });
    expect(steps.map((step) => step.bytesDone)).toEqual([1, 2, 3, 4].map((quarter) => quarter * 256 * 1024 * 1024));
    expect(steps[0].command).toEqual([
      'sudo',
      'env',
      'LC_ALL=C',
      'dd',
      'if=/dev/mapper/cinder--volumes-_snapshot--s1',
      'of=/dev/mapper/cinder--volumes-volume--v2',
      'bs=1M',
      'count=256',
      'skip=0',
      'seek=0',
      'iflag=direct',
      'oflag=direct',
      'conv=notrunc',
    ]);
    expect(steps[3].command.slice(7, 10)).toEqual(['count=256', 'skip=768', 'seek=768']);
    const thin = copyCommands(bare, { sourceLv: 'clone-snap-v3', targetLv: 'volume-v3', sizeGb: 2, sparse: true });
    expect(thin).toHaveLength(8);
    expect(thin.every((step) => step.command.at(-1) === 'conv=notrunc,sparse')).toBe(true);
    expect(thin.at(-1)!.bytesDone).toBe(2 * 1024 ** 3);
  });

  it('finds the snapshots that keep a volume from being deleted: thick and thin snapshots, not thin clones made from it', () => {
    const lvs = parseLvs(
      [
        '  cinder-volumes:volume-a:1073741824::owi-a-s---',
        '  cinder-volumes:_snapshot-s1:1073741824:volume-a:swi-a-s---',
        '  cinder-volumes:clone-snap-c:1073741824:volume-a:swi-a-s---',
        '  cinder-volumes:volume-t:1073741824::Vwi-a-tz--',
        '  cinder-volumes:_snapshot-s2:1073741824:volume-t:Vwi---tz-k',
        '  cinder-volumes:volume-clone:1073741824:volume-t:Vwi-a-tz--',
        '  cinder-volumes:volume-fromsnap:1073741824:_snapshot-s2:Vwi-a-tz--',
      ].join('\n'),
    );
    expect(snapshotsOf(lvs, 'volume-a')).toEqual(['_snapshot-s1', 'clone-snap-c']);
    expect(snapshotsOf(lvs, 'volume-t')).toEqual(['_snapshot-s2']);
    expect(snapshotsOf(lvs, '_snapshot-s2')).toEqual([]);
    expect(snapshotsOf(lvs, 'volume-clone')).toEqual([]);
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

describe("volume_clear's ranges (Cinder's clear_volume, on the physical volumes)", () => {
  const pvs = '  /dev/loop3:1048576:vg1\n  /dev/loop9:1048576:other\n';
  const extent = 4194304;

  it("maps an LV's segments, and a mirror's images, to byte ranges of its physical volumes, up to volume_clear_size", () => {
    const lvs = [
      `  volume-a:0:8388608:${extent}:/dev/loop3:0-1`,
      `  volume-a:8388608:8388608:${extent}:/dev/loop3:5-6`,
      `  volume-b:0:4194304:${extent}:/dev/loop3:2-2`,
      `  volume-m:0:4194304:${extent}:volume-m_mimage_0:0-0 volume-m_mimage_1:0-0`,
      `  [volume-m_mimage_0]:0:4194304:${extent}:/dev/loop3:7-7`,
      `  [volume-m_mimage_1]:0:4194304:${extent}:/dev/loop3:8-8`,
    ].join('\n');
    expect(clearRanges(lvs, pvs, 'vg1', 'volume-a')).toEqual([
      { device: '/dev/loop3', offset: 1048576, length: 2 * extent },
      { device: '/dev/loop3', offset: 1048576 + 5 * extent, length: 2 * extent },
    ]);
    // The first 6 MiB only: the first segment whole, nothing of the second.
    expect(clearRanges(lvs, pvs, 'vg1', 'volume-a', 6 * 1024 * 1024)).toEqual([{ device: '/dev/loop3', offset: 1048576, length: 6 * 1024 * 1024 }]);
    expect(clearRanges(lvs, pvs, 'vg1', 'volume-m')).toEqual([
      { device: '/dev/loop3', offset: 1048576 + 7 * extent, length: extent },
      { device: '/dev/loop3', offset: 1048576 + 8 * extent, length: extent },
    ]);
  });

  it('refuses a range on anything but a physical volume of the group, writing nowhere', () => {
    expect(() => clearRanges(`  volume-a:0:4194304:${extent}:/dev/loop9:0-0`, pvs, 'vg1', 'volume-a')).toThrow(/not list as a physical volume of vg1/);
    expect(() => clearRanges(`  volume-a:0:4194304:${extent}:/etc/passwd:0-0`, pvs, 'vg1', 'volume-a')).toThrow(/not list as a physical volume/);
    expect(zeroCommand({ rootHelper: ['sudo', '-n'], volumeGroup: 'vg1' } as never, { device: '/dev/loop3', offset: 1048576, length: 4096 })).toEqual([
      'sudo',
      '-n',
      'blkdiscard',
      '--zeroout',
      '--offset',
      '1048576',
      '--length',
      '4096',
      '/dev/loop3',
    ]);
  });
});
