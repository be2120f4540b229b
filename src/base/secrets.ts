/**
 * The one masking mechanism (contract section 6). Secret option values and every `${env:...}`
 * substitution are registered here; every way out of the process (tool results, errors, stderr
 * logs, serialized dumps) passes its text through `redact` or its objects through `maskOptions`.
 */

import { domainToASCII } from 'node:url';

export const MASK = '***';

/** Contract section 6's fragments, plus `passwd`; matched anywhere in the (snake_cased) name. */
const SECRET_FRAGMENTS = /password|passwd|secret|token|private_?key|passphrase|credential/;

/**
 * Names the rules below would miss: options Cinder marks `secret=True` (oslo.config) such as
 * replication_device (cinder/volume/driver.py, a dict carrying the peer array's credentials) and
 * URLs that embed credentials, the volume field holding CHAP credentials (contract section 9), and
 * the cephx keyring cinderlib's RBD connections carry (data.keyring, contract section 13).
 */
const SECRET_NAMES = new Set(['replication_device', 'backend_url', 'backup_gcs_proxy_url', 'provider_auth', 'keyring']);

/**
 * Names that say "secret" but hold what only points at one: the libvirt secret's uuid and type of
 * an rbd connection, and Cinder's rbd_secret_uuid (not secret in Cinder's listing either).
 */
const NOT_SECRET_NAMES = new Set(['secret_type', 'secret_uuid', 'rbd_secret_uuid']);

/** `<word>_key` names that look a key up or hold a public key or a path, not a credential. */
const NON_CREDENTIAL_KEY_QUALIFIERS = new Set([
  'public',
  'host',
  'hosts',
  'known',
  'sort',
  'lookup',
  'primary',
  'foreign',
  'partition',
  'shard',
  'cache',
  'hash',
  'routing',
  'index',
  'row',
  'group',
  'map',
  'dict',
  'metadata',
  'object',
  'unique',
  'composite',
]);

/** One-word credential keys (apikey, accessKey, ...). */
const COMPOUND_CREDENTIAL_KEY = /^(api|access|secret|auth|private|master|signing|encryption|shared|client|session|license|account)key$/;

/** chap_username is not a secret (contract section 9): user names never are, CHAP or not. */
const USER_NAME_ENDINGS = ['username', 'user', 'login', 'userid'];

/** `sanPassword`, `san-password` and `SAN_PASSWORD` all read `san_password`. */
function snakeCase(key: string): string {
  return key
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_');
}

function isUserName(segments: string[]): boolean {
  const last = segments.at(-1) ?? '';
  return USER_NAME_ENDINGS.includes(last) || (last === 'name' && segments.at(-2) === 'user');
}

/** Whether a `key` in the name is a credential (api_key, access_key, apikey) rather than a lookup or a file. */
function isCredentialKey(segments: string[]): boolean {
  const last = segments.at(-1) ?? '';
  if (COMPOUND_CREDENTIAL_KEY.test(last)) return true;
  if (last !== 'key') return false; // ssh_hosts_key_file, key_name, key_id: the key is elsewhere
  const qualifier = segments.at(-2);
  return qualifier === undefined || !NON_CREDENTIAL_KEY_QUALIFIERS.has(qualifier);
}

/** Whether an option (or any object key) holds a secret, by its name. */
/** Answers by key name, remembered: every answer is masked key by key, and keys repeat. */
const secretKeyVerdicts = new Map<string, boolean>();
const MAX_REMEMBERED_KEYS = 10_000;

export function isSecretKey(key: string): boolean {
  let verdict = secretKeyVerdicts.get(key);
  if (verdict === undefined) {
    verdict = judgeKey(key);
    if (secretKeyVerdicts.size < MAX_REMEMBERED_KEYS) secretKeyVerdicts.set(key, verdict);
  }
  return verdict;
}

function judgeKey(key: string): boolean {
  const name = snakeCase(key);
  if (SECRET_NAMES.has(name)) return true;
  if (NOT_SECRET_NAMES.has(name)) return false;
  if (SECRET_FRAGMENTS.test(name)) return true;
  const segments = name.split('_').filter(Boolean);
  // use_chap_auth and kin switch CHAP on: a flag, not a credential.
  if (name.includes('chap') && !isUserName(segments) && segments[0] !== 'use') return true;
  // `pass` as the last word (san_pass, db_pass), not inside words (passthrough, compass).
  if (segments.at(-1) === 'pass') return true;
  return isCredentialKey(segments);
}

/**
 * `scheme://user:password@host`: the password part, up to the last `@` before the host (a raw
 * `@` in a password is common), never across quotes or whitespace of the surrounding text.
 */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/[^\s/?#@:"'<>\\`]*:)([^\s/?#"'<>\\`]+)@/gi;

/** Values shorter than this cannot be hunted in free text without mangling ordinary words. */
const MIN_REDACTABLE_LENGTH = 3;
const BOOLEAN_WORDS = new Set(['true', 'false', 'yes', 'no', 'on', 'off', 'none', 'null']);

/** The spellings a value takes once URL parsing, JSON or base64 has been through it. */
function travelForms(text: string): string[] {
  const forms = [text, encodeURIComponent(text), JSON.stringify(text).slice(1, -1), Buffer.from(text).toString('base64')];
  // A host name comes back lowercased (covered by case-insensitive matching) and, when it is
  // not ASCII, in punycode; the other URL parts come back percent-encoded their own way.
  const asciiHost = domainToASCII(text);
  if (asciiHost) forms.push(asciiHost);
  const url = new URL('http://host/');
  url.password = text;
  forms.push(url.password);
  url.pathname = `/${text}`;
  forms.push(url.pathname.slice(1));
  forms.push(new URLSearchParams({ value: text }).toString().slice('value='.length));
  return forms;
}

export class SecretRegistry {
  private readonly values = new Set<string>();
  private pattern: RegExp | null = null;
  /** Option objects (from the config) and, per key, how their `${env:}`-derived value reads masked. */
  private readonly envDerived = new WeakMap<object, Map<string, string>>();

  /** Registers a secret and the encodings it may travel in (URL, JSON, base64, punycode). */
  register(value: unknown): void {
    if (typeof value !== 'string' && typeof value !== 'number') return;
    const text = String(value);
    // A boolean word is never a credential, and hunting it would mask every "true" in every text.
    if (text.length < MIN_REDACTABLE_LENGTH || BOOLEAN_WORDS.has(text.toLowerCase())) return;
    for (const form of travelForms(text)) {
      const key = form.toLowerCase();
      if (form.length >= MIN_REDACTABLE_LENGTH && !this.values.has(key)) {
        this.values.add(key);
        this.pattern = null;
      }
    }
  }

  /**
   * Records that `owner[key]` came from `${env:}` (contract section 6): `maskOptions` shows it as
   * `masked` (the value with each substitution replaced by the mask), however short the value.
   */
  markEnvDerived(owner: object, key: string, masked: string): void {
    let keys = this.envDerived.get(owner);
    if (!keys) this.envDerived.set(owner, (keys = new Map<string, string>()));
    keys.set(key, masked);
  }

  /** Replaces every registered secret (in any letter case) and every URL password in `text` with the mask. */
  redact(text: string): string {
    const withoutUrlPasswords = text.includes('://') ? text.replace(URL_USERINFO, `$1${MASK}@`) : text;
    if (this.values.size === 0) return withoutUrlPasswords;
    if (!this.pattern) {
      // Longest first, so a secret that contains another is masked whole.
      const alternatives = [...this.values].sort((a, b) => b.length - a.length).map((value) => value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
      this.pattern = new RegExp(alternatives.join('|'), 'gi');
    }
    return withoutUrlPasswords.replace(this.pattern, MASK);
  }

  /** Deep copy of `value` with secret-named keys and `${env:}`-derived values masked, registered secrets redacted. */
  maskOptions<T>(value: T): T {
    return this.maskValue(value, undefined, undefined) as T;
  }

  private maskValue(value: unknown, owner: object | undefined, key: string | undefined): unknown {
    if (owner === undefined || key === undefined) return this.maskChildren(value);
    if (value === null || value === undefined || value === '') return value;
    // oslo.config's `secret` attribute (list_supported_drivers) says whether an option is secret; it holds no secret itself.
    if (key === 'secret' && (typeof value === 'boolean' || value === 'True' || value === 'False')) return value;
    if (isSecretKey(key)) return MASK;
    const envMasked = this.envDerived.get(owner)?.get(key);
    if (envMasked !== undefined) return this.redact(envMasked);
    return this.maskChildren(value);
  }

  private maskChildren(value: unknown): unknown {
    if (typeof value === 'string') return this.redact(value);
    if (Array.isArray(value)) return value.map((item, index) => this.maskValue(item, value, String(index)));
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [childKey, child] of Object.entries(value)) out[childKey] = this.maskValue(child, value, childKey);
      return out;
    }
    return value;
  }

  /** Registers the values of every secret-named key found anywhere in `options`. */
  registerFromOptions(options: unknown): void {
    if (Array.isArray(options)) {
      for (const item of options) this.registerFromOptions(item);
      return;
    }
    if (!options || typeof options !== 'object') return;
    for (const [key, child] of Object.entries(options)) {
      if (isSecretKey(key) && (typeof child === 'string' || typeof child === 'number')) this.register(child);
      else this.registerFromOptions(child);
    }
  }
}

/** The process-wide registry every output path uses. */
export const secrets = new SecretRegistry();
