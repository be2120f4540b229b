import { z } from 'zod';
import { StorageError, type ErrorCode } from '../kit/base.js';
import { RestClient, continuationToken, httpsOrigin, type HttpMethod, type RestResponse } from '../kit/rest/client.js';
import type { DriverContext } from '../kit/types.js';
import { compareVersions, versionNumbers } from '../kit/units.js';

/**
 * FlashArray REST 2.x as Cinder's driver speaks it through py-pure-client: the versions the array
 * offers from `GET /api/api_version`, a session from `POST /api/<v>/login` (`api-token` header,
 * answered in `x-auth-token`, a new login on 401), objects addressed by query parameters
 * (`names=`, `source_names=`, `host_names=`...), lists in pages (`continuation_token`), and
 * refusals as HTTP 400 `{"errors": [{"context", "message"}]}` whose message texts Cinder matches.
 */
/** Cinder's do_setup refuses older Purity. */
const MIN_PURITY = [6, 1, 0];
/** arrays/space, controllers and ports are REST 2.2 paths. */
const MIN_REST = [2, 2];
/** The newest version py-pure-client (and so Cinder) speaks; a newer array is spoken to in this one. */
const NEWEST_KNOWN_REST = [2, 56];

/** Cinder's ERR_MSG_* texts, matched inside the array's messages as Cinder matches them. */
export const ERR = {
  NOT_EXIST: 'does not exist',
  HOST_NOT_EXIST: 'Host does not exist',
  NO_SUCH_SNAPSHOT: 'No such volume or snapshot',
  PENDING_ERADICATION: 'has been destroyed',
  ALREADY_EXISTS: 'already exists',
  EXISTING_CONNECTIONS: 'cannot be deleted due to existing connections',
  ALREADY_IN_USE: 'already in use',
} as const;

const versionsSchema = z.object({ version: z.array(z.string()) }).loose();
const errorsSchema = z.object({ errors: z.array(z.object({ message: z.string().nullish(), context: z.string().nullish() }).loose()).min(1) }).loose();
export const itemsOf = <T extends z.ZodType>(item: T) => z.object({ items: z.array(item) }).loose();
const arraySchema = z.object({ name: z.string(), id: z.string(), version: z.string() }).loose();

export type Query = Record<string, string | number | boolean | undefined>;

export interface PureSettings {
  sanIp: string;
  apiToken: string;
  verifyTls: boolean;
  caPath?: string;
}

export class PureClient {
  private readonly origin: string;
  private session?: RestClient;
  /** The REST version chosen, "2.26"; set by connect(). */
  apiVersion = '';
  /** Purity version of the array (GET /arrays), e.g. "6.5.8". */
  purityVersion = '';
  arrayName = '';

  constructor(
    private readonly settings: PureSettings,
    readonly context: DriverContext,
  ) {
    this.origin = httpsOrigin(settings.sanIp);
    context.secrets.register(settings.apiToken);
  }

  /** The session client: exists once connect() has chosen the version. */
  get rest(): RestClient {
    if (!this.session) throw this.error('BACKEND_UNAVAILABLE', 'the array has not been reached yet (setup did not run)');
    return this.session;
  }

  /**
   * py-pure-client's Client(): the newest version both sides speak, a session in it, then
   * Cinder's do_setup check of the array's Purity version.
   */
  async connect(): Promise<void> {
    const discovery = this.restClient(`${this.origin}/api`, false);
    try {
      const operation = 'read the REST versions of the array';
      const offered = this.parse(versionsSchema, await discovery.request('GET', '/api_version', { operation }), operation).version;
      const usable = offered
        .filter((version) => /^2\.\d+$/.test(version))
        .map(versionNumbers)
        .filter((version) => compareVersions(version, MIN_REST) >= 0 && compareVersions(version, NEWEST_KNOWN_REST) <= 0)
        .sort(compareVersions);
      const chosen = usable.at(-1);
      if (!chosen) {
        throw this.error(
          'BACKEND_UNAVAILABLE',
          `the array offers REST versions ${offered.join(', ') || 'none'}; this driver speaks REST ${MIN_REST.join('.')} to ${NEWEST_KNOWN_REST.join('.')} (Purity 6.1.0 or later)`,
        );
      }
      this.apiVersion = chosen.join('.');
    } finally {
      await discovery.close();
    }
    await this.session?.close();
    this.session = this.restClient(`${this.origin}/api/${this.apiVersion}`, true);
    const array = (await this.items(arraySchema, 'GET', '/arrays', {}, 'read the array'))[0];
    if (!array) throw this.error('BACKEND_UNAVAILABLE', 'read the array: GET /arrays listed no array');
    this.purityVersion = array.version;
    this.arrayName = array.name;
    if (compareVersions(versionNumbers(array.version), MIN_PURITY) < 0) {
      throw this.error(
        'BACKEND_UNAVAILABLE',
        `FlashArray Purity version less than 6.1.0 unsupported (the array runs ${array.version}). Please upgrade your backend to a supported version.`,
      );
    }
    this.context.log.info(`connected to ${array.name} (Purity ${array.version}) with REST API ${this.apiVersion}`);
  }

  private restClient(baseUrl: string, withSession: boolean): RestClient {
    return new RestClient({
      backendName: this.context.backendName,
      baseUrl,
      ...(withSession ? { auth: { kind: 'session' as const, login: { path: '/login', headers: { 'api-token': this.settings.apiToken } }, tokenHeader: 'x-auth-token' } } : {}),
      authHint: 'check pure_api_token',
      verifyTls: this.settings.verifyTls,
      caPath: this.settings.caPath,
      // The array limits request rates (HTTP 429); nothing else is retried, as py-pure-client.
      retry: { attempts: 5, intervalMs: 1000, backoffRate: 2, isBusy: (response) => response.status === 429 },
      log: this.context.log,
      secrets: this.context.secrets,
    });
  }

  request(method: HttpMethod, path: string, query: Query, operation: string, body?: unknown): Promise<RestResponse> {
    return this.rest.request(method, path, { operation, query, body });
  }

  /** The items of a one-answer call (a POST or PATCH), checked. */
  async items<T extends z.ZodType>(schema: T, method: HttpMethod, path: string, query: Query, operation: string, body?: unknown): Promise<Array<z.output<T>>> {
    return this.parse(itemsOf(schema), await this.request(method, path, query, operation, body), operation).items;
  }

  /** Every item of a listing, page after page (continuation_token), as py-pure-client's item iterator. */
  list<T extends z.ZodType>(schema: T, path: string, query: Query, operation: string): Promise<Array<z.output<T>>> {
    return this.rest.collect(path, { operation, query }, continuationToken(), (page) => this.parse(itemsOf(schema), page, operation).items);
  }

  parse<T extends z.ZodType>(schema: T, response: RestResponse, operation: string): z.output<T> {
    if (response.status >= 300) throw this.failure(operation, response);
    const result = schema.safeParse(response.body);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw this.error('BACKEND_UNAVAILABLE', `${operation}: unexpected answer from the array (${issue?.path.join('.') || 'body'}: ${issue?.message})`);
    }
    return result.data;
  }

  /** A refusal, with the code its message means (Cinder's texts), and the array's words. */
  failure(operation: string, response: RestResponse): StorageError {
    const message = arrayMessage(response);
    if (response.status === 400 && message?.includes(ERR.ALREADY_EXISTS)) return this.error('ALREADY_EXISTS', `${operation}: ${describe(response)}`);
    if (response.status === 400 && message?.includes(ERR.NOT_EXIST)) return this.error('NOT_FOUND', `${operation}: ${describe(response)}`);
    return this.rest.fail(operation, response, message === undefined ? undefined : describe(response));
  }

  /** A call whose refusal is acceptable when its message holds one of `tolerated` (Cinder's save_and_reraise_exception checks). */
  async tolerating(tolerated: readonly string[], method: HttpMethod, path: string, query: Query, operation: string, body?: unknown): Promise<RestResponse | undefined> {
    const response = await this.request(method, path, query, operation, body);
    if (response.status < 300) return response;
    const message = arrayMessage(response);
    if (response.status === 400 && message !== undefined && tolerated.some((text) => message.includes(text))) {
      this.context.log.warn(`${operation}: ${describe(response)}`);
      return undefined;
    }
    throw this.failure(operation, response);
  }

  error(code: ErrorCode, message: string): StorageError {
    return new StorageError(code, this.context.secrets.redact(`backend "${this.context.backendName}": ${message}`));
  }

  async close(): Promise<void> {
    await this.session?.close();
  }
}

/** The first error's message (Cinder reads res.errors[0].message). */
export function arrayMessage(response: RestResponse): string | undefined {
  const parsed = errorsSchema.safeParse(response.body);
  if (parsed.success) return parsed.data.errors[0].message ?? undefined;
  const message = (response.body as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' ? message : undefined;
}

/** "<message> (<context>)": what the array said, and about which object. */
function describe(response: RestResponse): string {
  const parsed = errorsSchema.safeParse(response.body);
  if (!parsed.success) return arrayMessage(response) ?? `HTTP ${response.status}`;
  const [first] = parsed.data.errors;
  return first.context ? `${first.message ?? 'refused'} (${first.context})` : (first.message ?? 'refused');
}
