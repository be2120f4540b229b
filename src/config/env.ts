import type { SecretRegistry } from '../secrets.js';
import { ConfigError } from './errors.js';

const ENV_REFERENCE = /\$\{env:([^}]*)\}/g;
const VALID_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Replaces `${env:NAME}` in every string of a parsed config. Each substituted value is a secret
 * (contract section 6): it is registered before anything can print it. A missing variable is an
 * error naming the variable, never a would-be value.
 */
export function substituteEnv(value: unknown, env: NodeJS.ProcessEnv, secrets: SecretRegistry, where = 'config'): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_REFERENCE, (_match, rawName: string) => {
      const name = rawName.trim();
      if (!VALID_NAME.test(name)) {
        throw new ConfigError(`${where}: "\${env:${rawName}}" is not a valid environment reference; use \${env:NAME} with NAME made of letters, digits and _`);
      }
      const found = env[name];
      if (found === undefined) {
        throw new ConfigError(`${where}: environment variable ${name} is not set (referenced as \${env:${name}})`);
      }
      secrets.register(found);
      return found;
    });
  }
  if (Array.isArray(value)) return value.map((item, index) => substituteEnv(item, env, secrets, `${where}[${index}]`));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) out[key] = substituteEnv(child, env, secrets, `${where}.${key}`);
    return out;
  }
  return value;
}
