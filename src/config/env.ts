import { MASK, type SecretRegistry } from '../base/secrets.js';
import { ConfigError } from './errors.js';

const ENV_REFERENCE = /\$\{env:([^}]*)\}/g;
const VALID_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Replaces `${env:NAME}` in every string of a parsed config. Each substituted value is a secret
 * (contract section 6): it is registered for free-text redaction before anything can print it,
 * and the option holding it is marked as env-derived so that the config view masks it by origin,
 * however short the value. A missing variable is an error naming the variable, never a would-be
 * value.
 */
export function substituteEnv(value: unknown, env: NodeJS.ProcessEnv, secrets: SecretRegistry, where = 'config'): unknown {
  if (typeof value === 'string') return substituteString(value, env, secrets, where).text;
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    value.forEach((item, index) => out.push(substituteChild(out, String(index), item, env, secrets, `${where}[${index}]`)));
    return out;
  }
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) out[key] = substituteChild(out, key, child, env, secrets, `${where}.${key}`);
    return out;
  }
  return value;
}

function substituteChild(owner: object, key: string, child: unknown, env: NodeJS.ProcessEnv, secrets: SecretRegistry, where: string): unknown {
  if (typeof child !== 'string') return substituteEnv(child, env, secrets, where);
  const { text, masked } = substituteString(child, env, secrets, where);
  if (masked !== undefined) secrets.markEnvDerived(owner, key, masked);
  return text;
}

/**
 * `${env:}` inside a connection URL (contract section 10): each value is percent-encoded where
 * the URL needs it (a user name or password in the userinfo, a database name, a query value),
 * so a password holding `@`, `/` or `%` reaches the server as written. A value standing for the
 * scheme or the whole URL, or for the host or port, is inserted as it is.
 */
export function substituteEnvInUrl(value: string, env: NodeJS.ProcessEnv, secrets: SecretRegistry, where = 'config'): string {
  return substituteString(value, env, secrets, where, encodeForUrlPosition).text;
}

/** How a value substituted between `before` (the URL so far) and `after` (the rest of the template) must be written. */
function encodeForUrlPosition(found: string, before: string, after: string): string {
  const schemeEnd = before.indexOf('://');
  if (schemeEnd < 0) return found; // the scheme or the whole URL
  const authoritySoFar = before.slice(schemeEnd + 3);
  if (/[/?#]/.test(authoritySoFar)) return encodeURIComponent(found); // path, query or fragment
  if (authoritySoFar.includes('@')) return found; // host or port
  const restOfAuthority = after.split(/[/?#]/)[0];
  return restOfAuthority.includes('@') ? encodeURIComponent(found) : found; // userinfo, else host or port
}

/** `masked` is the string with each substitution shown as the mask; undefined when nothing was substituted. */
function substituteString(
  value: string,
  env: NodeJS.ProcessEnv,
  secrets: SecretRegistry,
  where: string,
  encode?: (found: string, before: string, after: string) => string,
): { text: string; masked?: string } {
  let text = '';
  let masked = '';
  let literalStart = 0;
  for (const match of value.matchAll(ENV_REFERENCE)) {
    const rawName = match[1];
    const name = rawName.trim();
    if (!VALID_NAME.test(name)) {
      throw new ConfigError(`${where}: "\${env:${rawName}}" is not a valid environment reference; use \${env:NAME} with NAME made of letters, digits and _`);
    }
    const found = env[name];
    if (found === undefined) {
      throw new ConfigError(`${where}: environment variable ${name} is not set (referenced as \${env:${name}})`);
    }
    secrets.register(found);
    const literal = value.slice(literalStart, match.index);
    const written = encode ? encode(found, text + literal, value.slice(match.index + match[0].length)) : found;
    if (written !== found) secrets.register(written);
    text += literal + written;
    masked += literal + MASK;
    literalStart = match.index + match[0].length;
  }
  if (literalStart === 0) return { text: value };
  const tail = value.slice(literalStart);
  return { text: text + tail, masked: masked + tail };
}
