import { hostname } from 'node:os';
import type { Connector } from '../../../drivers/kit/types.js';
import { thisHostAddress } from '../../../drivers/kit/targets/options.js';
import { LocalRunner } from '../../../drivers/kit/exec/local.js';
import { privilegedPrefix } from '../../../drivers/kit/exec/runner.js';
import type { HostAttachers } from './attacher.js';
import { LoopAttacher } from './loop.js';
import { OpenIscsiAttacher, initiatorName } from './open-iscsi.js';
import { RbdAttacher } from './rbd.js';

export type { AttachedDevice, HostAttacher, HostAttachers } from './attacher.js';

/** This host's attachers: loop devices for image files, open-iscsi for iSCSI, and what rbd needs (refused, naming it). */
export function hostAttachers(rootHelper: string): HostAttachers {
  const runner = new LocalRunner();
  const privileged = () => privilegedPrefix(runner, rootHelper);
  return { local: new LoopAttacher(runner, privileged), iscsi: new OpenIscsiAttacher(runner, privileged), rbd: new RbdAttacher() };
}

/** os-brick's get_connector_properties for the server's own host. */
export async function thisHostConnector(): Promise<Connector> {
  const initiator = await initiatorName();
  return {
    host: hostname(),
    ...(initiator ? { initiator } : {}),
    ip: thisHostAddress(),
    multipath: false,
    platform: process.arch === 'x64' ? 'x86_64' : process.arch,
    os_type: process.platform === 'linux' ? 'linux2' : process.platform,
  };
}
