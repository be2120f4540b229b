import { describe, expect, it } from 'vitest';
import { tgtdRequests } from '../../drivers/kit/targets/tgtd-protocol.js';
import { TgtConfigFiles } from '../../drivers/kit/targets/tgt-config.js';
import { toolErrorText, volumeIdOf, volumeImage } from '../../drivers/rbd/cli.js';
import { cloneParent } from '../../drivers/rbd/images.js';

/**
 * The pieces of the RBD driver and of the kit's tgt support for rbd stores that need no cluster:
 * what reaches tgtd and tgt's config files for an rbd backing store (refused, naming the field,
 * when a value could add a parameter or a line), and how rbd's words and image names are read.
 */
describe("tgt's rbd backing store", () => {
  it('sends bstype and bsopts after the path, as tgtadm does', () => {
    const request = tgtdRequests.newUnit(3, 1, 'volumes/volume-1', '', { type: 'rbd', options: 'conf=/etc/ceph/ceph.conf;id=cinder' });
    expect(request.params).toBe('path=volumes/volume-1,bstype=rbd,bsopts=conf=/etc/ceph/ceph.conf;id=cinder');
    expect(request.operation).toBe('add rbd store volumes/volume-1 as LUN 1 of target tid 3');
    // A file keeps its absolute path and no bstype.
    expect(tgtdRequests.newUnit(3, 1, '/dev/vg/lv', 'direct').params).toBe('path=/dev/vg/lv,bsoflags=direct');
  });

  it('refuses names and options that could carry another parameter or line', () => {
    for (const name of ['volumes/../etc', '/abs/path', 'volumes/a,bsopts=x', 'volumes', 'volumes/a b', '-x/y']) {
      expect(() => tgtdRequests.newUnit(3, 1, name, '', { type: 'rbd' }), name).toThrow(/^backing store name .* must be names/);
    }
    for (const options of ['conf=/a,b', 'conf=/a;id=x,y', 'conf="x"', 'conf=/a b', 'conf=/a;;id=x', 'conf==x', 'conf=$(x)', 'conf=/a\nid=x']) {
      expect(() => tgtdRequests.newUnit(3, 1, 'volumes/v', '', { type: 'rbd', options }), options).toThrow(/^backing store options must be key=value pairs/);
    }
    expect(() => tgtdRequests.newUnit(3, 1, 'volumes/v', '', { type: 'rbd;x' })).toThrow(/^backing store type/);
  });

  it("writes bs-type and bsopts into the target's config file for tgt-admin", () => {
    const files = new TgtConfigFiles(
      '/tmp/x',
      async () => ({ exitCode: 0, stdout: '', stderr: '' }),
      (result) => result,
    );
    const text = files.textOf({
      volumeId: '11111111-2222-4333-8444-555555555555',
      iqn: 'iqn.2010-10.org.openstack:volume-11111111-2222-4333-8444-555555555555',
      backing: 'volumes/volume-11111111-2222-4333-8444-555555555555',
      backingType: 'rbd',
      backingOptions: 'conf=/etc/ceph/ceph.conf;id=cinder',
      credentials: { username: 'user2345678901234567', password: 'pass234567890123' },
      backingFlags: '',
      writeCache: 'on',
    });
    expect(text).toContain('    backing-store volumes/volume-11111111-2222-4333-8444-555555555555\n    bs-type rbd\n    bsopts "conf=/etc/ceph/ceph.conf;id=cinder"\n');
  });
});

describe('the RBD driver without a cluster', () => {
  it("reads rbd's own words out of its stderr, without progress meters and log lines", () => {
    const stderr = [
      '2026-12-03T15:36:06.532+0000 7fbb9d6f8380 -1 librbd::image::PreRemoveRequest: 0x55 check_image_watchers: image has watchers - not removing',
      'Removing image: 0% complete...failed.',
      'rbd: error: image still has watchers',
      'This means the image is still open or the client using it crashed.',
    ].join('\n');
    expect(toolErrorText(stderr)).toBe('rbd: error: image still has watchers');
    expect(toolErrorText('\nsomething else went wrong\n')).toBe('something else went wrong');
  });

  it("names images after volume ids only, and reads a clone's parent as Cinder's _get_clone_info", () => {
    const id = '11111111-2222-4333-8444-555555555555';
    expect(volumeImage(id)).toBe(`volume-${id}`);
    expect(() => volumeImage('--key=x')).toThrow(/^volume id .* is not a uuid/);
    expect(volumeIdOf(`volume-${id}.deleted`)).toBe(id);
    expect(volumeIdOf('volume-foo')).toBeUndefined();
    const parent = { pool: 'volumes', image: 'volume-src', snapshot: `volume-${id}.clone_snap` };
    expect(cloneParent(`volume-${id}`, { name: `volume-${id}`, size: 1, parent })).toEqual({ image: 'volume-src', snapshot: parent.snapshot });
    expect(cloneParent(`volume-${id}.deleted`, { name: 'x', size: 1, parent })).toEqual({ image: 'volume-src', snapshot: parent.snapshot });
    // A volume made from a user snapshot is not a clone in Cinder's sense: it does not count towards the depth.
    expect(cloneParent(`volume-${id}`, { name: 'x', size: 1, parent: { ...parent, snapshot: 'snapshot-abc' } })).toBeUndefined();
  });
});
