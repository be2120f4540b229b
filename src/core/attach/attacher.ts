import { stat } from 'node:fs/promises';
import type { ConnectionInfo } from '../../../drivers/kit/types.js';

/** A volume attached on the server's own host: the block device `dd` reads and writes. */
export interface AttachedDevice {
  type: 'block';
  path: string;
}

/**
 * os-brick's connector, per driver_volume_type: attaches a connection on this host. Each says
 * first whether this host can attach at all, so a host that cannot is refused before any array
 * is touched.
 */
export interface HostAttacher {
  /** Why this host cannot attach this kind of connection (a missing kernel feature or command), or undefined. */
  cannotAttach(): Promise<string | undefined>;
  attach(info: ConnectionInfo): Promise<AttachedDevice>;
  /** Leaves nothing behind (also what a crash left); succeeds when already detached. */
  detach(info: ConnectionInfo, device: AttachedDevice | null): Promise<void>;
  /** After the volume grew: the attached device shows the new size. */
  resize?(info: ConnectionInfo, device: AttachedDevice): Promise<void>;
}

/** The attachers of a host, by driver_volume_type ('local', 'iscsi'). */
export type HostAttachers = Readonly<Record<string, HostAttacher>>;

/** Whether something is at `path` on this host (a kernel interface, a device node). */
export async function pathExists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
