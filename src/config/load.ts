import { readFileSync } from 'node:fs';
import { extname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { defaultMetadataPath } from '../paths.js';
import type { SecretRegistry } from '../secrets.js';
import { substituteEnv } from './env.js';
import { ConfigError } from './errors.js';

/**
 * Reads the config file (contract section 2): a `global` block of cinderlib.setup() options and
 * a list of backends, each the keyword arguments of cinderlib.Backend(...). Driver options are
 * validated later against the driver's own schema (src/backend-factory.ts); here we only check
 * the shape every backend shares.
 */

export type PersistenceConfig = { storage: 'memory' } | { storage: 'db'; path: string };

export interface GlobalOptions {
  persistence: PersistenceConfig;
  outputAllBackendInfo: boolean;
  readOnly: boolean;
  /** '' runs privileged commands directly (cinderlib's disable_sudo). */
  rootHelper: string;
}

export interface BackendSpec {
  name: string;
  /** Every option as the user wrote it (after ${env:} substitution), volume_backend_name included. */
  options: Record<string, unknown>;
}

export interface LoadedConfig {
  /** Where it came from: a file path or "embedded default". */
  source: string;
  global: GlobalOptions;
  backends: BackendSpec[];
  warnings: string[];
}

const bool = z.preprocess((v) => (typeof v === 'string' ? ['true', 'yes', 'on', '1'].includes(v.toLowerCase()) || (['false', 'no', 'off', '0'].includes(v.toLowerCase()) ? false : v) : v), z.boolean({ error: 'true or false' }));

const persistenceSchema = z
  .object({
    storage: z.enum(['memory', 'db'], { error: 'storage must be "memory" or "db"' }),
    connection: z.string({ error: 'connection must be a string such as sqlite:///ABS/PATH' }).optional(),
  })
  .strict();

const GLOBAL_KEYS = {
  persistence_config: persistenceSchema.optional(),
  output_all_backend_info: bool.optional(),
  read_only: bool.optional(),
  root_helper: z.string({ error: 'root_helper must be a string (empty runs commands directly)' }).optional(),
  disable_sudo: bool.optional(),
};

/** cinderlib.setup() options that have no effect here; accepted quietly so cinderlib configs paste. */
const IGNORED_CINDERLIB_GLOBALS = new Set([
  'disable_logs', 'debug', 'project_id', 'user_id', 'host', 'file_locks_path', 'lock_path',
  'suppress_requests_ssl_warnings', 'fail_on_missing_backend', 'locks_path',
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
    throw new ConfigError(`cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  let parsed: unknown;
  try {
    // yaml loads only for YAML files: JSON configs and the embedded default start faster.
    parsed = extname(path).toLowerCase() === '.json' ? JSON.parse(text) : (await import('yaml')).parse(text);
  } catch (error) {
    const kind = extname(path).toLowerCase() === '.json' ? 'JSON' : 'YAML';
    throw new ConfigError(`config file ${path} is not valid ${kind}: ${options.secrets.redact((error as Error).message.split('\n')[0] ?? '')}`);
  }
  return parseConfig(parsed, path, options);
}

export function parseConfig(document: unknown, source: string, options: LoadOptions): LoadedConfig {
  const env = options.env ?? process.env;
  if (!document || typeof document !== 'object' || Array.isArray(document)) {
    throw new ConfigError(`${source}: the config must be a mapping with "global" and "backends"`);
  }
  const substituted = substituteEnv(document, env, options.secrets) as Record<string, unknown>;
  options.secrets.registerFromOptions(substituted);
  const warnings: string[] = [];

  for (const key of Object.keys(substituted)) {
    if (key !== 'global' && key !== 'backends') warnings.push(`${source}: unknown top-level key "${key}" ignored (expected "global" and "backends")`);
  }

  const global = parseGlobal(substituted.global, source, warnings);
  const backends = parseBackends(substituted.backends, source);
  return { source, global, backends, warnings };
}

function parseGlobal(raw: unknown, source: string, warnings: string[]): GlobalOptions {
  const block = raw ?? {};
  if (typeof block !== 'object' || Array.isArray(block)) throw new ConfigError(`${source}: "global" must be a mapping of cinderlib.setup() options`);
  const result = globalSchema.safeParse(block);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new ConfigError(`${source}: global option "${issue.path.join('.')}": ${issue.message}`);
  }
  for (const key of Object.keys(block)) {
    if (!(key in GLOBAL_KEYS) && !IGNORED_CINDERLIB_GLOBALS.has(key)) {
      warnings.push(`${source}: unknown global option "${key}" kept but has no effect`);
    }
  }
  const options = result.data;
  const rootHelper = options.disable_sudo ? '' : (options.root_helper ?? 'sudo');
  return {
    persistence: parsePersistence(options.persistence_config, source),
    outputAllBackendInfo: options.output_all_backend_info ?? false,
    readOnly: options.read_only ?? false,
    rootHelper,
  };
}

/** `sqlite:///ABS/PATH` (as in the contract) and SQLAlchemy's `sqlite:////ABS/PATH` both mean /ABS/PATH. */
export function parsePersistence(raw: z.infer<typeof persistenceSchema> | undefined, source: string): PersistenceConfig {
  if (!raw) return { storage: 'db', path: defaultMetadataPath() };
  if (raw.storage === 'memory') return { storage: 'memory' };
  if (!raw.connection) return { storage: 'db', path: defaultMetadataPath() };
  const match = /^sqlite:\/\/\/(.+)$/.exec(raw.connection);
  if (!match) {
    const scheme = raw.connection.split(':')[0];
    throw new ConfigError(
      `${source}: persistence_config.connection "${scheme}:..." is not supported; use sqlite:///ABS/PATH (other engines are planned)`,
    );
  }
  const rest = match[1]!;
  if (rest === ':memory:') return { storage: 'memory' };
  const path = rest.startsWith('/') ? rest : `/${rest}`;
  return { storage: 'db', path: isAbsolute(path) ? path : resolve(path) };
}

function parseBackends(raw: unknown, source: string): BackendSpec[] {
  if (raw === undefined || raw === null) throw new ConfigError(`${source}: "backends" is missing; list at least one backend`);
  if (!Array.isArray(raw)) throw new ConfigError(`${source}: "backends" must be a list of backend option mappings`);
  if (raw.length === 0) throw new ConfigError(`${source}: "backends" is empty; list at least one backend`);
  const seen = new Set<string>();
  return raw.map((entry, index) => {
    if (!entry || typeof entry !== 'object' || Array.isArray(entry)) {
      throw new ConfigError(`${source}: backends[${index}] must be a mapping of driver options`);
    }
    const options = entry as Record<string, unknown>;
    const name = options.volume_backend_name;
    if (typeof name !== 'string' || name.trim() === '') {
      throw new ConfigError(`${source}: backends[${index}] needs "volume_backend_name" (a non-empty string naming the backend)`);
    }
    if (seen.has(name)) {
      throw new ConfigError(`${source}: two backends are named "${name}"; each volume_backend_name must be unique`);
    }
    seen.add(name);
    return { name, options };
  });
}
