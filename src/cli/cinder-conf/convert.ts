/**
 * cinderlib's cinder_to_yaml, natively (contract section 9): every backend of
 * `[DEFAULT] enabled_backends` becomes a backend of this project's YAML config, with the options
 * its driver knows. Decisions:
 * - Options come from `[backend_defaults]` (Cinder's shared backend defaults) overlaid by the
 *   backend's own section; `[DEFAULT]`'s volume options are not backend options in Cinder's
 *   multi-backend mode and are not read.
 * - Values are typed as the driver's schema reads them (oslo.config's booleans and numbers
 *   become YAML booleans and numbers; everything else stays a string). oslo's `$name` and
 *   `${group.name}` substitutions are resolved from the file; one it cannot resolve drops the
 *   option (this project's default applies), with a warning.
 * - Secrets never leave the file: a secret-named option (src/secrets.ts) becomes
 *   `${env:CINDERLIB_<SECTION>_<OPTION>}`, and so does any other option whose value holds one of
 *   the file's secrets (a password somewhere, a URL's password). `transport_url` and
 *   `[database] connection` are not converted: this project keeps its own metadata store, whose
 *   `global.persistence_config` must be set by hand.
 * - `[DEFAULT] host` becomes `global.host` (cinderlib's setup(host=...)); `root_helper` becomes
 *   `global.root_helper` unless it is Cinder's own rootwrap (whose filters list Cinder's commands,
 *   not this project's), in which case the project's default (`sudo`) stays.
 */

import { stringify } from 'yaml';
import { z } from 'zod';
import { DEFAULT_VOLUME_DRIVER, DRIVER_CATALOG, findDriver } from '../../../drivers/catalog.js';
import { listItems, optionInfo } from '../../../drivers/kit/options.js';
import type { DriverDefinition } from '../../../drivers/kit/types.js';
import { ConfigError } from '../../config/errors.js';
import { CORE_OPTIONS, readCoreOptions, validateDriverOptions } from '../../config/driver-options.js';
import { SecretRegistry, isSecretKey } from '../../base/secrets.js';
import { type IniFile, type IniSection, lastValue, parseCinderConf } from './parse.js';

export interface CinderConfConversion {
  /** The config, header comment included; empty when no backend converted. */
  yaml: string;
  /** One line each, without a prefix; they never hold a value from the file, only names. */
  warnings: string[];
  /** The environment variables the config references, in order of appearance. */
  envNames: string[];
  /** How many backends were written. */
  converted: number;
}

/** Options every backend has besides its driver's. */
const BACKEND_NAME_OPTIONS = new Set(['volume_backend_name', 'volume_driver']);

const MAX_SUBSTITUTION_DEPTH = 10;
/** A hostile file can ask for millions; past this many, the rest are counted. */
const MAX_WARNINGS = 1000;
const MAX_SUBSTITUTED_LENGTH = 64 * 1024;

/** A name from the file, shown in a message: quoted, bounded. */
function show(name: string): string {
  return JSON.stringify(name.length > 80 ? `${name.slice(0, 77)}...` : name);
}

/** `[name]` for messages: the section as written, bounded. */
function sectionLabel(name: string): string {
  return `[${name.length > 80 ? `${name.slice(0, 77)}...` : name}]`;
}

/** `CINDERLIB_<SECTION>_<OPTION>`, upper-cased, every character but A-Z, 0-9 made `_`. */
export function envNameFor(section: string, option: string): string {
  return `CINDERLIB_${section}_${option}`.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
}

/** `scheme://user:password@`: the password part, for the registry of the file's secrets. */
const URL_PASSWORD = /\b[a-z][a-z0-9+.-]*:\/\/[^\s/?#@:]*:([^\s/?#]+)@/gi;
const HAS_URL_PASSWORD = new RegExp(URL_PASSWORD.source, 'i');

/** Every secret the file holds: secret-named options' values and URL passwords, anywhere. */
function fileSecrets(ini: IniFile): SecretRegistry {
  const registry = new SecretRegistry();
  for (const section of ini.sections.values()) {
    for (const [key, values] of section) {
      for (const value of values) {
        if (isSecretKey(key)) registry.register(value);
        for (const match of value.matchAll(URL_PASSWORD)) {
          registry.register(match[1]);
          try {
            registry.register(decodeURIComponent(match[1]));
          } catch {
            // not percent-encoded: registered as is
          }
        }
      }
    }
  }
  return registry;
}

/**
 * Sections by the name oslo.config gives their group: lower-cased, `DEFAULT` aside (`[LVM]` is
 * the group of `lvm`). Repeated spellings merge, in the order they first appear.
 */
function groupIndex(ini: IniFile): (name: string) => IniSection | undefined {
  const groups = new Map<string, IniSection[]>();
  for (const [written, section] of ini.sections) {
    const group = written === 'DEFAULT' ? written : written.toLowerCase();
    const list = groups.get(group);
    if (list) list.push(section);
    else groups.set(group, [section]);
  }
  const merged = new Map<string, IniSection>();
  return (name) => {
    const group = name === 'DEFAULT' ? name : name.toLowerCase();
    const found = merged.get(group);
    if (found) return found;
    const sections = groups.get(group);
    if (!sections) return undefined;
    let section = sections[0];
    if (sections.length > 1) {
      section = new Map();
      for (const part of sections) for (const [key, values] of part) section.set(key, [...(section.get(key) ?? []), ...values]);
    }
    merged.set(group, section);
    return section;
  };
}

class SubstitutionError extends Error {}

/**
 * oslo.config's `$name`, `${name}` and `${group.name}` (string.Template), `$$` a literal `$`:
 * `$name` is looked up in the backend's options, then in `[DEFAULT]`.
 */
function substitute(value: string, lookup: (name: string) => string | undefined, depth = 0, budget = { left: MAX_SUBSTITUTED_LENGTH }): string {
  if (!value.includes('$')) return value;
  if (depth >= MAX_SUBSTITUTION_DEPTH) throw new SubstitutionError(`substitutions nest more than ${MAX_SUBSTITUTION_DEPTH} deep (a loop?)`);
  const tooLong = () => new SubstitutionError(`substitutions make it longer than ${MAX_SUBSTITUTED_LENGTH} characters`);
  let out = '';
  let last = 0;
  for (const match of value.matchAll(/\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g)) {
    let piece: string;
    if (match[1]) piece = '$';
    else {
      const name = (match[2] ?? match[3] ?? '').trim();
      const found = lookup(name);
      if (found === undefined) throw new SubstitutionError(`refers to $${name.length > 80 ? `${name.slice(0, 77)}...` : name}, which the file does not set`);
      piece = substitute(found, lookup, depth + 1, budget);
    }
    const literal = value.slice(last, match.index);
    budget.left -= literal.length + piece.length;
    if (budget.left < 0) throw tooLong();
    out += literal + piece;
    last = match.index + match[0].length;
  }
  return out + value.slice(last);
}

const TRUE_WORDS = new Set(['true', 'yes', 'on', '1']);
const FALSE_WORDS = new Set(['false', 'no', 'off', '0']);

/**
 * The value as the option's schema reads it: a boolean or a number when the schema takes that
 * reading of the text (as oslo.config's BoolOpt, IntOpt and FloatOpt would), the text otherwise.
 * A value the schema refuses either way stays text: the loader then names the problem.
 */
function typedValue(schema: z.core.$ZodType, text: string): unknown {
  // oslo.config's ListOpt: a YAML list, as cinder_to_yaml writes it.
  if (optionInfo.get(schema)?.oslo?.kind === 'List') return listItems(text);
  const word = text.trim().toLowerCase();
  const candidates: unknown[] = [];
  if (TRUE_WORDS.has(word)) candidates.push(true);
  if (FALSE_WORDS.has(word)) candidates.push(false);
  if (/^-?(\d+\.?\d*|\.\d+)$/.test(word)) candidates.push(Number(word));
  for (const candidate of candidates) if (z.safeParse(schema, candidate).success) return candidate;
  return text;
}

export async function convertCinderConf(text: string, source: string): Promise<CinderConfConversion> {
  const ini = parseCinderConf(text);
  const warnings: string[] = [];
  const envNames: string[] = [];
  const envOwners = new Map<string, string>();
  const secrets = fileSecrets(ini);
  const defaults = ini.sections.get('DEFAULT');

  const global: Record<string, unknown> = {};
  const host = lastValue(defaults, 'host')?.trim();
  if (host && !host.includes('$') && secrets.redact(host) === host) global.host = host;
  const rootHelper = lastValue(defaults, 'root_helper')?.trim();
  if (rootHelper && !rootHelper.includes('rootwrap') && !rootHelper.includes('$') && secrets.redact(rootHelper) === rootHelper) {
    global.root_helper = rootHelper;
  }
  if (ini.sections.get('database')?.has('connection')) {
    warnings.push(
      "[database] connection not converted: it is Cinder's database, not a cinderlib metadata store, and its credentials are never copied; " +
        'set global.persistence_config by hand if the default (sqlite in the data directory) does not suit',
    );
  }

  const listed = lastValue(defaults, 'enabled_backends');
  const names = [
    ...new Set(
      (listed ?? '')
        .split(',')
        .map((name) => name.trim())
        .filter(Boolean),
    ),
  ];
  if (names.length === 0) {
    warnings.push(`[DEFAULT] enabled_backends is ${listed === undefined ? 'not set' : 'empty'}: no backend to convert`);
  }

  const findSection = groupIndex(ini);
  const backendDefaults = findSection('backend_defaults');
  const backends: Record<string, unknown>[] = [];
  const usedNames = new Set<string>();
  const sharedByDriver = new Map<string, string[]>();

  for (const sectionName of names) {
    const label = sectionLabel(sectionName);
    const section = findSection(sectionName);
    if (!section) {
      warnings.push(`${label}: listed in [DEFAULT] enabled_backends but the file has no such section; skipped`);
      continue;
    }
    // [backend_defaults] first, then the section: the section's value wins (Cinder's backend_defaults).
    const own = (name: string): string | undefined => lastValue(section, name) ?? lastValue(backendDefaults, name);
    const lookup = (name: string): string | undefined => {
      const dot = name.indexOf('.');
      if (dot > 0) return lastValue(findSection(name.slice(0, dot)), name.slice(dot + 1));
      return own(name) ?? lastValue(defaults, name);
    };

    const volumeDriver = own('volume_driver')?.trim() || DEFAULT_VOLUME_DRIVER;
    const entry = findDriver(volumeDriver);
    if (!entry) {
      const known = DRIVER_CATALOG.flatMap((candidate) => candidate.cinderPaths).join(', ');
      warnings.push(`${label}: volume_driver ${show(volumeDriver)} is not a driver cinderlib-mcp has (it has ${known}); backend skipped`);
      continue;
    }
    const definition = (await entry.load()) as DriverDefinition<z.ZodRawShape>;

    let name = sectionName;
    const written = own('volume_backend_name');
    if (written && written.trim() !== '') {
      try {
        const value = substitute(written, lookup).trim();
        if (value !== '' && secrets.redact(value) === value) name = value;
        else warnings.push(`${label}: volume_backend_name cannot be written out as given; the backend is named after its section`);
      } catch (error) {
        if (!(error instanceof SubstitutionError)) throw error;
        warnings.push(`${label}: volume_backend_name ${error.message}; the backend is named after its section`);
      }
    }
    if (usedNames.has(name)) {
      if (usedNames.has(sectionName)) {
        warnings.push(`${label}: volume_backend_name ${show(name)} is taken by an earlier backend, and so is the section's name; backend skipped`);
        continue;
      }
      warnings.push(
        `${label}: volume_backend_name ${show(name)} is taken by an earlier backend (Cinder pools backends by name; this project needs each name once); named ${show(sectionName)} instead`,
      );
      name = sectionName;
    }

    const backend: Record<string, unknown> = { volume_backend_name: name, volume_driver: volumeDriver };
    /** What validation sees: the values before they became environment references. */
    const plain: Record<string, unknown> = { ...backend };
    const useEnv = (option: string, value: unknown): void => {
      const envName = envNameFor(sectionName, option);
      const owner = `${label} ${option}`;
      const previous = envOwners.get(envName);
      if (previous !== undefined && previous !== owner) {
        warnings.push(`${owner}: its variable ${envName} is also the one of ${previous}; rename a section so that each gets its own`);
      }
      if (previous === undefined) {
        envOwners.set(envName, owner);
        envNames.push(envName);
      }
      backend[option] = `\${env:${envName}}`;
      plain[option] = value;
    };

    const schemaOf = (option: string): z.core.$ZodType | undefined =>
      (Object.hasOwn(definition.options, option) ? definition.options[option] : undefined) ??
      (Object.hasOwn(CORE_OPTIONS, option) ? (CORE_OPTIONS as z.ZodRawShape)[option] : undefined);
    // [backend_defaults] is read once per driver: its options this driver knows, the others reported once.
    let sharedOptions = sharedByDriver.get(entry.alias);
    if (!sharedOptions) {
      sharedOptions = [];
      for (const option of backendDefaults?.keys() ?? []) {
        if (BACKEND_NAME_OPTIONS.has(option)) continue;
        if (schemaOf(option)) sharedOptions.push(option);
        else warnings.push(`[backend_defaults]: option ${show(option)} is not used by the ${entry.alias} driver; not converted for its backends`);
      }
      sharedByDriver.set(entry.alias, sharedOptions);
    }
    const options = [...sharedOptions, ...[...section.keys()].filter((option) => !sharedOptions.includes(option))];
    for (const option of options) {
      if (BACKEND_NAME_OPTIONS.has(option)) continue;
      const inSection = section.has(option);
      const from = inSection ? label : `[backend_defaults] (for ${label})`;
      const raw = (inSection ? lastValue(section, option) : lastValue(backendDefaults, option))!;
      const schema = schemaOf(option);
      if (!schema) {
        warnings.push(`${label}: option ${show(option)} is not used by the ${entry.alias} driver; not converted`);
        continue;
      }
      if (isSecretKey(option)) {
        if (raw === '') {
          // Nothing secret in an empty value: Cinder's "not set".
          if (z.safeParse(schema, '').success) backend[option] = plain[option] = '';
          continue;
        }
        useEnv(option, raw);
        continue;
      }
      let value: string;
      // A value made from a secret option ($san_password) is that secret: it travels by environment too.
      let fromSecret = false;
      const tracking = (name: string): string | undefined => {
        if (isSecretKey(name.slice(name.indexOf('.') + 1))) fromSecret = true;
        return lookup(name);
      };
      try {
        value = substitute(raw, tracking);
      } catch (error) {
        if (!(error instanceof SubstitutionError)) throw error;
        warnings.push(`${from}: option ${show(option)} ${error.message}; not converted (this project's default applies)`);
        continue;
      }
      if (value === '' && !z.safeParse(schema, '').success) continue; // oslo's empty value: not set
      const typed = typedValue(schema, value);
      // A value is a secret because of its option (above), because it is made from a secret option, or because it is a URL with a password in it: never because it equals a secret's value.
      if (fromSecret || HAS_URL_PASSWORD.test(value)) {
        warnings.push(`${from}: option ${show(option)} holds ${fromSecret ? 'a secret option of the file' : 'a URL with a password'}; written as an environment reference`);
        useEnv(option, typed);
        continue;
      }
      backend[option] = plain[option] = typed;
    }
    // Cinder's target_ip_address defaults to [DEFAULT] my_ip: the exports keep advertising that address.
    const myIp = lastValue(defaults, 'my_ip')?.trim();
    if (myIp && schemaOf('target_ip_address') && !('target_ip_address' in backend)) backend.target_ip_address = plain.target_ip_address = myIp;
    if (backend.target_helper === 'lioadm') {
      warnings.push(
        `${label}: target_helper lioadm exports through the kernel's LIO target (configfs at /sys/kernel/config/target) on the volume group's host; where it has none, exports answer UNSUPPORTED: use tgtadm there`,
      );
    }

    // What the server will say of it, said now (values from the file are masked as the server masks them).
    const check = new SecretRegistry();
    check.registerFromOptions(plain);
    const core = readCoreOptions({ name, options: plain }, check);
    if ('error' in core) warnings.push(`${label}: ${secrets.redact(check.redact(core.error))}; fix it in the written config`);
    try {
      validateDriverOptions(name, definition, plain, check);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      warnings.push(`${label}: ${secrets.redact(check.redact(error.message))}; fix it in the written config`);
    }
    usedNames.add(name);
    backends.push(backend);
  }

  if (warnings.length > MAX_WARNINGS) {
    const more = warnings.length - MAX_WARNINGS;
    warnings.length = MAX_WARNINGS;
    warnings.push(`... and ${more} more warnings not shown`);
  }
  if (backends.length === 0) return { yaml: '', warnings, envNames, converted: 0 };
  const document: Record<string, unknown> = {};
  if (Object.keys(global).length > 0) document.global = global;
  document.backends = backends;
  return { yaml: header(source, envNames, envOwners) + stringify(document), warnings, envNames, converted: backends.length };
}

function header(source: string, envNames: string[], envOwners: Map<string, string>): string {
  // The path is the user's, but a comment must stay one line: control characters become "?".
  // eslint-disable-next-line no-control-regex
  const clean = (text: string) => text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '?');
  const lines = [
    `cinderlib-mcp config converted from ${clean(source)} by \`cinderlib-mcp import-cinder-conf\``,
    "(as cinderlib's cinder_to_yaml: only the options each driver knows were kept).",
    "Cinder's database ([database] connection) and transport_url are not converted: the metadata",
    'store is global.persistence_config (default: sqlite in the data directory).',
  ];
  if (envNames.length > 0) {
    lines.push('No secret was copied from the file: set these environment variables before starting the server:');
    for (const name of envNames) lines.push(`  ${name}  (${clean(envOwners.get(name) ?? '')})`);
  }
  return lines.map((line) => `# ${line}`).join('\n') + '\n';
}
