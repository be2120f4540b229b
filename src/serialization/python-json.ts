/**
 * JSON as Python's `json.dumps` writes it, which is what cinderlib's dumps are: every character
 * outside printable ASCII escaped as `\uXXXX` (lower-case hex, astral characters as surrogate
 * pairs, DEL included), and either compact (`separators=(',', ':')`, as `cl.dumps()` and
 * `Volume.dumps` write) or with Python's default separators `', '` and `': '` (as
 * `Backend.dumps` writes). JSON.stringify differs only in leaving non-ASCII characters raw, so the
 * compact form post-processes its output rather than re-implementing it.
 *
 * Numbers: a float Python wrote with a fraction of zero (`1.0`) parses to a JS integer and comes
 * back as `1`; no field of cinderlib's objects holds such a float.
 */
const NOT_PRINTABLE_ASCII = /[^\x20-\x7e]/g;
const HAS_NOT_PRINTABLE_ASCII = /[^\x20-\x7e]/;

function escapeCharacter(character: string): string {
  return `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

function asciiOnly(text: string): string {
  // Control characters are already escaped by JSON.stringify; what is left outside ASCII is raw.
  return HAS_NOT_PRINTABLE_ASCII.test(text) ? text.replace(NOT_PRINTABLE_ASCII, escapeCharacter) : text;
}

/** `json.dumps(value, separators=(',', ':'))`. */
export function pythonJson(value: unknown): string {
  return asciiOnly(JSON.stringify(value));
}

/** `json.dumps(value)`: Python's default separators. */
export function pythonJsonSpaced(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => pythonJsonSpaced(item === undefined ? null : item)).join(', ')}]`;
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON !== 'function') {
    const members = Object.entries(value).filter(([, item]) => item !== undefined);
    return `{${members.map(([key, item]) => `${pythonJson(key)}: ${pythonJsonSpaced(item)}`).join(', ')}}`;
  }
  return pythonJson(value);
}
