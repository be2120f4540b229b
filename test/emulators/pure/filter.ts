/**
 * The part of FlashArray REST 2.x `filter` expressions Cinder's driver sends: terms joined by
 * `and` / `or` (and binds tighter), a term being `field='value'` (`*` matching any run of
 * characters; on a list field, any element matching), `field!='value'`, `field` (true) or
 * `not field`. Fields may be dotted (`eth.subtype`). Anything else is refused, so a driver
 * sending a form the emulator does not know fails loudly instead of matching everything.
 */
export function matchesFilter(item: Record<string, unknown>, filter: string): boolean {
  return splitOutsideQuotes(filter, ' or ').some((conjunction) => splitOutsideQuotes(conjunction, ' and ').every((term) => matchesTerm(item, term.trim())));
}

function matchesTerm(item: Record<string, unknown>, term: string): boolean {
  const comparison = /^([a-z_][a-z0-9_.]*)\s*(!?=)\s*'((?:[^'\\]|\\.)*)'$/i.exec(term);
  if (comparison) {
    const [, field, operator, raw] = comparison;
    const pattern = new RegExp(
      `^${raw
        .replace(/\\(.)/g, '$1')
        .replace(/[.+?^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')}$`,
    );
    const value = fieldOf(item, field);
    const values = Array.isArray(value) ? value : [value];
    const found = values.some((one) => one !== null && one !== undefined && pattern.test(String(one)));
    return operator === '=' ? found : !found;
  }
  const flag = /^(not\s+)?([a-z_][a-z0-9_.]*)$/i.exec(term);
  if (flag) return Boolean(fieldOf(item, flag[2])) !== Boolean(flag[1]);
  throw new Error(`filter term not understood by the emulator: ${term}`);
}

function fieldOf(item: Record<string, unknown>, path: string): unknown {
  let value: unknown = item;
  for (const part of path.split('.')) value = value && typeof value === 'object' ? (value as Record<string, unknown>)[part] : undefined;
  return value;
}

function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let quoted = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "'" && text[i - 1] !== '\\') quoted = !quoted;
    else if (!quoted && text.startsWith(separator, i)) {
      parts.push(text.slice(start, i));
      start = i + separator.length;
      i += separator.length - 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}
