import { z } from 'zod';
import { optionInfo } from '../drivers/options.js';
import type { DriverDefinition } from '../drivers/types.js';
import { ConfigError } from './config/errors.js';
import { MASK, isSecretKey, type SecretRegistry } from './secrets.js';

/** Options every backend has, owned by the core rather than by a driver. */
export const CORE_OPTION_NAMES = new Set(['volume_backend_name', 'volume_driver']);

export interface ValidatedOptions {
  options: Record<string, unknown>;
  /** Options the driver does not declare: kept (cinderlib is free-form) but worth a warning. */
  unknown: string[];
}

/**
 * Checks a backend's options against its driver's schema; an error names the backend, the option
 * and what was expected (with the offending value unless it is a secret).
 */
export function validateDriverOptions(
  backendName: string,
  definition: DriverDefinition,
  raw: Record<string, unknown>,
  secrets: SecretRegistry,
): ValidatedOptions {
  const driverOptions: Record<string, unknown> = {};
  const unknown: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (CORE_OPTION_NAMES.has(key)) continue;
    if (key in definition.options) driverOptions[key] = value;
    else unknown.push(key);
  }
  const result = z.object(definition.options).safeParse(driverOptions);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const option = String(issue.path[0] ?? '?');
      const given = driverOptions[option];
      const info = optionInfo.get(definition.options[option] as z.ZodType);
      const expected = info?.expected ?? issue.message;
      if (given === undefined) return `option "${option}" is required (${expected})`;
      const shown = isSecretKey(option) ? MASK : secrets.redact(JSON.stringify(given));
      return `option "${option}" must be ${expected}, got ${shown}`;
    });
    throw new ConfigError(`backend "${backendName}": ${[...new Set(problems)].join('; ')}`);
  }
  return { options: { ...raw, ...result.data }, unknown };
}
