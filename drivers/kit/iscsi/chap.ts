import { randomInt } from 'node:crypto';

/**
 * CHAP in one place: the secrets Cinder's targets and drivers generate, and the provider_auth
 * form they are recorded in.
 *
 * Cinder's generate_username / generate_password (volume_utils): symbols without the look-alikes
 * 0, 1, I, O and l, at least one from each group, shuffled. Usernames are 20 characters,
 * passwords 16.
 */
const SYMBOL_GROUPS = ['23456789', 'ABCDEFGHJKLMNPQRSTUVWXYZ', 'abcdefghijkmnopqrstuvwxyz'] as const;
const ALL_SYMBOLS = SYMBOL_GROUPS.join('');

export const CHAP_USERNAME_LENGTH = 20;
export const CHAP_PASSWORD_LENGTH = 16;

export function generateChapSecret(length: number): string {
  const chosen = SYMBOL_GROUPS.map((group) => group[randomInt(group.length)]).slice(0, length);
  while (chosen.length < length) chosen.push(ALL_SYMBOLS[randomInt(ALL_SYMBOLS.length)]);
  for (let i = chosen.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [chosen[i], chosen[j]] = [chosen[j], chosen[i]];
  }
  return chosen.join('');
}

/**
 * `length` distinct symbols of `symbols`, shuffled: Cinder's generate_password when its
 * symbolgroups is one string (each character a group of its own, each taken once), as the
 * XtremIO driver calls it with ascii_uppercase + digits and length 12.
 */
export function distinctSymbolsSecret(symbols: string, length: number): string {
  const chosen = [...symbols];
  for (let i = chosen.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [chosen[i], chosen[j]] = [chosen[j], chosen[i]];
  }
  return chosen.slice(0, length).join('');
}

export interface ChapCredentials {
  username: string;
  password: string;
}

export function generateChapCredentials(): ChapCredentials {
  return { username: generateChapSecret(CHAP_USERNAME_LENGTH), password: generateChapSecret(CHAP_PASSWORD_LENGTH) };
}

/** Cinder's provider_auth string: "CHAP <username> <password>". */
export function formatProviderAuth(credentials: ChapCredentials): string {
  return `CHAP ${credentials.username} ${credentials.password}`;
}

/** Each part of a provider_auth: printable ASCII without space or control characters (contract section 11). */
const CHAP_PART = /^[\x21-\x7e]+$/;

/**
 * Cinder's provider_auth read back, strictly: exactly "CHAP <user> <password>", single spaces, no
 * other part. Anything else is undefined, so a damaged value is never taken for credentials.
 */
export function parseProviderAuth(providerAuth: unknown): ChapCredentials | undefined {
  if (typeof providerAuth !== 'string') return undefined;
  const parts = providerAuth.split(' ');
  if (parts.length !== 3 || parts[0] !== 'CHAP') return undefined;
  const [, username, password] = parts as [string, string, string];
  return CHAP_PART.test(username) && CHAP_PART.test(password) ? { username, password } : undefined;
}

/** True when `value` is a provider_auth this server would have written ("CHAP <user> <password>"); null or empty means none recorded and is the caller's case. */
export function isValidProviderAuth(value: unknown): boolean {
  return parseProviderAuth(value) !== undefined;
}
