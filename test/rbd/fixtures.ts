import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cephPrerequisites, CINDER_USER, type CephCluster } from './ceph-cluster.js';

/**
 * What the RBD suites share: their prerequisites (a real Ceph, tgt's rbd backing store), the
 * backend options that point the driver at the test cluster as client.cinder, and qemu-io over
 * `rbd:` URLs (librbd in user space: no kernel module here).
 */
export function rbdPrerequisites(): string | undefined {
  return cephPrerequisites() ?? (existsSync('/usr/lib/tgt/backing-store/bs_rbd.so') ? undefined : "needs tgt's rbd backing store (apt-get install tgt-rbd)");
}

/** The driver's options for the test cluster, cinderlib style: the restricted user, the conf, its keyring by path. */
export function rbdBackend(cluster: CephCluster, name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    volume_backend_name: name,
    volume_driver: 'cinder.volume.drivers.rbd.RBDDriver',
    rbd_pool: cluster.pool,
    rbd_user: CINDER_USER,
    rbd_ceph_conf: cluster.conf,
    rbd_keyring_conf: cluster.cinderKeyring,
    ...extra,
  };
}

/** Writes `length` bytes of `pattern` at `offset` of an image through librbd (qemu-io, as client.cinder). */
export function writeRbd(cluster: CephCluster, image: string, offset: number, length: number, pattern: number): void {
  const result = spawnSync('qemu-io', ['-f', 'raw', '-c', `write -P ${pattern} ${offset} ${length}`, cluster.qemuUrl(image)], { encoding: 'utf8', timeout: 60_000 });
  if (result.status !== 0 || !/wrote \d+\/\d+ bytes/.test(result.stdout)) throw new Error(`qemu-io write to ${image} failed: ${result.stdout}${result.stderr}`);
}

/** Whether `length` bytes at `offset` of an image (or image@snap) all hold `pattern`, read through librbd. */
export function holdsPattern(cluster: CephCluster, image: string, offset: number, length: number, pattern: number): boolean {
  const result = spawnSync('qemu-io', ['-r', '-f', 'raw', '-c', `read -P ${pattern} ${offset} ${length}`, cluster.qemuUrl(image)], { encoding: 'utf8', timeout: 60_000 });
  if (result.status !== 0) throw new Error(`qemu-io read of ${image} failed: ${result.stdout}${result.stderr}`);
  return /^read \d+\/\d+ bytes/m.test(result.stdout) && !/Pattern verification failed/.test(result.stdout);
}

/** The pool's images and snapshots as client.admin sees them. */
export function poolListing(cluster: CephCluster): Array<{ image: string; size: number; snapshot?: string; protected?: string }> {
  return JSON.parse(cluster.rbd('ls', '-l', '--format', 'json', cluster.pool)) as Array<{ image: string; size: number; snapshot?: string; protected?: string }>;
}

export function imageInfo(cluster: CephCluster, spec: string): { size: number; parent?: { pool: string; image: string; snapshot: string } } | undefined {
  const result = spawnSync('rbd', ['-c', cluster.conf, '--id', 'admin', 'info', '--format', 'json', `${cluster.pool}/${spec}`], { encoding: 'utf8' });
  if (result.status === 2) return undefined;
  if (result.status !== 0) throw new Error(`rbd info ${spec}: ${result.stderr}`);
  return JSON.parse(result.stdout) as { size: number; parent?: { pool: string; image: string; snapshot: string } };
}
