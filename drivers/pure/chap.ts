import { createHmac } from 'node:crypto';

/**
 * The CHAP password of an initiator. Cinder generates one at random (volume_utils.generate_password:
 * 16 characters, at least one digit, upper- and lower-case letter, no look-alikes) and keeps it per
 * initiator in its database (driver_initiator_data), so every volume connected to the same host
 * gets the same one. Here the same kind of password is derived from the API token and the IQN
 * (HMAC-SHA256): every server that shares the array and its token gives an initiator the same
 * password, and no new secret is kept anywhere. It is a secret all the same (callers register it).
 */
const GROUPS = ['23456789', 'ABCDEFGHJKLMNPQRSTUVWXYZ', 'abcdefghijkmnopqrstuvwxyz'] as const;
const ALL = GROUPS.join('');
export const CHAP_PASSWORD_LENGTH = 16;

export function initiatorChapPassword(apiToken: string, iqn: string): string {
  const stream = byteStream(apiToken, iqn);
  /** An unbiased index below `size` (rejection sampling over bytes). */
  const below = (size: number): number => {
    const limit = 256 - (256 % size);
    for (;;) {
      const byte = stream();
      if (byte < limit) return byte % size;
    }
  };
  const chosen = GROUPS.map((group) => group[below(group.length)]);
  while (chosen.length < CHAP_PASSWORD_LENGTH) chosen.push(ALL[below(ALL.length)]);
  for (let i = chosen.length - 1; i > 0; i--) {
    const j = below(i + 1);
    [chosen[i], chosen[j]] = [chosen[j], chosen[i]];
  }
  return chosen.join('');
}

/** HMAC-SHA256(apiToken, purpose | iqn | counter), block after block. */
function byteStream(key: string, iqn: string): () => number {
  let block = Buffer.alloc(0);
  let offset = 0;
  let counter = 0;
  return () => {
    if (offset >= block.length) {
      block = createHmac('sha256', key).update(`cinderlib-mcp pure chap\0${iqn}\0${counter++}`).digest();
      offset = 0;
    }
    return block[offset++];
  };
}
