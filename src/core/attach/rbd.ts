import { StorageError } from '../../base/errors.js';
import { pathExists, type AttachedDevice, type HostAttacher } from './attacher.js';

/** The kernel's rbd client (krbd) and the nbd module rbd-nbd needs: what os-brick's RBDConnector maps images with. */
const KRBD = '/sys/bus/rbd';
const NBD = '/sys/module/nbd';

/**
 * os-brick's RBDConnector for `rbd` connections (contract section 13): a host maps an image with
 * krbd or rbd-nbd. Mapping is not built here; the attacher says why a host cannot attach, naming
 * what it lacks, so attach_volume is refused before anything is touched.
 */
export class RbdAttacher implements HostAttacher {
  async cannotAttach(): Promise<string | undefined> {
    const [krbd, nbd] = await Promise.all([pathExists(KRBD), pathExists(NBD)]);
    const missing = [krbd ? '' : `the kernel's rbd module (${KRBD} is missing)`, nbd ? '' : `the nbd module rbd-nbd needs (${NBD} is missing)`].filter(Boolean);
    const where = 'attach it on a host with a Ceph client instead: connect_volume gives its monitors, pool and image (qemu and libvirt open rbd: URLs directly)';
    if (missing.length > 0) return `this host cannot map rbd images: it has neither ${missing.join(' nor ')}; ${where}`;
    return `mapping rbd images on this host (os-brick's RBDConnector, krbd or rbd-nbd) is not built in this server; ${where}`;
  }

  attach(): Promise<AttachedDevice> {
    return Promise.reject(new StorageError('UNSUPPORTED', 'mapping rbd images on this host is not built in this server'));
  }

  /** Nothing was ever mapped here. */
  async detach(): Promise<void> {}
}
