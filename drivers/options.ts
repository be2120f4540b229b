import { z } from 'zod';

/**
 * Builders for driver option schemas. Each records what it expects, its Cinder default and a
 * help line, so config errors can say "expected ..." and the README reference is generated from
 * the same source. Strings from the environment (`${env:...}`) are coerced to numbers/booleans,
 * as oslo.config does for Cinder.
 */
export interface OptionInfo {
  /** What a valid value looks like, e.g. "an integer from 1 to 65535". */
  expected: string;
  /** One line for the config reference. */
  help: string;
  default?: unknown;
  /** How the default reads in documentation when it depends on the machine. */
  defaultText?: string;
  required?: boolean;
}

export const optionInfo = new WeakMap<z.ZodType, OptionInfo>();

function describeOption<T extends z.ZodType>(schema: T, info: OptionInfo): T {
  optionInfo.set(schema, info);
  return schema;
}

const TRUE_WORDS = new Set(['true', 'yes', 'on', '1']);
const FALSE_WORDS = new Set(['false', 'no', 'off', '0']);

function coerceNumber(value: unknown): unknown {
  if (typeof value === 'string' && /^\s*-?(\d+\.?\d*|\.\d+)\s*$/.test(value)) return Number(value);
  return value;
}

function coerceBoolean(value: unknown): unknown {
  if (typeof value === 'string') {
    const word = value.trim().toLowerCase();
    if (TRUE_WORDS.has(word)) return true;
    if (FALSE_WORDS.has(word)) return false;
  }
  return value;
}

interface Common<T> {
  default?: T;
  defaultText?: string;
  required?: boolean;
}

function finish<T extends z.ZodType>(schema: T, info: OptionInfo, opts: Common<unknown>): z.ZodType {
  let out: z.ZodType = schema;
  if (opts.default !== undefined) out = (schema as z.ZodType).default(opts.default as never);
  else if (!opts.required) out = (schema as z.ZodType).optional();
  return describeOption(out, { ...info, default: opts.default, defaultText: opts.defaultText, required: opts.required });
}

export function stringOption(help: string, opts: Common<string> & { pattern?: RegExp; patternHelp?: string } = {}) {
  const expected = opts.patternHelp ?? 'a non-empty string';
  let schema = z.string({ error: expected }).min(1, { error: expected });
  if (opts.pattern) schema = schema.regex(opts.pattern, { error: expected });
  return finish(schema, { expected, help }, opts) as z.ZodType<string | undefined>;
}

/** A string that may be empty (e.g. root_helper: '' means "run directly"). */
export function textOption(help: string, opts: Common<string> = {}) {
  const expected = 'a string';
  return finish(z.string({ error: expected }), { expected, help }, opts) as z.ZodType<string | undefined>;
}

export function intOption(help: string, opts: Common<number> & { min?: number; max?: number } = {}) {
  const expected = rangeText('an integer', opts.min, opts.max);
  let inner = z.number({ error: expected }).int({ error: expected });
  if (opts.min !== undefined) inner = inner.min(opts.min, { error: expected });
  if (opts.max !== undefined) inner = inner.max(opts.max, { error: expected });
  return finish(z.preprocess(coerceNumber, inner), { expected, help }, opts) as z.ZodType<number | undefined>;
}

export function floatOption(help: string, opts: Common<number> & { min?: number; max?: number } = {}) {
  const expected = rangeText('a number', opts.min, opts.max);
  let inner = z.number({ error: expected });
  if (opts.min !== undefined) inner = inner.min(opts.min, { error: expected });
  if (opts.max !== undefined) inner = inner.max(opts.max, { error: expected });
  return finish(z.preprocess(coerceNumber, inner), { expected, help }, opts) as z.ZodType<number | undefined>;
}

export function boolOption(help: string, opts: Common<boolean> = {}) {
  const expected = 'true or false';
  return finish(z.preprocess(coerceBoolean, z.boolean({ error: expected })), { expected, help }, opts) as z.ZodType<
    boolean | undefined
  >;
}

export function enumOption<const V extends readonly [string, ...string[]]>(help: string, values: V, opts: Common<V[number]> = {}) {
  const expected = `one of ${values.map((v) => `"${v}"`).join(', ')}`;
  return finish(z.enum(values, { error: expected }), { expected, help }, opts) as z.ZodType<V[number] | undefined>;
}

function rangeText(kind: string, min?: number, max?: number): string {
  if (min !== undefined && max !== undefined) return `${kind} from ${min} to ${max}`;
  if (min !== undefined) return `${kind} of at least ${min}`;
  if (max !== undefined) return `${kind} of at most ${max}`;
  return kind;
}

/** Cinder's common capacity options (cinder/volume/driver.py), shared by every driver. */
export const capacityOptions = {
  reserved_percentage: intOption('Percentage of backend capacity kept free (Cinder reserved_percentage).', {
    default: 0,
    min: 0,
    max: 100,
  }),
  max_over_subscription_ratio: floatOption(
    'Thin provisioning: how many times the real capacity may be promised to volumes.',
    { default: 20.0, min: 1 },
  ),
};

/** Cinder's SAN options (cinder/volume/drivers/san/san.py) for drivers reached over the network. */
export const sanOptions = {
  san_ip: stringOption('Address of the array or host, optionally host:port.'),
  san_login: stringOption('User name on the array or host.', { default: 'admin' }),
  san_password: textOption('Password on the array or host.', { default: '' }),
  san_private_key: stringOption('Path of an SSH private key file used instead of a password.'),
  san_ssh_port: intOption('SSH port of the host.', { default: 22, min: 1, max: 65535 }),
  ssh_conn_timeout: intOption('SSH connection timeout in seconds.', { default: 30, min: 1 }),
  ssh_min_pool_conn: intOption('Minimum SSH connections kept in the pool.', { default: 1, min: 1 }),
  ssh_max_pool_conn: intOption('Maximum SSH connections in the pool.', { default: 5, min: 1 }),
};

/**
 * TLS options of Cinder's REST drivers. Cinder defaults verification to off; we verify by
 * default and say which option turns it off when a certificate is refused.
 */
export const tlsOptions = {
  driver_ssl_cert_verify: boolOption('Verify the array\'s TLS certificate (on by default here, unlike Cinder).', {
    default: true,
  }),
  driver_ssl_cert_path: stringOption('Path of a CA bundle (PEM) used to verify the array\'s certificate.'),
};
