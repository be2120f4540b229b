import { isIPv4, isIPv6 } from 'node:net';
import { domainToASCII } from 'node:url';
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
  /** Cinder's oslo.config type, where the schema (stricter, or shaped otherwise) would list another. */
  oslo?: OsloTypeOverride;
  /** The default as Cinder's listing gives it, where the parsed value differs ('20.0' for 20, '$my_ip'). */
  listedDefault?: unknown;
  /**
   * Set for an option Cinder's driver does not have, or whose default here deliberately differs
   * from Cinder's: why, in a few words. list_supported_drivers marks such options as this project's.
   */
  ours?: string;
  /** Cinder's help text for each choice of a string option with choices, when Cinder gives one. */
  choiceHelp?: Readonly<Record<string, string>>;
}

/**
 * Cinder's declaration of an option where a zod schema cannot say it: oslo.config's Integer without
 * the bounds this project checks, its Port, ListOpt and DictOpt.
 */
export type OsloTypeOverride = { kind: 'Integer'; min?: number; max?: number } | { kind: 'Port' } | { kind: 'List' } | { kind: 'Dict' } | { kind: 'String'; regex?: string };

export const optionInfo = new WeakMap<z.core.$ZodType, OptionInfo>();

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
  oslo?: OsloTypeOverride;
  listedDefault?: unknown;
  ours?: string;
}

/**
 * The schema an option builder returns for the settings it was given: with a default the value
 * is always there (`T`), `required: true` makes it `T` too (missing is a config error), otherwise
 * it is `T | undefined`. A driver's option type is then `DriverOptions<typeof options>`.
 */
export type OptionSchema<S extends z.ZodType, O> = O extends { default: NonNullable<unknown> | null } ? z.ZodDefault<S> : O extends { required: true } ? S : z.ZodOptional<S>;

/** Wraps `schema` as `opts` says (default, required or optional) and records its OptionInfo. */
function finish<S extends z.ZodType, O extends Common<z.output<S>>>(schema: S, info: OptionInfo, opts: O | undefined): OptionSchema<S, O>;
function finish(schema: z.ZodType, info: OptionInfo, opts: Common<unknown> = {}): z.ZodType {
  let out = schema;
  if (opts.default !== undefined) out = schema.default(opts.default);
  else if (!opts.required) out = schema.optional();
  const { default: value, defaultText, required, oslo, listedDefault, ours } = opts;
  optionInfo.set(out, { ...info, default: value, defaultText, required, oslo: oslo ?? info.oslo, listedDefault, ours });
  return out;
}

function stringSchema(expected: string, pattern?: RegExp) {
  const schema = z.string({ error: expected }).min(1, { error: expected });
  return pattern ? schema.regex(pattern, { error: expected }) : schema;
}

export function stringOption<const O extends Common<string> & { pattern?: RegExp; patternHelp?: string; check?: (value: string) => boolean } = Record<never, never>>(
  help: string,
  opts?: O,
) {
  const expected = opts?.patternHelp ?? 'a non-empty string';
  const schema = stringSchema(expected, opts?.pattern);
  const check = opts?.check;
  return finish(check ? schema.refine(check, { error: expected }) : schema, { expected, help }, opts);
}

/** A string that may be empty (e.g. root_helper: '' means "run directly"). */
export function textOption<const O extends Common<string> = Record<never, never>>(help: string, opts?: O) {
  const expected = 'a string';
  return finish(z.string({ error: expected }), { expected, help }, opts);
}

function numberSchema(expected: string, integer: boolean, min?: number, max?: number) {
  let inner = z.number({ error: expected });
  if (integer) inner = inner.int({ error: expected });
  if (min !== undefined) inner = inner.min(min, { error: expected });
  if (max !== undefined) inner = inner.max(max, { error: expected });
  return z.preprocess(coerceNumber, inner);
}

export function intOption<const O extends Common<number> & { min?: number; max?: number } = Record<never, never>>(help: string, opts?: O) {
  const expected = rangeText('an integer', opts?.min, opts?.max);
  return finish(numberSchema(expected, true, opts?.min, opts?.max), { expected, help }, opts);
}

export function floatOption<const O extends Common<number> & { min?: number; max?: number } = Record<never, never>>(help: string, opts?: O) {
  const expected = rangeText('a number', opts?.min, opts?.max);
  return finish(numberSchema(expected, false, opts?.min, opts?.max), { expected, help }, opts);
}

export function boolOption<const O extends Common<boolean> = Record<never, never>>(help: string, opts?: O) {
  const expected = 'true or false';
  return finish(z.preprocess(coerceBoolean, z.boolean({ error: expected })), { expected, help }, opts);
}

export function enumOption<
  const V extends readonly [string, ...string[]],
  const O extends Common<V[number]> & { choiceHelp?: Readonly<Record<V[number], string>> } = Record<never, never>,
>(help: string, values: V, opts?: O) {
  const expected = `one of ${values.map((v) => `"${v}"`).join(', ')}`;
  return finish(z.enum(values, { error: expected }), { expected, help, choiceHelp: opts?.choiceHelp }, opts);
}

/** The items of a comma-separated string (cinder.conf's way of writing a list): trimmed, none empty. */
export function listItems(value: string): string[] {
  return value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

/**
 * oslo.config's ListOpt: a list of strings, written as a YAML list or as one comma-separated
 * string as cinder.conf writes it; each item trimmed, empty ones dropped, each checked by `check`.
 */
export function listOption<const O extends Common<string[]> & { check?: (item: string) => boolean; itemHelp?: string } = Record<never, never>>(help: string, opts?: O) {
  const expected = `a list of ${opts?.itemHelp ?? 'strings'}, or one comma-separated string of them`;
  const check = opts?.check ?? (() => true);
  const items = (value: unknown): unknown => {
    if (typeof value === 'string') return listItems(value);
    return Array.isArray(value) && value.every((item) => typeof item === 'string') ? listItems(value.join(',')) : value;
  };
  const schema = z.preprocess(
    items,
    z.array(z.string(), { error: expected }).refine((list) => list.every(check), { error: expected }),
  );
  return finish(schema, { expected, help, oslo: { kind: 'List' } }, opts);
}

/** oslo.config's DictOpt: `key:value` pairs, as a YAML mapping or cinder.conf's `k1:v1,k2:v2`. */
export function dictOption<const O extends Common<Record<string, string>> = Record<never, never>>(help: string, opts?: O) {
  const expected = 'a mapping of names to strings, or "key:value,key:value"';
  const pairs = (value: unknown): unknown => {
    if (typeof value !== 'string') return value;
    const entries = listItems(value).map((pair) => {
      const colon = pair.indexOf(':');
      return colon < 0 ? [pair, ''] : [pair.slice(0, colon).trim(), pair.slice(colon + 1).trim()];
    });
    return Object.fromEntries(entries);
  };
  return finish(z.preprocess(pairs, z.record(z.string(), z.string(), { error: expected })), { expected, help, oslo: { kind: 'Dict' } }, opts);
}

/** Cinder's max_over_subscription_ratio: a number of at least 1, or "auto" (computed from the pool's use, as Cinder does). */
export type OverSubscriptionRatio = number | 'auto';

/**
 * Cinder declares the ratio a string matching `^(auto|\d*\.\d+|\d+)$`, default '20.0': here the
 * value is "auto" or the number.
 */
export function ratioOption<const O extends Common<OverSubscriptionRatio> = Record<never, never>>(help: string, opts?: O) {
  const expected = 'a number of at least 1 (such as 20 or 1.5), or "auto"';
  const schema = z.preprocess(
    (value) => (typeof value === 'string' && value.trim().toLowerCase() === 'auto' ? 'auto' : coerceNumber(value)),
    z.union([z.literal('auto'), z.number().min(1)], { error: expected }),
  );
  return finish(schema, { expected, help, oslo: { kind: 'String', regex: '^(auto|\\d*\\.\\d+|\\d+)$' } }, opts);
}

function rangeText(kind: string, min?: number, max?: number): string {
  if (min !== undefined && max !== undefined) return `${kind} from ${min} to ${max}`;
  if (min !== undefined) return `${kind} of at least ${min}`;
  if (max !== undefined) return `${kind} of at most ${max}`;
  return kind;
}

/** What san_ip accepts, for messages (config errors, a REST driver given a bad address). */
export const SAN_IP_FORMS =
  'a host name or IP address, optionally with a port: host, host:port, 10.0.0.1, 10.0.0.1:8443, fe80::1 or [fe80::1]:8443 ' +
  '(port 1 to 65535; no scheme such as https:// and no path)';

export interface SanAddress {
  /** A host name, an IPv4 address or an IPv6 address (without brackets). */
  host: string;
  port?: number;
}

const HOST_LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** A DNS name (internationalized names as their punycode shows it), or a dotted-quad IPv4 address. */
function isHostName(host: string): boolean {
  if (isIPv4(host)) return true;
  // Letters (any script), digits, dots, hyphens, underscores: no path, query, user or space.
  if (!/^[\p{L}\p{M}\p{N}._-]+$/u.test(host)) return false;
  const ascii = domainToASCII(host).replace(/\.$/, '');
  if (!ascii || ascii.length > 253) return false;
  const labels = ascii.split('.');
  // URL parsers read a name ending in a number as IPv4 (999.1.1.1, 10.1): only real ones pass.
  if (/^(\d+|0x[0-9a-f]*)$/.test(labels.at(-1)!)) return false;
  return labels.every((label) => HOST_LABEL.test(label));
}

function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/**
 * Reads san_ip the way Cinder's drivers use it (an SSH host, or the host[:port] of a REST URL):
 * undefined when it is none of SAN_IP_FORMS. The one parser for config validation, REST origins
 * and SSH targets.
 */
export function parseSanIp(value: string): SanAddress | undefined {
  const bracketed = /^\[([^\]]+)\](?::([^:]*))?$/.exec(value);
  if (bracketed) {
    if (!isIPv6(bracketed[1]) || bracketed[1].includes('%')) return undefined;
    if (bracketed[2] === undefined) return { host: bracketed[1] };
    const port = parsePort(bracketed[2]);
    return port === undefined ? undefined : { host: bracketed[1], port };
  }
  if (isIPv6(value)) return value.includes('%') ? undefined : { host: value };
  const [host, portText, ...rest] = value.split(':');
  if (rest.length > 0 || !host || !isHostName(host)) return undefined;
  if (portText === undefined) return { host };
  const port = parsePort(portText);
  return port === undefined ? undefined : { host, port };
}

/** Cinder's san_ip, checked at config time so a bad address is named before any connection attempt. */
export function sanIpOption<const O extends Common<string> = Record<never, never>>(help: string, opts?: O) {
  // Cinder's default is '' (not set): drivers that need an address say so when they start.
  const schema = z.string({ error: SAN_IP_FORMS }).refine((value) => value === '' || parseSanIp(value) !== undefined, { error: SAN_IP_FORMS });
  return finish(schema, { expected: SAN_IP_FORMS, help }, opts);
}

/**
 * The same options marked as this project's for one driver (list_supported_drivers and the README
 * say why): shared option groups such as the target options are Cinder's for LVM, ours for RBD.
 */
export function markedOurs<T extends Record<string, z.ZodType>>(options: T, why: string): T {
  const out: Record<string, z.ZodType> = {};
  for (const [name, schema] of Object.entries(options)) {
    const copy = schema.clone();
    optionInfo.set(copy, { ...optionInfo.get(schema)!, ours: why });
    out[name] = copy;
  }
  return out as T;
}

/**
 * Cinder's common capacity options (cinder/volume/driver.py), read by every driver. `ours` marks
 * them for a driver whose Cinder listing leaves them out.
 */
export function capacityOptionSet(ours?: string) {
  return {
    reserved_percentage: intOption('Percentage of backend capacity kept free (Cinder reserved_percentage).', { default: 0, min: 0, max: 100, ours }),
    max_over_subscription_ratio: ratioOption(
      'Thin provisioning: how many times the real capacity may be promised to volumes; "auto" computes it from what is provisioned and used, as Cinder does.',
      { default: 20, listedDefault: '20.0', ours },
    ),
  };
}

export const capacityOptions = capacityOptionSet();

/**
 * Cinder's SAN options (cinder/volume/drivers/san/san.py) for drivers reached over the network.
 * `ours` marks them for a driver whose Cinder release does not read them (LVM on another host).
 */
export function sanOptionSet(ours?: string) {
  return {
    san_ip: sanIpOption('Address of the array or host, optionally host:port.', { ours }),
    san_login: stringOption('User name on the array or host.', { default: 'admin', ours }),
    san_password: textOption('Password on the array or host.', { default: '', ours }),
    san_private_key: stringOption('Path of an SSH private key file used instead of a password.', { ours }),
    san_ssh_port: intOption('SSH port of the host.', { default: 22, min: 1, max: 65535, ours }),
    ssh_conn_timeout: intOption('SSH connection timeout in seconds.', { default: 30, min: 1, ours }),
    ssh_min_pool_conn: intOption('Minimum SSH connections kept in the pool.', { default: 1, min: 1, ours }),
    ssh_max_pool_conn: intOption('Maximum SSH connections in the pool.', { default: 5, min: 1, ours }),
  };
}

export const sanOptions = sanOptionSet();

/**
 * Cinder's common iSCSI CHAP options (cinder/volume/driver.py iscsi_opts), which cinder_to_yaml keeps
 * for every backend. `ours` says what they do for a driver whose Cinder listing leaves them out.
 */
export function chapOptionSet(ours: string) {
  return {
    use_chap_auth: boolOption('Cinder: use CHAP authentication for iSCSI targets.', { default: false, ours }),
    chap_username: textOption('Cinder: CHAP user name.', { default: '', ours }),
    chap_password: textOption('Cinder: password for the CHAP user name.', { default: '', ours }),
  };
}

/**
 * TLS options of Cinder's REST drivers. Cinder defaults verification to off; we verify by
 * default and say which option turns it off when a certificate is refused. `ours` marks both for a
 * driver whose Cinder release has no such options.
 */
export function tlsOptionSet(ours?: string) {
  return {
    driver_ssl_cert_verify: boolOption("Verify the array's TLS certificate (on by default here, unlike Cinder).", {
      default: true,
      ours: ours ?? "Cinder's default is false: certificates are verified here unless this is set to false",
    }),
    driver_ssl_cert_path: stringOption("Path of a CA bundle (PEM) used to verify the array's certificate.", { ours }),
  };
}

export const tlsOptions = tlsOptionSet();
