/**
 * The one masking mechanism (contract section 6). Secret option values and every `${env:...}`
 * substitution are registered here; every way out of the process (tool results, errors, stderr
 * logs, serialized dumps) passes its text through `redact` or its objects through `maskOptions`.
 */

export const MASK = '***';

const SECRET_KEY_PATTERN = /password|secret|token|private_key|passphrase|chap|credential/i;

/** Values shorter than this cannot be hunted in free text without mangling ordinary words. */
const MIN_REDACTABLE_LENGTH = 3;

export function isSecretKey(key: string): boolean {
  return SECRET_KEY_PATTERN.test(key);
}

export class SecretRegistry {
  private readonly values = new Set<string>();
  private pattern: RegExp | null = null;

  /** Registers a secret and the encodings it may travel in (URL, JSON, base64). */
  register(value: unknown): void {
    if (typeof value !== 'string' && typeof value !== 'number') return;
    const text = String(value);
    if (text.length < MIN_REDACTABLE_LENGTH) return;
    const forms = [
      text,
      encodeURIComponent(text),
      JSON.stringify(text).slice(1, -1),
      Buffer.from(text).toString('base64'),
    ];
    for (const form of forms) {
      if (form.length >= MIN_REDACTABLE_LENGTH && !this.values.has(form)) {
        this.values.add(form);
        this.pattern = null;
      }
    }
  }

  /** Replaces every registered secret in `text` with the mask. */
  redact(text: string): string {
    if (this.values.size === 0) return text;
    if (!this.pattern) {
      // Longest first, so a secret that contains another is masked whole.
      const alternatives = [...this.values]
        .sort((a, b) => b.length - a.length)
        .map((value) => value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
      this.pattern = new RegExp(alternatives.join('|'), 'g');
    }
    return text.replace(this.pattern, MASK);
  }

  /** Deep copy of `value` with secret-named keys masked and registered secrets redacted. */
  maskOptions<T>(value: T): T {
    return this.maskValue(value, undefined) as T;
  }

  private maskValue(value: unknown, key: string | undefined): unknown {
    if (key !== undefined && isSecretKey(key) && value !== null && value !== undefined && value !== '') {
      return MASK;
    }
    if (typeof value === 'string') return this.redact(value);
    if (Array.isArray(value)) return value.map((item) => this.maskValue(item, undefined));
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [childKey, child] of Object.entries(value)) out[childKey] = this.maskValue(child, childKey);
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
