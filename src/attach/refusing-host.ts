import type { HostAccess } from '../../drivers/types.js';
import { StorageError } from '../errors.js';

/** A host that attaches nothing, saying why: `cinderlib-mcp check`, and drivers built outside a server (tests of one driver). */
export function refusingHost(reason: string): HostAccess {
  return {
    cannotAttach: async () => reason,
    attach: async () => {
      throw new StorageError('UNSUPPORTED', reason);
    },
  };
}
