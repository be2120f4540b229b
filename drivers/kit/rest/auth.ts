import type { HttpMethod, RestResponse } from './client.js';

/**
 * How a REST client proves who it is. Every credential named here is registered as a secret by
 * the client, so no log line or error carries it.
 */
export type RestAuth = BasicAuth | HeaderAuth | SessionAuth;

/** HTTP basic auth (XtremIO, K2): username and password on every request. */
export interface BasicAuth {
  kind: 'basic';
  username: string;
  password: string;
}

/** A fixed header on every request: an API token, "Authorization: Bearer …". */
export interface HeaderAuth {
  kind: 'header';
  header: string;
  value: string;
}

/**
 * A session: one login call answers a token (in a response header, by default), which every later
 * call carries; a 401 means the session ended, so the client logs in again once and retries.
 * Pure FlashArray's REST 2.x: POST /api/2.x/login with `api-token`, answered by `x-auth-token`.
 */
export interface SessionAuth {
  kind: 'session';
  login: {
    method?: HttpMethod;
    /** Relative to the client's base URL, as every request path. */
    path: string;
    /** Headers of the login call only, e.g. { 'api-token': token }: secrets, registered. */
    headers?: Record<string, string>;
    body?: unknown;
  };
  /** The response header carrying the token (e.g. x-auth-token); read by `token` when given. */
  tokenHeader: string;
  /** The request header the token goes back in; the response header's name by default. */
  sendAs?: string;
  /** Reads the token from the login's answer when it is not simply `tokenHeader`. */
  token?(response: RestResponse): string | undefined;
}

/** The values an auth mode holds that must never be shown. */
export function authSecrets(auth: RestAuth): string[] {
  switch (auth.kind) {
    case 'basic':
      return [auth.password, basicToken(auth)];
    case 'header':
      return [auth.value];
    case 'session':
      return Object.values(auth.login.headers ?? {});
  }
}

export function basicToken(auth: BasicAuth): string {
  return Buffer.from(`${auth.username}:${auth.password}`).toString('base64');
}

/** The headers every request carries under a fixed auth mode (sessions add theirs per request). */
export function fixedAuthHeaders(auth: RestAuth | undefined): Record<string, string> {
  if (auth?.kind === 'basic') return { authorization: `Basic ${basicToken(auth)}` };
  if (auth?.kind === 'header') return { [auth.header.toLowerCase()]: auth.value };
  return {};
}

/** The session token of a login's answer. */
export function sessionToken(auth: SessionAuth, response: RestResponse): string | undefined {
  if (auth.token) return auth.token(response);
  const value = response.headers[auth.tokenHeader.toLowerCase()];
  return value ? value : undefined;
}
