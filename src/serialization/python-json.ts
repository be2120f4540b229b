/**
 * JSON as Python's `json.dumps(obj, separators=(',', ':'))` writes it, which is what cinderlib's
 * dumps are: compact, and every character outside printable ASCII escaped as `\uXXXX` (lower-case
 * hex, astral characters as surrogate pairs, DEL included). JSON.stringify differs only in leaving
 * non-ASCII characters raw, so its output is post-processed rather than re-implemented.
 *
 * Numbers: a float Python wrote with a fraction of zero (`1.0`) parses to a JS integer and comes
 * back as `1`; no field of cinderlib's objects holds such a float.
 */
const NOT_PRINTABLE_ASCII = /[^\x20-\x7e]/g;
const HAS_NON_ASCII = /[^\x20-\x7e]/;

function escapeCharacter(character: string): string {
  return `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

export function pythonJson(value: unknown): string {
  const text = JSON.stringify(value);
  // Control characters are already escaped by JSON.stringify; what is left outside ASCII is raw.
  return HAS_NON_ASCII.test(text) ? text.replace(NOT_PRINTABLE_ASCII, escapeCharacter) : text;
}
