/**
 * cinderlib's `Backend.list_supported_drivers(output_version)`, from this project's drivers: the
 * catalog's class paths, each driver definition's version and its option schemas (the same
 * source the config loader validates with and the README's option reference is rendered from),
 * so the listing cannot drift from what a backend accepts.
 *
 * The shape is cinderlib's: a dict keyed by class name, each value the fields of Cinder's
 * DriverInfo (cinder/interface/util.py) and each driver option the public attributes of an
 * oslo.config Opt. Output version 1 turns every option attribute into a string (Python's
 * `str()` of it); version 2 keeps their types and makes `type` a dict of the oslo.config type's
 * attributes plus `type_class`.
 */

import type { z } from 'zod';
import { DRIVER_CATALOG } from '../../drivers/catalog.js';
import { optionInfo, type OptionInfo, type OsloTypeOverride } from '../../drivers/kit/options.js';
import { isSecretKey } from '../base/secrets.js';

export type OutputVersion = 1 | 2;
export const OUTPUT_VERSIONS = [1, 2] as const;

/** The oslo.config type of an option, as version 2 gives it (`vars()` of the type object, plus `type_class`). */
export type OptionType =
  | {
      type_name: 'string value';
      ignore_case: false;
      quotes: null;
      max_length: 0;
      choices: Record<string, string | null> | null;
      lower_case_choices: null;
      regex: string | null;
      type_class: string;
    }
  | { type_name: 'integer value' | 'floating point value' | 'port value'; choices: null; min: number | null; max: number | null; num_type: 'int' | 'float'; type_class: string }
  | { type_name: 'boolean value'; type_class: string }
  | { type_name: 'list value'; item_type: 'String'; bounds: null; type_class: 'List of String' }
  | { type_name: 'dict value'; value_type: 'String'; bounds: false; type_class: 'Dict of String' };

/** An option as version 2 lists it: oslo.config's Opt attributes with their types. */
export interface TypedDriverOption {
  name: string;
  type: OptionType;
  dest: string;
  short: null;
  default: string | number | boolean | string[] | null;
  sample_default: string | null;
  positional: false;
  metavar: null;
  help: string;
  secret: boolean;
  required: boolean;
  deprecated_for_removal: false;
  deprecated_reason: null;
  deprecated_since: null;
  deprecated_opts: [];
  mutable: false;
  advanced: false;
}

/** An option as version 1 lists it: the same attributes, each as Python's str() writes it. */
export type StringDriverOption = { [K in keyof TypedDriverOption]: string };

/** Cinder's DriverInfo fields, as cinderlib returns them (only the options change between versions). */
export interface DriverInfo<Option = TypedDriverOption | StringDriverOption> {
  version: string;
  class_name: string;
  supported: boolean;
  ci_wiki_name: string | null;
  driver_options: Option[];
  class_fqn: string;
  desc: string;
}

/** cinderlib's test (test_list_supported_drivers) checks that every entry has exactly these keys. */
export const DRIVER_INFO_KEYS = ['version', 'class_name', 'supported', 'ci_wiki_name', 'driver_options', 'class_fqn', 'desc'] as const;

/** The public attributes of an oslo.config Opt, in the order its constructor sets them. */
export const OPTION_KEYS = [
  'name',
  'type',
  'dest',
  'short',
  'default',
  'sample_default',
  'positional',
  'metavar',
  'help',
  'secret',
  'required',
  'deprecated_for_removal',
  'deprecated_reason',
  'deprecated_since',
  'deprecated_opts',
  'mutable',
  'advanced',
] as const satisfies readonly (keyof TypedDriverOption)[];

/** The listing for one output version; the catalog's drivers load once per process. */
const listings = new Map<OutputVersion, Promise<Record<string, DriverInfo>>>();

export function listSupportedDrivers(outputVersion: 1): Promise<Record<string, DriverInfo<StringDriverOption>>>;
export function listSupportedDrivers(outputVersion: 2): Promise<Record<string, DriverInfo<TypedDriverOption>>>;
export function listSupportedDrivers(outputVersion?: OutputVersion): Promise<Record<string, DriverInfo>>;
export function listSupportedDrivers(outputVersion: OutputVersion = 1): Promise<Record<string, DriverInfo>> {
  // cinderlib: "Acceptable versions are 1 and 2" (the tool's input schema refuses others first).
  if (!OUTPUT_VERSIONS.includes(outputVersion)) return Promise.reject(new RangeError(`output_version must be 1 or 2, got ${String(outputVersion)}`));
  let listing = listings.get(outputVersion);
  if (!listing) {
    listing = buildListing(outputVersion);
    listings.set(outputVersion, listing);
    listing.catch(() => listings.delete(outputVersion));
  }
  return listing;
}

async function buildListing(outputVersion: OutputVersion): Promise<Record<string, DriverInfo>> {
  const result: Record<string, DriverInfo> = {};
  for (const entry of DRIVER_CATALOG) {
    const definition = await entry.load();
    const options = describeOptions(definition.options);
    for (const classFqn of entry.cinderPaths) {
      const className = classFqn.slice(classFqn.lastIndexOf('.') + 1);
      if (Object.hasOwn(result, className)) throw new Error(`driver class name ${className} is listed twice in drivers/catalog.ts`);
      result[className] = {
        version: definition.version ?? 'unknown',
        class_name: className,
        supported: true,
        // Cinder's CI_WIKI_NAME: the CI that tests the Cinder driver this one follows (none for this project's own).
        ci_wiki_name: definition.ciWikiName ?? null,
        driver_options: outputVersion === 2 ? options : options.map(asStrings),
        class_fqn: classFqn,
        desc: definition.classDescriptions?.[className] ?? definition.summary,
      };
    }
  }
  return result;
}

/**
 * The driver's own options, as Cinder's get_driver_options lists a driver's: its specific options
 * and the common ones it reads (SAN, target, capacity). Not the core's per-backend options
 * (src/driver-options.ts), which the core reads for every backend as Cinder's volume manager
 * reads its own, and which Cinder's drivers do not list either.
 */
export function describeOptions(shape: z.ZodRawShape): TypedDriverOption[] {
  return Object.entries(shape).map(([name, schema]) => describeOption(name, schema as z.ZodType));
}

function describeOption(name: string, schema: z.ZodType): TypedDriverOption {
  const info = optionInfo.get(schema);
  if (!info) throw new Error(`option ${name} was not built with drivers/options.ts, so it has no help or default to list`);
  const secret = isSecretKey(name);
  const listedDefault = info.listedDefault !== undefined ? info.listedDefault : info.default;
  return {
    name,
    type: info.oslo ? osloType(info.oslo) : optionType(schema, info),
    dest: name,
    short: null,
    // A secret's default is never shown (contract section 6); an empty one, as Cinder's san_password '', holds nothing.
    default: secret && listedDefault !== '' ? null : ((listedDefault ?? null) as TypedDriverOption['default']),
    // oslo.config's sample_default: how a default that depends on the machine reads in documentation.
    sample_default: secret ? null : (info.defaultText ?? null),
    positional: false,
    metavar: null,
    // Options that are not Cinder's, or whose default deliberately is not, say so where listings show text.
    help: info.ours ? `${info.help} [cinderlib-mcp: ${info.ours}]` : info.help,
    secret,
    required: info.required ?? false,
    deprecated_for_removal: false,
    deprecated_reason: null,
    deprecated_since: null,
    deprecated_opts: [],
    mutable: false,
    advanced: false,
  };
}

interface Check {
  check: string;
  value?: number;
  format?: string;
  pattern?: RegExp;
}

/** The zod schema under an option's default/optional wrapper and its coercing preprocess. */
function innerSchema(schema: z.ZodType): z.core.$ZodType {
  let node = schema as z.core.$ZodType;
  for (;;) {
    const def = node._zod.def as z.core.$ZodTypeDef & { innerType?: z.core.$ZodType; out?: z.core.$ZodType };
    if ((def.type === 'default' || def.type === 'optional') && def.innerType) node = def.innerType;
    else if (def.type === 'pipe' && def.out) node = def.out;
    else return node;
  }
}

function checksOf(node: z.core.$ZodType): Check[] {
  return (node._zod.def.checks ?? []).map((check) => check._zod.def as Check);
}

/** The type Cinder declares, where the schema alone would list another (see OsloTypeOverride). */
function osloType(override: OsloTypeOverride): OptionType {
  switch (override.kind) {
    case 'Integer':
      return numberType(true, override.min ?? null, override.max ?? null);
    case 'Port':
      return { type_name: 'port value', choices: null, min: 0, max: 65535, num_type: 'int', type_class: 'Port(min=0, max=65535)' };
    case 'List':
      return { type_name: 'list value', item_type: 'String', bounds: null, type_class: 'List of String' };
    case 'Dict':
      return { type_name: 'dict value', value_type: 'String', bounds: false, type_class: 'Dict of String' };
    case 'String':
      return stringType(null, override.regex ?? null);
  }
}

function numberType(integer: boolean, min: number | null, max: number | null): OptionType {
  const className = integer ? 'Integer' : 'Float';
  const bounds = [min === null ? '' : `min=${pyG(min)}`, max === null ? '' : `max=${pyG(max)}`].filter(Boolean);
  return {
    type_name: integer ? 'integer value' : 'floating point value',
    choices: null,
    min,
    max,
    num_type: integer ? 'int' : 'float',
    type_class: bounds.length ? `${className}(${bounds.join(', ')})` : className,
  };
}

function stringType(choices: Record<string, string | null> | null, regex: string | null): OptionType {
  const details = [choices ? `choices=[${Object.keys(choices).map(pyRepr).join(', ')}]` : '', regex ? `regex=${pyRepr(regex)}` : ''].filter(Boolean);
  return {
    type_name: 'string value',
    ignore_case: false,
    quotes: null,
    max_length: 0,
    choices,
    lower_case_choices: null,
    regex,
    type_class: details.length ? `String(${details.join(', ')})` : 'String',
  };
}

/** The oslo.config type a Cinder option of this schema would have (StrOpt, IntOpt, FloatOpt, BoolOpt, StrOpt with choices). */
function optionType(schema: z.ZodType, info: OptionInfo): OptionType {
  const node = innerSchema(schema);
  const def = node._zod.def as z.core.$ZodTypeDef & { entries?: Record<string, string> };
  switch (def.type) {
    case 'boolean':
      return { type_name: 'boolean value', type_class: 'Boolean' };
    case 'number': {
      const checks = checksOf(node);
      const integer = checks.some((check) => check.check === 'number_format' && /int/.test(check.format ?? ''));
      const min = checks.find((check) => check.check === 'greater_than')?.value ?? null;
      const max = checks.find((check) => check.check === 'less_than')?.value ?? null;
      return numberType(integer, min, max);
    }
    case 'enum':
    case 'string': {
      const choices = def.type === 'enum' ? Object.values(def.entries ?? {}) : null;
      const regex = checksOf(node).find((check) => check.check === 'string_format' && check.format === 'regex')?.pattern?.source ?? null;
      return stringType(choices ? Object.fromEntries(choices.map((choice) => [choice, info.choiceHelp?.[choice] ?? null])) : null, regex);
    }
    default:
      throw new Error(`no oslo.config type for a zod ${def.type} option`);
  }
}

/** Version 1: every attribute as Python's str() writes it ('None', 'False', '20.0', '[]', the type's repr). */
function asStrings(option: TypedDriverOption): StringDriverOption {
  const floating = 'num_type' in option.type && option.type.num_type === 'float';
  const out = {} as Record<keyof TypedDriverOption, string>;
  for (const key of OPTION_KEYS) {
    const value = option[key];
    out[key] = key === 'type' ? option.type.type_class : pyStr(value, key === 'default' && floating);
  }
  return out;
}

function pyStr(value: unknown, floating = false): string {
  if (value === null || value === undefined) return 'None';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (typeof value === 'number') return floating && Number.isInteger(value) ? value.toFixed(1) : String(value);
  if (Array.isArray(value)) return `[${value.map(pyRepr).join(', ')}]`;
  if (typeof value === 'string') return value;
  if (typeof value === 'bigint' || typeof value === 'symbol') return value.toString();
  return JSON.stringify(value) ?? '';
}

/** Python's repr() of a string, as oslo.config's type reprs quote choices and patterns. */
function pyRepr(value: unknown): string {
  if (typeof value !== 'string') return pyStr(value);
  const quote = value.includes("'") && !value.includes('"') ? '"' : "'";
  const escaped = value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\t/g, '\\t');
  return quote + (quote === "'" ? escaped.replace(/'/g, "\\'") : escaped) + quote;
}

/** Python's '%g' for the bounds in a number type's repr. */
function pyG(value: number): string {
  return String(Number(value.toPrecision(6)));
}
