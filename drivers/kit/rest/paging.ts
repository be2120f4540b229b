import type { RestResponse } from './client.js';

/**
 * Where a listing goes on: the next request's query (a continuation token, an offset) or path (a
 * next link: a URL on the array's origin, or a path from that origin, taken as it is), or undefined
 * when the last page is in.
 */
export type NextPage = { query: Record<string, string | number> } | { link: string } | undefined;

export interface Paging {
  next(response: RestResponse): NextPage;
  /** Pages followed at most, the first included; more is an error, never a silent cut. 1000 by default. */
  maxPages?: number;
}

export const DEFAULT_MAX_PAGES = 1000;

/** Pure FlashArray's form: `continuation_token` in the body, sent back as the query parameter of that name. */
export function continuationToken(field = 'continuation_token', parameter = field, maxPages?: number): Paging {
  return {
    maxPages,
    next: (response) => {
      const token = (response.body as Record<string, unknown> | undefined)?.[field];
      return typeof token === 'string' && token !== '' ? { query: { [parameter]: token } } : undefined;
    },
  };
}

/** A link to the next page in the body (`next`, or the field named). */
export function nextLink(field = 'next', maxPages?: number): Paging {
  return {
    maxPages,
    next: (response) => {
      const link = (response.body as Record<string, unknown> | undefined)?.[field];
      if (typeof link !== 'string' || link === '') return undefined;
      return { link };
    },
  };
}
