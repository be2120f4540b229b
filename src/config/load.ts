/**
 * Reads the config file (contract section 2): a `global` block of cinderlib.setup() options and
 * a list of backends, each the keyword arguments of cinderlib.Backend(...). Driver options are
 * validated later against the driver's own schema (src/backend-factory.ts); here we only check
 * the shape every backend shares.
 */

import { errorCode } from '../base/errors.js';
import { readFileSync } from 'node:fs';
import { extname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { defaultMetadataPath } from '../base/paths.js';
import type { SecretRegistry } from '../base/secrets.js';
import { DEFAULT_LEASE_SECONDS } from './defaults.js';
import { substituteEnv, substituteEnvInUrl } from './env.js';
import { ConfigError } from './errors.js';
import { DEFAULT_TOOLSETS, resolveToolsets, type ToolsetName } from './toolsets.js';

/**
 * Where metadata lives: memory, a SQLite file (one server), or PostgreSQL (several servers sharing
 * it; `url` as configured, password included: open it, never print it).
 */
export type PersistenceConfig = { storage: 'memory' } | { storage: 'db'; engine?: 'sqlite'; path: string } | { storage: 'db'; engine: 'postgresql'; url: string };

export interface GlobalOptions {
  persistence: PersistenceConfig;
  outputAllBackendInfo: boolean;
  readOnly: boolean;
  /** The toolsets offered (global.toolsets, CINDERLIB_MCP_TOOLSETS, --toolsets), resolved: names in table order, backends included. */
  toolsets: ToolsetName[];
  /** '' runs privileged commands directly (cinderlib's disable_sudo). */
  rootHelper: string;
  /** This server's identity in the metadata store (cinderlib's `host`); undefined: hostname + data directory. */
  host?: string;
  /** How long an operation under way stays this server's after its last sign of life. */
  leaseSeconds: number;
  /** A file each audit record is also appended to, as a JSON line (global.audit_log). */
  auditLog?: string;
  /** When the audit file rotates: past a size, at the turn of each day (UTC), or both; and how many rotated files stay. */
  auditRotation?: AuditRotation;
  /** `serve --http` bearer tokens (global.http_tokens); absent: none configured. */
  httpTokens?: HttpToken[];
  /** Origins besides the server's own that may call /mcp (global.http_allowed_origins), as `new URL(x).origin`. */
  httpAllowedOrigins?: string[];
  /** An HTTP session with no request for this long ends (global.http_session_idle_seconds; default 3600). */
  httpSessionIdleSeconds?: number;
  /** The most sessions one token holds; beyond, its oldest idle one ends (global.http_sessions_per_token; default 100). */
  httpSessionsPerToken?: number;
}

/** One entry of global.http_tokens: `name` identifies the caller (audit log), `token` is a secret. */
export interface HttpToken {
  name: string;
  token: string;
  /** Sessions opened with this token see and may call only the read tools. */
  readOnly: boolean;
  /** The backends this token may use (absent: every backend). */
  backends?: string[];
}

export interface AuditRotation {
  maxBytes?: number;
  daily: boolean;
  /** Rotated files kept (audit.jsonl.1 the newest); older ones are removed. */
  keep: number;
}

export const DEFAULT_AUDIT_LOG_KEEP = 7;

export const DEFAULT_HTTP_SESSION_IDLE_SECONDS = 3600;
export const DEFAULT_HTTP_SESSIONS_PER_TOKEN = 100;
/** Bearer tokens shorter than this are refused: they could be guessed over the network. */
export const MIN_HTTP_TOKEN_LENGTH = 16;

export interface BackendSpec {
  name: string;
  /** Every option as the user wrote it (after ${env:} substitution), volume_backend_name included. */
  options: Record<string, unknown>;
  /** A problem of this backend's own config (a missing variable, a duplicate name): it is listed, not served. */
  error?: string;
}

export interface LoadedConfig {
  /** Where it came from: a file path or "embedded default". */
  source: string;
  /**
   * A problem with the file as a whole (unreadable, not YAML, no backends list): the server still
   * starts, lists no backend and answers every other tool with this, so the user sees it.
   */
  error?: string;
  global: GlobalOptions;
  backends: BackendSpec[];
  warnings: string[];
}

const bool = z.preprocess(
  (v) => (typeof v === 'string' ? ['true', 'yes', 'on', '1'].includes(v.toLowerCase()) || (['false', 'no', 'off', '0'].includes(v.toLowerCase()) ? false : v) : v),
  z.boolean({ error: 'true or false' }),
);

const persistenceSchema = z
  .object({
    storage: z.enum(['memory', 'db'], { error: 'storage must be "memory" or "db"' }),
    connection: z.string({ error: 'connection must be a string such as sqlite:///ABS/PATH, or a postgresql:// URL with user, password, host, port and database' }).optional(),
  })
  .strict();

const GLOBAL_KEYS = {
  persistence_config: persistenceSchema.optional(),
  output_all_backend_info: bool.optional(),
  read_only: bool.optional(),
  toolsets: z
    .union([z.string(), z.array(z.string({ error: 'each toolsets entry must be a string' }))], {
      error: 'toolsets must be a list of toolset names (or one comma-separated string)',
    })
    .optional(),
  root_helper: z.string({ error: 'root_helper must be a string (empty runs commands directly)' }).optional(),
  disable_sudo: bool.optional(),
  host: z.string({ error: 'host must be a string naming this server' }).min(1, { error: 'host must not be empty' }).optional(),
  audit_log: z.string({ error: 'audit_log must be the path of a file to append audit lines to' }).min(1, { error: 'audit_log must not be empty' }).optional(),
  http_tokens: z
    .array(
      z
        .object({
          name: z
            .string({ error: 'each http_tokens entry needs a name (a string naming the client, shown in the audit log)' })
            .trim()
            .min(1, { error: 'an http_tokens name must not be empty' }),
          token: z
            .string({ error: 'each http_tokens entry needs a token (a string; use ${env:NAME} to keep it out of the file)' })
            .min(MIN_HTTP_TOKEN_LENGTH, { error: `an http_tokens token must be at least ${MIN_HTTP_TOKEN_LENGTH} characters (e.g. the output of: openssl rand -hex 32)` }),
          read_only: bool.optional(),
          backends: z
            .array(z.string({ error: 'each http_tokens backends entry must be a volume_backend_name (a string)' }).min(1), {
              error: 'an http_tokens backends must be a list of volume_backend_name values the token may use',
            })
            .min(1, { error: 'an http_tokens backends list must name at least one backend (leave it out for every backend)' })
            .optional(),
        })
        .strict(),
      { error: 'http_tokens must be a list of {name, token, read_only?, backends?} mappings' },
    )
    .optional(),
  http_allowed_origins: z
    .array(
      z
        .string({ error: 'each http_allowed_origins entry must be a string' })
        .refine(isOrigin, { error: 'each http_allowed_origins entry must be an origin such as https://app.example.com or http://localhost:3000 (scheme, host and port only)' }),
      {
        error: 'http_allowed_origins must be a list of origins such as https://app.example.com',
      },
    )
    .optional(),
  http_session_idle_seconds: z
    .preprocess(
      (v) => (typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v),
      z.number({ error: 'http_session_idle_seconds must be a whole number of seconds from 1 to 604800' }).int().min(1).max(604_800),
    )
    .optional(),
  http_sessions_per_token: z
    .preprocess(
      (v) => (typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v),
      z.number({ error: 'http_sessions_per_token must be a whole number of sessions from 1 to 1000' }).int().min(1).max(1000),
    )
    .optional(),
  audit_log_max_bytes: z
    .preprocess(
      (v) => (typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v),
      z.number({ error: 'audit_log_max_bytes must be a whole number of bytes from 4096 up' }).int().min(4096),
    )
    .optional(),
  audit_log_rotate_daily: bool.optional(),
  audit_log_keep: z
    .preprocess(
      (v) => (typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v),
      z.number({ error: 'audit_log_keep must be a whole number of rotated files to keep, from 1 to 1000' }).int().min(1).max(1000),
    )
    .optional(),
  lease_seconds: z
    .preprocess(
      (v) => (typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v),
      z.number({ error: 'lease_seconds must be a whole number of seconds from 5 to 3600' }).int().min(5).max(3600),
    )
    .optional(),
};

/** cinderlib.setup() options that have no effect here; accepted quietly so cinderlib configs paste. */
const IGNORED_CINDERLIB_GLOBALS = new Set([
  'disable_logs',
  'debug',
  'project_id',
  'user_id',
  'file_locks_path',
  'lock_path',
  'suppress_requests_ssl_warnings',
  'fail_on_missing_backend',
  'locks_path',
]);

const globalSchema = z.object(GLOBAL_KEYS);

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  secrets: SecretRegistry;
}

export async function readConfigFile(path: string, options: LoadOptions): Promise<LoadedConfig> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${path}: ${errorCode(error) ?? String(error)}`);
  }
  let parsed: unknown;
  try {
    // yaml loads only for YAML files: JSON configs and the embedded default start faster.
    parsed = extname(path).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    const kind = extname(path).toLowerCase() === '.json' ? 'JSON' : 'YAML';
    throw new ConfigError(`config file ${path} is not valid ${kind}: ${options.secrets.redact(describeSyntaxError(error, text))}`);
  }
  return parseConfig(parsed, path, options);
}

export function parseConfig(document: unknown, source: string, options: LoadOptions): LoadedConfig {
  const env = options.env ?? process.env;
  if (!document || typeof document !== 'object' || Array.isArray(document)) {
    throw new ConfigError(`${source}: the config must be a mapping with "global" and "backends"`);
  }
  const raw = document as Record<string, unknown>;
  const warnings: string[] = [];
  for (const key of Object.keys(raw)) {
    if (key !== 'global' && key !== 'backends') warnings.push(`${source}: unknown top-level key "${key}" ignored (expected "global" and "backends")`);
  }
  const globalBlock = substituteEnv(raw.global ?? {}, env, options.secrets, `${source}: global`);
  substituteConnectionUrl(raw.global, globalBlock, env, options.secrets, source);
  options.secrets.registerFromOptions(globalBlock);
  const global = parseGlobal(globalBlock, source, warnings, options.secrets);
  const backends = parseBackends(raw.backends, source, env, options.secrets);
  const names = new Set(backends.map((spec) => spec.name));
  for (const token of global.httpTokens ?? []) {
    for (const name of token.backends ?? []) {
      if (!names.has(name)) warnings.push(`${source}: http_tokens "${token.name}" lists backend "${name}", which is not configured; its calls on it are refused like any other`);
    }
  }
  return { source, global, backends, warnings };
}

/** persistence_config.connection again, its `${env:}` values percent-encoded where the URL needs them. */
function substituteConnectionUrl(written: unknown, substituted: unknown, env: NodeJS.ProcessEnv, secrets: SecretRegistry, source: string): void {
  const connection = (written as { persistence_config?: { connection?: unknown } } | undefined)?.persistence_config?.connection;
  const target = (substituted as { persistence_config?: Record<string, unknown> } | undefined)?.persistence_config;
  if (typeof connection !== 'string' || !connection.includes('${') || !target || typeof target !== 'object') return;
  target.connection = substituteEnvInUrl(connection, env, secrets, `${source}: global.persistence_config.connection`);
}

function parseGlobal(raw: unknown, source: string, warnings: string[], secrets?: SecretRegistry): GlobalOptions {
  const block = raw ?? {};
  if (typeof block !== 'object' || Array.isArray(block)) throw new ConfigError(`${source}: "global" must be a mapping of cinderlib.setup() options`);
  const result = globalSchema.safeParse(block);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new ConfigError(`${source}: global option "${issue.path.join('.')}": ${issue.message}`);
  }
  for (const key of Object.keys(block)) {
    if (!(key in GLOBAL_KEYS) && !IGNORED_CINDERLIB_GLOBALS.has(key)) {
      warnings.push(`${source}: unknown global option "${key}" kept but has no effect`);
    }
  }
  const options = result.data;
  const rootHelper = options.disable_sudo ? '' : (options.root_helper ?? 'sudo -n');
  return {
    persistence: parsePersistence(options.persistence_config, source, secrets),
    outputAllBackendInfo: options.output_all_backend_info ?? false,
    host: options.host,
    auditLog: options.audit_log,
    ...(options.audit_log_max_bytes !== undefined || options.audit_log_rotate_daily
      ? { auditRotation: { maxBytes: options.audit_log_max_bytes, daily: options.audit_log_rotate_daily ?? false, keep: options.audit_log_keep ?? DEFAULT_AUDIT_LOG_KEEP } }
      : {}),
    leaseSeconds: options.lease_seconds ?? DEFAULT_LEASE_SECONDS,
    readOnly: options.read_only ?? false,
    toolsets: options.toolsets === undefined ? [...DEFAULT_TOOLSETS] : resolveToolsets(options.toolsets, `${source}: global option "toolsets"`),
    rootHelper,
    ...httpOptions(options, source),
  };
}

type HttpGlobalOptions = Pick<GlobalOptions, 'httpTokens' | 'httpAllowedOrigins' | 'httpSessionIdleSeconds' | 'httpSessionsPerToken'>;

/** The `serve --http` options, present only when configured. */
function httpOptions(options: z.infer<typeof globalSchema>, source: string): HttpGlobalOptions {
  const out: HttpGlobalOptions = {};
  if (options.http_tokens) {
    const names = new Set<string>();
    const tokens = new Set<string>();
    out.httpTokens = options.http_tokens.map((entry, index) => {
      if (names.has(entry.name)) throw new ConfigError(`${source}: global option "http_tokens.${index}.name": "${entry.name}" is used twice; each token needs its own name`);
      if (tokens.has(entry.token)) throw new ConfigError(`${source}: global option "http_tokens.${index}.token": the same token is listed twice; give each client its own token`);
      names.add(entry.name);
      tokens.add(entry.token);
      return { name: entry.name, token: entry.token, readOnly: entry.read_only ?? false, ...(entry.backends ? { backends: [...new Set(entry.backends)] } : {}) };
    });
  }
  if (options.http_allowed_origins) out.httpAllowedOrigins = options.http_allowed_origins.map((origin) => new URL(origin).origin);
  if (options.http_session_idle_seconds !== undefined) out.httpSessionIdleSeconds = options.http_session_idle_seconds;
  if (options.http_sessions_per_token !== undefined) out.httpSessionsPerToken = options.http_sessions_per_token;
  return out;
}

/** `scheme://host[:port]`, nothing more (a trailing slash is tolerated): what browsers send as Origin. */
function isOrigin(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && !url.username && !url.password && url.pathname === '/' && !url.search && !url.hash && !/[?#]/.test(value);
  } catch {
    return false;
  }
}

/**
 * `sqlite:///ABS/PATH` (as in the contract) and SQLAlchemy's `sqlite:////ABS/PATH` both mean
 * /ABS/PATH. `postgresql://USER:PASS@HOST:PORT/DB` (also `postgres://` and SQLAlchemy's
 * `postgresql+psycopg2://`) is PostgreSQL; its password is registered as a secret.
 */
export function parsePersistence(raw: z.infer<typeof persistenceSchema> | undefined, source: string, secrets?: SecretRegistry): PersistenceConfig {
  if (!raw) return { storage: 'db', path: defaultMetadataPath() };
  if (raw.storage === 'memory') return { storage: 'memory' };
  if (!raw.connection) return { storage: 'db', path: defaultMetadataPath() };
  if (POSTGRES_URL.test(raw.connection)) return parsePostgresUrl(raw.connection, source, secrets);
  const match = /^sqlite:\/\/\/(.+)$/.exec(raw.connection);
  if (!match) {
    const scheme = raw.connection.split(':')[0];
    throw new ConfigError(
      `${source}: persistence_config.connection "${scheme}:..." is not supported; use sqlite:///ABS/PATH (one server) or a postgresql:// URL with user, password, host, port and database (several servers)`,
    );
  }
  const rest = match[1];
  if (rest === ':memory:') return { storage: 'memory' };
  const path = rest.startsWith('/') ? rest : `/${rest}`;
  return { storage: 'db', path: isAbsolute(path) ? path : resolve(path) };
}

const POSTGRES_URL = /^(postgresql|postgres)(\+[A-Za-z0-9_]+)?:\/\//i;

function parsePostgresUrl(connection: string, source: string, secrets: SecretRegistry | undefined): PersistenceConfig {
  let url: URL;
  try {
    url = new URL(connection.replace(POSTGRES_URL, 'postgresql://'));
  } catch {
    // The text may hold a password: the message names the shape, not the value.
    throw new ConfigError(
      `${source}: persistence_config.connection is not a valid PostgreSQL URL; write postgresql:// then user:password@host:port/database, percent-encoding any "@", "/", ":" or "%" in the user name or password (\${env:} values are encoded for you)`,
    );
  }
  if (url.password) {
    secrets?.register(url.password);
    try {
      secrets?.register(decodeURIComponent(url.password));
    } catch {
      // not percent-encoded text: registered as written
    }
  }
  for (const key of ['password', 'passfile', 'sslpassword']) {
    const value = url.searchParams.get(key);
    if (value) secrets?.register(value);
  }
  return { storage: 'db', engine: 'postgresql', url: connection };
}

/**
 * The backends list. A problem of one backend (its missing variable, a missing or repeated name)
 * disables that backend only, listed with the reason; a list that is missing or empty is the
 * file's problem.
 */
function parseBackends(raw: unknown, source: string, env: NodeJS.ProcessEnv, secrets: SecretRegistry): BackendSpec[] {
  if (raw === undefined || raw === null) throw new ConfigError(`${source}: "backends" is missing; list at least one backend`);
  if (!Array.isArray(raw)) throw new ConfigError(`${source}: "backends" must be a list of backend option mappings`);
  if (raw.length === 0) throw new ConfigError(`${source}: "backends" is empty; list at least one backend`);
  const specs: BackendSpec[] = [];
  const byName = new Map<string, { spec: BackendSpec; places: string[] }>();
  raw.forEach((entry, index) => {
    const place = `backends[${index}]`;
    const spec = parseBackend(entry, place, source, env, secrets);
    const seen = byName.get(spec.name);
    if (!seen) {
      byName.set(spec.name, { spec, places: [place] });
      specs.push(spec);
      return;
    }
    // Volumes are routed by backend name: with two candidates neither can be trusted.
    seen.places.push(place);
    seen.spec.error = `${source}: ${seen.places.join(' and ')} are all named "${spec.name}"; each volume_backend_name must be unique, so none of them serves until the others are renamed`;
    const { volume_driver } = seen.spec.options;
    seen.spec.options = { volume_backend_name: spec.name, ...(volume_driver !== undefined ? { volume_driver } : {}) };
  });
  return specs;
}

function parseBackend(entry: unknown, place: string, source: string, env: NodeJS.ProcessEnv, secrets: SecretRegistry): BackendSpec {
  if (!entry || typeof entry !== 'object' || Array.isArray(entry)) {
    return { name: place, options: {}, error: `${source}: ${place} must be a mapping of driver options` };
  }
  const written = entry as Record<string, unknown>;
  const writtenName = typeof written.volume_backend_name === 'string' && !written.volume_backend_name.includes('${') ? written.volume_backend_name.trim() : '';
  const label = writtenName || place;
  let options: Record<string, unknown>;
  try {
    options = substituteEnv(written, env, secrets, `${source}: ${place}`) as Record<string, unknown>;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const driver = typeof written.volume_driver === 'string' ? { volume_driver: written.volume_driver } : {};
    return { name: label, options: { volume_backend_name: label, ...driver }, error: error.message };
  }
  secrets.registerFromOptions(options);
  const name = options.volume_backend_name;
  if (typeof name !== 'string' || name.trim() === '') {
    return { name: place, options: {}, error: `${source}: ${place} needs "volume_backend_name" (a non-empty string naming the backend)` };
  }
  return { name, options };
}

/**
 * A parser's complaint with where it happened: YAML's own message keeps its excerpt (line,
 * column and a caret under the spot); JSON's position is turned into a line and column.
 */
function describeSyntaxError(error: unknown, text: string): string {
  const message = error instanceof Error ? error.message.trim() : String(error);
  const position = /at position (\d+)/.exec(message);
  if (!position || /line \d+/.test(message)) return message;
  const before = text.slice(0, Number(position[1]));
  const line = before.split('\n').length;
  const column = before.length - before.lastIndexOf('\n');
  return `${message} (line ${line}, column ${column})`;
}
