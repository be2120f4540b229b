/**
 * A reader for cinder.conf as oslo.config's iniparser reads it (oslo_config/iniparser.py and
 * cfg.ConfigParser):
 * - `[section]` headers (a line starting with `[` must end with `]` and name something);
 * - `key = value` or `key: value`, split at whichever of `=` and `:` comes first, key and value
 *   stripped, one pair of matching surrounding quotes (`"..."` or `'...'`) removed;
 * - lines starting with `#` or `;` are comments, blank lines end a multi-line value;
 * - a line starting with a space or a tab continues the previous value (joined with "\n");
 * - an assignment before any section, an empty key or a line with neither `=` nor `:` is an error;
 * - repeated sections merge, a repeated key keeps every value in order (the last wins for a
 *   single-valued option).
 *
 * The file may be hostile: it is bounded in size and line length, must be UTF-8 text without
 * control characters, and sections and keys are plain data (Maps, never object properties, so
 * `__proto__` is a name like any other). Errors name the line, never echo its content (a garbled
 * line may hold a password).
 */

/** Far above any real cinder.conf (Cinder's full sample is about 200 KiB). */
export const MAX_CINDER_CONF_BYTES = 4 * 1024 * 1024;
/** Far above any real option line (a replication_device or a long list). */
export const MAX_LINE_LENGTH = 64 * 1024;

export class CinderConfError extends Error {
  constructor(
    message: string,
    /** 1-based line number when the problem is on one line. */
    readonly line?: number,
  ) {
    super(line === undefined ? message : `line ${line}: ${message}`);
    this.name = 'CinderConfError';
  }
}

/** One section: each key (as written) with every value it was given, in file order. */
export type IniSection = Map<string, string[]>;

export interface IniFile {
  /** Sections by name as written (repeated headers merged), in order of first appearance. */
  sections: Map<string, IniSection>;
}

// Tab is allowed (indentation, values); CR only as part of a CRLF line end (stripped before this check).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029]/;

/** Decodes a file's bytes as UTF-8, naming the first line that is not. */
export function decodeCinderConf(bytes: Uint8Array): string {
  if (bytes.length > MAX_CINDER_CONF_BYTES) {
    throw new CinderConfError(`the file is larger than ${MAX_CINDER_CONF_BYTES / 1024 / 1024} MiB (${bytes.length} bytes); this is not a cinder.conf`);
  }
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  } catch {
    // Find the line of the first invalid byte sequence.
    const decoder = new TextDecoder('utf-8', { fatal: true });
    let line = 1;
    let start = 0;
    for (let index = 0; index <= bytes.length; index++) {
      if (index === bytes.length || bytes[index] === 0x0a) {
        try {
          decoder.decode(bytes.subarray(start, index));
        } catch {
          throw new CinderConfError('not UTF-8 text (is this a binary file?)', line);
        }
        line++;
        start = index + 1;
      }
    }
    throw new CinderConfError('not UTF-8 text');
  }
}

/** Parses cinder.conf text; throws CinderConfError naming the line of the first problem. */
export function parseCinderConf(text: string): IniFile {
  if (text.length > MAX_CINDER_CONF_BYTES) {
    throw new CinderConfError(`the file is larger than ${MAX_CINDER_CONF_BYTES / 1024 / 1024} MiB; this is not a cinder.conf`);
  }
  const sections = new Map<string, IniSection>();
  let section: IniSection | undefined;
  let key: string | undefined;
  let value: string[] = [];
  let lineNumber = 0;

  const flush = (): void => {
    if (key === undefined || !section) return;
    const values = section.get(key);
    const joined = value.join('\n');
    if (values) values.push(joined);
    else section.set(key, [joined]);
    key = undefined;
    value = [];
  };

  for (const rawLine of text.split('\n')) {
    lineNumber++;
    if (rawLine.length > MAX_LINE_LENGTH) {
      throw new CinderConfError(`the line is longer than ${MAX_LINE_LENGTH} characters (${rawLine.length})`, lineNumber);
    }
    // Python's rstrip(): trailing whitespace, CR of a CRLF line end included.
    const line = rawLine.trimEnd();
    const control = CONTROL.exec(line);
    if (control) {
      const code = control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
      throw new CinderConfError(`control character U+${code} at column ${control.index + 1} (is this a binary file?)`, lineNumber);
    }
    if (line === '') {
      flush(); // a blank line ends a multi-line value
      continue;
    }
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (key === undefined) throw new CinderConfError('unexpected continuation line (an indented line that follows no option)', lineNumber);
      value.push(line.trimStart());
      continue;
    }
    flush();
    if (line.startsWith('[')) {
      if (!line.endsWith(']')) throw new CinderConfError('invalid section header (must end with "]")', lineNumber);
      if (line.length <= 2) throw new CinderConfError('empty section name', lineNumber);
      const name = line.slice(1, -1);
      section = sections.get(name);
      if (!section) {
        section = new Map();
        sections.set(name, section);
      }
      continue;
    }
    if (line.startsWith('#') || line.startsWith(';')) continue;
    const colon = line.indexOf(':');
    const equal = line.indexOf('=');
    if (colon < 0 && equal < 0) throw new CinderConfError('no "=" or ":" found in the assignment', lineNumber);
    const at = colon < 0 || (equal >= 0 && equal < colon) ? equal : colon;
    const name = line.slice(0, at).trim();
    let first = line.slice(at + 1).trim();
    // Python's value[1:-1]: a lone quote reads as the empty string.
    if (first !== '' && first[0] === first.at(-1) && (first[0] === '"' || first[0] === "'")) first = first.slice(1, -1);
    if (name === '') throw new CinderConfError('empty option name', lineNumber);
    if (!section) throw new CinderConfError('an option before any [section] header', lineNumber);
    key = name;
    value = [first];
  }
  flush();
  return { sections };
}

/** The last value of `key` in `section` (oslo's last-wins for single-valued options). */
export function lastValue(section: IniSection | undefined, key: string): string | undefined {
  return section?.get(key)?.at(-1);
}
