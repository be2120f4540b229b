import { z } from 'zod';
import { intOption, optionInfo } from '../../drivers/kit/options.js';
import type { DriverDefinition, DriverOptions } from '../../drivers/kit/types.js';
import { ConfigError } from './errors.js';
import type { BackendSpec } from './load.js';
import { MASK, isSecretKey, type SecretRegistry } from '../base/secrets.js';

/**
 * Options every backend has, owned by the core rather than by a driver. The two time options are
 * ours, not Cinder's: Cinder blocks its start-up on the array instead.
 */
export const CORE_OPTIONS = {
  backend_init_timeout: intOption(
    "Seconds an initialization attempt may take before the backend is reported not initialized (an array that accepts connections but never answers); 0 waits for the driver's own time-outs.",
    { default: 10, min: 0, max: 3600 },
  ),
  backend_init_retry_interval: intOption(
    'Seconds before a backend that failed to initialize is tried again on its next call; doubles after each failure, up to 300. get_stats with refresh: true retries at once.',
    { default: 5, min: 0, max: 300 },
  ),
};

export type CoreOptions = DriverOptions<typeof CORE_OPTIONS>;

export const CORE_OPTION_NAMES = new Set(['volume_backend_name', 'volume_driver', ...Object.keys(CORE_OPTIONS)]);

/** The core's own options of a backend, or the reason they are unusable (which disables that backend only). */
export function readCoreOptions(spec: BackendSpec, secrets: SecretRegistry): CoreOptions | { error: string } {
  const given = Object.fromEntries(
    Object.keys(CORE_OPTIONS)
      .filter((key) => key in spec.options)
      .map((key) => [key, spec.options[key]]),
  );
  const result = z.object(CORE_OPTIONS).safeParse(given);
  if (result.success) return result.data;
  return { error: `backend "${spec.name}": ${describeIssues(result.error.issues, CORE_OPTIONS, given, secrets, spec.options)}` };
}

/**
 * `raw` is the backend's options object as the config loader made it: the one whose `${env:}`
 * origins the registry recorded. A value that came from the environment is shown as the mask
 * whatever its length (contract section 6), not only where free-text redaction would catch it,
 * and not quoted, so that the mask's own length or quotes say nothing about the value.
 */
function describeIssues(issues: z.core.$ZodIssue[], shape: z.ZodRawShape, given: Record<string, unknown>, secrets: SecretRegistry, raw: Record<string, unknown>): string {
  const problems = issues.map((issue) => {
    const option = String(issue.path[0] ?? '?');
    const value = given[option];
    const info = optionInfo.get(shape[option]);
    const expected = info?.expected ?? issue.message;
    if (value === undefined) return `option "${option}" is required (${expected})`;
    const shown = isSecretKey(option) || isMasked(raw, option, secrets) ? MASK : secrets.redact(JSON.stringify(value));
    return `option "${option}" must be ${expected}, got ${shown}`;
  });
  return [...new Set(problems)].join('; ');
}

/**
 * Whether the config view would hide any part of `raw[key]`: a value (or a part of one) that came
 * from `${env:}`, recorded by origin on `raw` however short, or that holds a registered secret.
 * Such a value is quoted back as the mask alone.
 */
function isMasked(raw: Record<string, unknown>, key: string, secrets: SecretRegistry): boolean {
  if (!Object.hasOwn(raw, key)) return false;
  return JSON.stringify(secrets.maskOptions<Record<string, unknown>>(raw)[key]) !== JSON.stringify(raw[key]);
}

export interface ValidatedOptions<Options = Record<string, unknown>> {
  /** The driver's options as its schemas output them, with the backend's other options as given. */
  options: Options & Record<string, unknown>;
  /** Options the driver does not declare: kept (cinderlib is free-form) but worth a warning. */
  unknown: string[];
}

/**
 * Checks a backend's options against its driver's schema; an error names the backend, the option
 * and what was expected (with the offending value unless it is a secret).
 */
export function validateDriverOptions<Shape extends z.ZodRawShape>(
  backendName: string,
  definition: Pick<DriverDefinition<Shape>, 'options'>,
  raw: Record<string, unknown>,
  secrets: SecretRegistry,
): ValidatedOptions<DriverOptions<Shape>> {
  const driverOptions: Record<string, unknown> = {};
  const unknown: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (CORE_OPTION_NAMES.has(key)) continue;
    if (key in definition.options) driverOptions[key] = value;
    else unknown.push(key);
  }
  const result = z.object(definition.options).safeParse(driverOptions);
  if (!result.success) {
    throw new ConfigError(`backend "${backendName}": ${describeIssues(result.error.issues, definition.options, driverOptions, secrets, raw)}`);
  }
  return { options: { ...raw, ...result.data }, unknown };
}
