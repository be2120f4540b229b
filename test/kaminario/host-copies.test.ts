import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionInfo } from '../../drivers/kit/types.js';
import type { HostAttacher } from '../../src/core/attach/attacher.js';
import { Backend } from '../../src/core/backend.js';
import { CapacityLedger } from '../../src/core/capacity-ledger.js';
import { KeyedMutex } from '../../src/base/locks.js';
import { createLogger } from '../../src/base/log.js';
import { MemoryVolumeStore } from '../../src/store/memory.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { K2Emulator } from '../emulators/kaminario/server.js';
import { readAt, sparseFile, writeAt } from '../helpers/image-files.js';

/**
 * K2's copies through the server's host, through the core's own host access (src/connections.ts
 * hostAccess: the driver's export to this host's connector, the host's attacher, then
 * terminate_connection and remove_export), as a server on a host with a kernel iSCSI initiator
 * would run them. The attacher is the one stand-in: where open-iscsi would log in to the portal
 * and find the LUN's device, it finds what the emulator mapped at that LUN for this host and hands
 * out a file holding that array volume's bytes. Everything else is the real Backend, lifecycle,
 * driver and dd.
 */
const PASSWORD = 'k2-Host-copies-5821';
const k2 = new K2Emulator({ password: PASSWORD });
const GIB = 1024 ** 3;
const MIB = 1024 ** 2;
const THIS_HOST = { host: 'core-host', initiator: 'iqn.1994-05.com.example:core-host', multipath: false };
let dir: string;

const table = (name: string) => [...k2.objects.get(name)!.values()];
const refOf = (value: unknown) => (value as { ref: string }).ref;
const imagePath = (arrayName: string) => join(dir, arrayName);

/** Finds the array volume at the connection's LUN for this host, as a device node would be found. */
class EmulatedIscsiAttacher implements HostAttacher {
  readonly attached = new Set<string>();

  async cannotAttach() {
    return undefined;
  }

  async attach(info: ConnectionInfo) {
    expect(info.driver_volume_type).toBe('iscsi');
    expect(info.data.target_iqn).toBe(k2.targetIqn);
    const host = table('hosts').find((candidate) => candidate.name === THIS_HOST.host)!;
    const mapping = table('mappings').find((candidate) => refOf(candidate.host) === `/hosts/${host.id}` && candidate.lun === info.data.target_lun)!;
    const mapped = k2.resolve(refOf(mapping.volume))!;
    // A view (a volsnap of a cview- snapshot) shows its source snapshot's bytes: the test keeps them in a file named after that snapshot.
    const name = mapped.resource === 'volumes' ? String(mapped.object.name) : String(k2.resolve(refOf(k2.resolve(refOf(mapped.object.snapshot))!.object.source))!.object.short_name);
    const path = imagePath(name);
    if (!existsSync(path)) sparseFile(path, GIB);
    this.attached.add(path);
    return { type: 'block' as const, path };
  }

  async detach(_info: ConnectionInfo, device: { path: string } | null) {
    if (device) this.attached.delete(device.path);
  }
}

beforeAll(async () => {
  await k2.start();
  dir = mkdtempSync(join(tmpdir(), 'k2-host-copies-'));
});
afterAll(async () => {
  await k2.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe("K2 copies through the server's host (the core's host access)", () => {
  it("makes a volume from a snapshot and a clone holding the source's bytes, leaving no mapping, host or attachment behind", async () => {
    const attacher = new EmulatedIscsiAttacher();
    const store = new MemoryVolumeStore();
    const backend = new Backend(
      { name: 'k2', options: k2.cinderBackend('k2') },
      {
        store,
        secrets: new SecretRegistry(),
        log: createLogger('test'),
        dataDir: dir,
        rootHelper: '',
        outputAllBackendInfo: false,
        volumeLocks: new KeyedMutex(),
        capacity: new CapacityLedger(),
        serverId: 'host-copies',
        leaseMs: 30_000,
        serving: true,
        attachers: { iscsi: attacher },
        ownConnector: async () => THIS_HOST,
      },
    );
    await backend.initialize();
    expect(backend.initialized, backend.error).toBe(true);
    try {
      const source = await backend.lifecycle.createVolume({ size: 1, name: 'source' });
      const sourceImage = imagePath(`cv-${source.id}`);
      sparseFile(sourceImage, GIB);
      const known = [randomBytes(64 * 1024), randomBytes(64 * 1024)];
      writeAt(sourceImage, 0, known[0]);
      writeAt(sourceImage, 700 * MIB, known[1]);

      const snapshot = await backend.lifecycle.createSnapshot(source.id, { name: 'point' });
      // The snapshot's bytes are the source's at this moment; then the source changes.
      const snapshotName = String(table('snapshots').find((candidate) => String(candidate.short_name).includes(snapshot.id))!.short_name);
      execFileSync('cp', ['--sparse=always', sourceImage, imagePath(snapshotName)]);
      writeAt(sourceImage, 0, Buffer.alloc(known[0].length, 0xee));
      const fromSnapshot = await backend.lifecycle.createVolume({ snapshot_id: snapshot.id });
      expect(fromSnapshot.status).toBe('available');
      const restored = imagePath(`cv-${fromSnapshot.id}`);
      expect(readAt(restored, 0, known[0].length).equals(known[0])).toBe(true);
      expect(readAt(restored, 700 * MIB, known[1].length).equals(known[1])).toBe(true);

      const clone = await backend.lifecycle.createVolume({ source_volume_id: source.id });
      expect(clone.status).toBe('available');
      const cloned = imagePath(`cv-${clone.id}`);
      expect(readAt(cloned, 0, known[0].length).equals(Buffer.alloc(known[0].length, 0xee))).toBe(true);
      expect(readAt(cloned, 700 * MIB, known[1].length).equals(known[1])).toBe(true);

      // Everything the copies exported to this host was taken back, and nothing stays attached.
      expect(table('mappings')).toEqual([]);
      expect(table('hosts')).toEqual([]);
      expect(attacher.attached.size).toBe(0);
      expect(await store.connections.all({ volume_id: source.id })).toEqual([]);
    } finally {
      await backend.close();
    }
  });
});
