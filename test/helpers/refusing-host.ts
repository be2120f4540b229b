import type { HostAccess } from '../../drivers/kit/types.js';
import { StorageError } from '../../src/base/errors.js';

/** A host that attaches nothing, saying why: for drivers built outside a server (tests of one driver). */
export function refusingHost(reason: string): HostAccess {
  return {
    cannotAttach: async () => reason,
    attach: async () => {
      throw new StorageError('UNSUPPORTED', reason);
    },
  };
}
