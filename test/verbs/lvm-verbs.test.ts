import { describe, expect, it } from 'vitest';
import { deactivateCommand, manageableLvs, mergeCommand, parseLvs, renameCommand, revertTemporaryLvName, type LvmCommandContext } from '../../drivers/lvm/commands.js';

/** The LVM commands of revert and adoption that this kernel (no device-mapper) cannot run for real, and the manageable-LV rules. */
const context: LvmCommandContext = { volumeGroup: 'cinder-volumes', suppressFdWarnings: false, rootHelper: ['sudo', '-n'] };
const prefix = ['sudo', '-n', 'env', 'LC_ALL=C'];
const id = '0b5e3f0c-1d2e-4f5a-9b8c-7d6e5f4a3b2c';

describe('LVM revert and adoption commands', () => {
  it("builds os-brick's revert (lvconvert --merge), deactivate and Cinder's manage rename", () => {
    expect(mergeCommand(context, `_snapshot-${id}`)).toEqual([...prefix, 'lvconvert', '--merge', `cinder-volumes/_snapshot-${id}`]);
    expect(deactivateCommand(context, `volume-${id}`)).toEqual([...prefix, 'lvchange', '-a', 'n', `cinder-volumes/volume-${id}`]);
    expect(renameCommand(context, 'old-lv', `volume-${id}`)).toEqual([...prefix, 'lvrename', 'cinder-volumes', 'old-lv', `volume-${id}`]);
    expect(revertTemporaryLvName(id)).toBe(`revert-snap-${id}`);
  });

  it('offers volumes to manage as Cinder does: not snapshots, not the thin pool; an open LV is not safe', () => {
    const lvs = parseLvs(
      [
        `cinder-volumes:foreign:1073741824::-wi-a-----`,
        `cinder-volumes:half:536870912::-wi-ao----`,
        `cinder-volumes:volume-${id}:2147483648::Vwi-a-tz--`,
        `cinder-volumes:_snapshot-${id}:2147483648:volume-${id}:swi-a-s---`,
        `cinder-volumes:cinder-volumes-pool:4294967296::twi-aotz--`,
        `cinder-volumes:volume-11111111-2222-4333-8444-555555555555:1073741824:volume-${id}:Vwi-a-tz--`,
      ].join('\n'),
    );
    expect(manageableLvs(lvs, 'cinder-volumes-pool')).toEqual([
      { name: 'foreign', sizeGb: 1, carriedId: undefined },
      { name: 'half', sizeGb: 1, carriedId: undefined, notSafe: 'volume in use' },
      { name: `volume-${id}`, sizeGb: 2, carriedId: id },
      { name: 'volume-11111111-2222-4333-8444-555555555555', sizeGb: 1, carriedId: '11111111-2222-4333-8444-555555555555' },
    ]);
  });
});
