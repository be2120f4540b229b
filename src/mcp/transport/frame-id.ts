/**
 * Finds the id of a request that cannot be parsed whole (it was too big to keep), from its first
 * and last bytes only, so the client's pending call gets its error instead of hanging. Only the
 * two places where a top-level "id" can be told apart without parsing are looked at: first
 * (optionally after "jsonrpc", as hand-written requests put it) and last (as the SDK's
 * JSON.stringify of {method, params, jsonrpc, id} puts it). Anything else gives null, which
 * JSON-RPC prescribes when the id cannot be determined.
 */

import type { RequestId } from '@modelcontextprotocol/sdk/types.js';

const ID_VALUE = String.raw`(-?\d{1,15}|"(?:[^"\\\u0000-\u001f]|\\.){0,256}")`;
const LEADING_ID = new RegExp(String.raw`^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*${ID_VALUE}\s*[,}]`);
// A valid JSON object text ends with the top-level closing brace, so an "id" member right
// before the final brace is a top-level member.
const TRAILING_ID = new RegExp(String.raw`[{,]\s*"id"\s*:\s*${ID_VALUE}\s*\}\s*$`);

export function recoverRequestId(head: Buffer, tail: Buffer): RequestId | null {
  const match = LEADING_ID.exec(head.toString('utf8')) ?? TRAILING_ID.exec(tail.toString('utf8'));
  if (!match) return null;
  const literal = match[1];
  try {
    return literal.startsWith('"') ? (JSON.parse(literal) as string) : Number(literal);
  } catch {
    return null;
  }
}
