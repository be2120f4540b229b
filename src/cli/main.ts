import { describeError } from '../base/errors.js';
import { ConfigError } from '../config/errors.js';
import type { LoadedConfig } from '../config/load.js';
import { resolveConfig } from '../config/resolve.js';
import { TOOLSETS, TOOLSET_NAMES, resolveToolsets } from '../config/toolsets.js';
import { createLogger, guardStderr, type Logger } from '../base/log.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { BackendRegistry } from '../core/registry.js';
import { secrets } from '../base/secrets.js';
import { VERSION } from '../base/version.js';

const TOOLSET_HELP = TOOLSET_NAMES.map((name) => `  ${name}: ${TOOLSETS[name].description}`).join('\n');

const USAGE = `cinderlib-mcp ${VERSION}: block storage for AI assistants, over MCP (stdio)

Usage:
  cinderlib-mcp [--config FILE] [--toolsets a,b]
                                        serve MCP over stdio
  cinderlib-mcp serve --http [--host 127.0.0.1] [--port 8808] [--config FILE] [--toolsets a,b]
                                        serve MCP over Streamable HTTP at /mcp (health at /healthz);
                                        bearer tokens from global.http_tokens, required beyond loopback
  cinderlib-mcp check [--config FILE]   initialize every backend, print a summary, exit 0 if all are up
  cinderlib-mcp dump [--config FILE] [--backend ID]
                                        write the metadata store as cinderlib's JSON (cl.dumps())
  cinderlib-mcp load FILE [--config FILE]
                                        add a cinderlib dump (ours or Python cinderlib's) to the
                                        metadata store: all of it, or nothing
  cinderlib-mcp import-cinder-conf [FILE]
                                        convert cinder.conf (default /etc/cinder/cinder.conf) into
                                        this project's YAML config on stdout, secrets as \${env:...}
  cinderlib-mcp audit [--since ISO-TIME] [--config FILE]
                                        print the audit records (every mutating call) as JSON Lines
  cinderlib-mcp connection-secret CONNECTION_ID [--config FILE]
                                        print a connection's CHAP credentials (for the host's
                                        administrator; never available over MCP)
  cinderlib-mcp --help | --version

Config lookup: --config, then $CINDERLIB_MCP_CONFIG, then the embedded default
(one "file" backend under $XDG_DATA_HOME/cinderlib-mcp). CINDERLIB_MCP_READ_ONLY=true hides
every mutating tool.
Toolsets (--toolsets, else $CINDERLIB_MCP_TOOLSETS, else global.toolsets; default: default):
${TOOLSET_HELP}
  all: every toolset; default: backends, volumes, snapshots, connections (e.g. default,discovery).
Logs go to stderr (CINDERLIB_MCP_LOG_LEVEL=debug|info|warn|error).
On end of input, SIGTERM or SIGINT the server stops reading, lets calls in flight finish and
answers them before it exits, for up to CINDERLIB_MCP_SHUTDOWN_GRACE_MS (default 30000) ms;
a second signal exits at once.`;

interface Command {
  mode: 'serve' | 'check' | 'connection-secret' | 'dump' | 'load' | 'audit' | 'help' | 'version';
  configPath?: string;
  /** The command's one positional argument: connection-secret's id, load's file. */
  operand?: string;
  /** dump --backend ID. */
  backend?: string;
  /** audit --since ISO-TIME. */
  since?: string;
  /** serve --http [--host H] [--port N]. */
  http?: { host: string; port: number };
  /** --toolsets a,b (serve, check). */
  toolsets?: string;
}

const DEFAULT_HTTP_HOST = '127.0.0.1';
const DEFAULT_HTTP_PORT = 8808;

/** Commands and the name of their one positional argument, if they take one. */
const SUBCOMMANDS: Record<string, string | undefined> = {
  check: undefined,
  serve: undefined,
  dump: undefined,
  audit: undefined,
  load: 'a dump file',
  'connection-secret': 'a connection id (list_connections shows them)',
};

function isSubcommand(arg: string): arg is Command['mode'] {
  return Object.hasOwn(SUBCOMMANDS, arg);
}

export function parseArgs(argv: string[]): Command {
  const command: Command = { mode: 'serve' };
  let subcommandSeen = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') return { mode: 'help' };
    if (arg === '--version' || arg === '-v') return { mode: 'version' };
    // The subcommand may follow the options (cinderlib-mcp --config X check), but comes once.
    if (!subcommandSeen && isSubcommand(arg)) {
      command.mode = arg;
      subcommandSeen = true;
    } else if (SUBCOMMANDS[command.mode] && command.operand === undefined && !arg.startsWith('-')) command.operand = arg;
    else if (command.mode === 'serve' && (arg === '--http' || /^--(host|port)(=|$)/.test(arg))) {
      command.http ??= { host: DEFAULT_HTTP_HOST, port: DEFAULT_HTTP_PORT };
      if (arg === '--http') continue;
      const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, argv[++i]];
      if (!inline) throw new ConfigError(`${flag} needs a value (${flag === '--host' ? 'an address such as 127.0.0.1' : 'a port number such as 8808'})`);
      if (flag === '--host') command.http.host = inline;
      else if (/^\d{1,5}$/.test(inline) && Number(inline) <= 65535) command.http.port = Number(inline);
      else throw new ConfigError(`--port needs a port number from 0 to 65535, got "${inline}"`);
      if (!argv.includes('--http')) throw new ConfigError(`${flag} is for serve --http; add --http`);
    } else if (command.mode === 'audit' && (arg === '--since' || arg.startsWith('--since='))) {
      const value = arg === '--since' ? argv[++i] : arg.slice('--since='.length);
      if (!value || Number.isNaN(Date.parse(value))) throw new ConfigError('--since needs a date and time (ISO 8601, e.g. 2026-11-26T10:00:00Z)');
      command.since = new Date(value).toISOString();
    } else if (command.mode === 'dump' && (arg === '--backend' || arg.startsWith('--backend='))) {
      const value = arg === '--backend' ? argv[++i] : arg.slice('--backend='.length);
      if (!value) throw new ConfigError('--backend needs a volume_backend_name');
      command.backend = value;
    } else if ((command.mode === 'serve' || command.mode === 'check') && (arg === '--toolsets' || arg.startsWith('--toolsets='))) {
      const value = arg === '--toolsets' ? argv[++i] : arg.slice('--toolsets='.length);
      if (value === undefined || value.startsWith('-')) throw new ConfigError(`--toolsets needs a comma-separated list: ${[...TOOLSET_NAMES, 'all', 'default'].join(', ')}`);
      resolveToolsets(value, '--toolsets'); // an unknown name stops here, before anything starts
      command.toolsets = value;
    } else if (arg === '--config' || arg === '-c') {
      const value = argv[++i];
      if (value === undefined) throw new ConfigError('--config needs a file path');
      command.configPath = value;
    } else if (arg.startsWith('--config=')) command.configPath = arg.slice('--config='.length);
    else throw new ConfigError(`unknown argument "${arg}"; see cinderlib-mcp --help`);
  }
  const operand = SUBCOMMANDS[command.mode];
  if (operand && command.operand === undefined) throw new ConfigError(`${command.mode} needs ${operand}`);
  return command;
}

export async function main(argv: string[]): Promise<number> {
  guardStderr();
  const log = createLogger();
  let command: Command;
  // import-cinder-conf reads no config of ours and takes its own arguments.
  if (argv[0] === 'import-cinder-conf') {
    guardStdout();
    const { runImportCinderConf } = await import('./cinder-conf/index.js');
    const answer = await runImportCinderConf(argv.slice(1));
    process.stdout.write(answer.stdout);
    process.stderr.write(answer.stderr);
    return answer.code;
  }
  try {
    command = parseArgs(argv);
  } catch (error) {
    process.stderr.write(`${describeError(error)}\n`);
    return 2;
  }
  // The stdio server watches stdout itself (its client leaving); every other command writes for a reader that may go.
  if (command.mode !== 'serve' || command.http) guardStdout();
  try {
    if (command.mode === 'help') {
      process.stdout.write(USAGE + '\n');
      return 0;
    }
    if (command.mode === 'version') {
      process.stdout.write(VERSION + '\n');
      return 0;
    }
    const config = await resolveConfig(command.configPath, secrets, process.env, { toolsets: command.toolsets });
    if (command.mode === 'connection-secret') {
      const { connectionSecret } = await import('./connection-secret.js');
      const answer = await connectionSecret(config, command.operand!);
      process.stdout.write(answer.stdout);
      process.stderr.write(answer.stderr);
      return answer.code;
    }
    if (command.mode === 'audit') {
      const [{ auditCommand }, { openVolumeStoreForReading }] = await Promise.all([import('../core/audit.js'), import('../store/index.js')]);
      const store = await openVolumeStoreForReading(config.global.persistence);
      try {
        await auditCommand(store, command.since, writeStdout);
      } finally {
        await store.close();
      }
      return 0;
    }
    if (command.mode === 'dump' || command.mode === 'load') {
      const { dumpCommand, loadCommand } = await import('./dump-load.js');
      const out = { write: writeStdout, error: (text: string) => void process.stderr.write(text) };
      return command.mode === 'dump' ? await dumpCommand(config, command.backend, secrets, out) : await loadCommand(config, command.operand!, secrets, out);
    }
    if (command.mode === 'serve' && command.http) return await serveHttpCommand(config, command.http, log);
    return command.mode === 'check' ? await check(config, log) : await serve(config, log);
  } catch (error) {
    // `cinderlib-mcp dump | head`: the reader has what it wanted; nothing failed.
    if (error instanceof StdoutClosed) return 0;
    if (error instanceof ConfigError) {
      log.error(`config error: ${error.message}`);
      return 1;
    }
    log.error(`fatal: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}

async function check(config: LoadedConfig, log: Logger): Promise<number> {
  if (config.error) {
    process.stdout.write(secrets.redact(`config: ${withSource(config.source, config.error)}`) + '\n');
    return 1;
  }
  const { BackendRegistry } = await import('../core/registry.js');
  const registry = await BackendRegistry.open(config, secrets, log, true);
  await registry.settled();
  const lines = [`config: ${config.source}${config.global.readOnly ? ' (read-only)' : ''}`];
  // A shared store is looked at (reached, nothing written); a SQLite file is left to the server that holds it.
  let storeUp = true;
  const persistence = config.global.persistence;
  if (persistence.storage === 'db' && persistence.engine === 'postgresql') {
    const { describePostgresUrl, probePostgres } = await import('../store/postgres.js');
    const reason = await probePostgres(persistence.url, secrets);
    storeUp = reason === undefined;
    lines.push(`store\t${describePostgresUrl(persistence.url)}\t${reason === undefined ? 'reachable' : `not reachable: ${reason}`}`);
  }
  for (const backend of registry.list()) {
    lines.push(`${backend.id}\t${backend.volumeDriver}\t${backend.initialized ? 'initialized' : `not initialized: ${backend.error}`}`);
    for (const note of backend.notes) lines.push(`  note: ${note}`);
    for (const warning of backend.warnings) lines.push(`  warning: ${warning}`);
  }
  process.stdout.write(secrets.redact(lines.join('\n')) + '\n');
  const allUp = storeUp && registry.list().every((backend) => backend.initialized);
  await registry.close();
  return allUp ? 0 : 1;
}

async function serve(config: LoadedConfig, log: Logger): Promise<number> {
  const readOnly = config.global.readOnly;
  const offer = { toolsets: config.global.toolsets, readOnly };
  const [{ BoundedStdioTransport }, { answerBeforeSdk, readPrebuiltListing }] = await Promise.all([import('../mcp/transport/stdio.js'), import('../mcp/startup-answers.js')]);
  // The SDK and zod take most of a cold start: the start-up answers (initialize, tools/list) go
  // out before they load, and they load (with the store and drivers) as soon as initialize is answered.
  const listing = readPrebuiltListing();
  let server: Server | undefined;
  let serverReady: Promise<void> | undefined;
  const loadServer = () => (serverReady ??= connectServer());
  // Loaded in the background: a server that cannot load (a broken install) ends the process with its reason.
  const loadServerInBackground = () => {
    loadServer().catch((error: unknown) => {
      log.error(`the MCP server could not load: ${error instanceof Error ? error.message : String(error)}`);
      process.exit(1);
    });
  };
  const loadServerSoon = () => void setImmediate(loadServerInBackground);
  const transport = new BoundedStdioTransport({
    log,
    earlyResponder: (request) => {
      const result = listing && answerBeforeSdk(request, listing, offer);
      if (!result) return undefined;
      // Loading starts once initialize is answered: the client's round trips overlap with it.
      if (request.method === 'initialize' || request.method === 'tools/list') loadServerSoon();
      return { result, alsoDeliver: request.method === 'initialize' };
    },
    onserverwanted: loadServerSoon,
  });
  transport.listen();
  if (!listing) loadServerSoon();

  let resolveRegistry!: (registry: BackendRegistry) => void;
  let rejectRegistry!: (error: Error) => void;
  const registryReady = new Promise<BackendRegistry>((resolve, reject) => {
    resolveRegistry = resolve;
    rejectRegistry = reject;
  });
  registryReady.catch(() => undefined); // reported per tool call, not as an unhandled rejection

  async function connectServer(): Promise<void> {
    // The metadata store and drivers load alongside the SDK (their file reads and the SDK's overlap);
    // initialize and tools/list never wait for either, tool calls wait for the registry.
    void openRegistry();
    const { createMcpServer } = await import('../mcp/server.js');
    server = createMcpServer({ registry: registryReady, readOnly, toolsets: config.global.toolsets, ...(listing ? { listing } : {}), secrets, log });
    await server.connect(transport);
  }

  /** Never rejects: a store that cannot open rejects registryReady, which each tool call reports. */
  async function openRegistry(): Promise<void> {
    try {
      const { BackendRegistry } = await import('../core/registry.js');
      resolveRegistry(await BackendRegistry.open(config, secrets, log));
    } catch (error) {
      // BackendRegistry.open already words it as a coded error naming the store.
      log.error(error instanceof Error ? error.message : String(error));
      if (error instanceof Error && error.name === 'StartupRefusal') process.exit(1);
      rejectRegistry(error instanceof Error ? error : new Error(String(error)));
    }
  }

  const graceMs = shutdownGraceMs(log);
  let closing = false;
  // Calls in flight are answered before exit: a create cut short leaves a record in status error.
  const shutdown = async (why: string) => {
    if (closing) return;
    closing = true;
    log.info(`shutting down (${why}): finishing ${transport.callsInFlight} call(s) in flight, for up to ${graceMs} ms`);
    if (transport.callsInFlight > 0) await loadServer(); // requests waiting for the server are answered by it
    const { unanswered, unflushedBytes } = await transport.finish(graceMs);
    if (unanswered.length > 0) {
      log.warn(
        `${unanswered.length} call(s) still running after ${graceMs} ms were abandoned (request ids ${unanswered.map((id) => JSON.stringify(id)).join(', ')}); ` +
          'volumes they were creating or changing show status error at the next start',
      );
    }
    if (unflushedBytes > 0) log.warn(`${unflushedBytes} bytes of answers were never read by the client`);
    await server?.close().catch(() => undefined);
    if (serverReady) await registryReady.then((registry) => registry.close()).catch(() => undefined);
    process.exit(0);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (!closing) return void shutdown(signal);
    log.warn(`${signal} again while shutting down: exiting now, ${transport.callsInFlight} call(s) unfinished`);
    process.exit(1);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  transport.onclientgone = (why) => void shutdown(why);
  process.on('unhandledRejection', (reason) => log.error(`unhandled rejection: ${String(reason)}`));
  log.info(`serving MCP over stdio (${config.source}; ${config.backends.length} backend(s)${readOnly ? '; read-only' : ''})`);
  return new Promise<number>(() => undefined); // runs until stdin closes or a signal arrives
}

/** `serve --http`: MCP over Streamable HTTP (src/transport/http.ts); stdin is never read. */
async function serveHttpCommand(config: LoadedConfig, { host, port }: { host: string; port: number }, log: Logger): Promise<number> {
  // Unlike stdio (where a desktop user reads the reason in the client), a server with an unusable
  // config, and so without its tokens, does not start.
  if (config.error) {
    log.error(`config error: ${withSource(config.source, config.error)}; serve --http does not start until it is fixed`);
    return 1;
  }
  const [{ serveHttp, assertHttpBindingAllowed }, { BackendRegistry }] = await Promise.all([import('../mcp/transport/http.js'), import('../core/registry.js')]);
  assertHttpBindingAllowed(host, config.global.httpTokens); // before the store is opened
  // The store opens before the port does: an unreachable store ends start-up with its reason.
  const registry = await BackendRegistry.open(config, secrets, log);
  const server = await serveHttp({ config, registry: Promise.resolve(registry), secrets, log, host, port, storeHealth: () => registry.storeHealth(), ...httpLoadLimits() }).catch(
    async (error: unknown) => {
      await registry.close().catch(() => undefined);
      throw error;
    },
  );
  const graceMs = shutdownGraceMs(log);
  let closing = false;
  const shutdown = async (why: string) => {
    closing = true;
    log.info(`shutting down (${why}): finishing ${server.requestsInFlight} request(s) in flight, for up to ${graceMs} ms`);
    const { abandoned } = await server.close(graceMs);
    if (abandoned > 0) {
      log.warn(`${abandoned} request(s) still running after ${graceMs} ms were abandoned; volumes they were creating or changing show status error at the next start`);
    }
    await registry.close().catch(() => undefined);
    process.exit(0);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (!closing) return void shutdown(signal);
    log.warn(`${signal} again while shutting down: exiting now, ${server.requestsInFlight} request(s) unfinished`);
    process.exit(1);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('unhandledRejection', (reason) => log.error(`unhandled rejection: ${String(reason)}`));
  const tokens = config.global.httpTokens ?? [];
  log.info(
    `serving MCP over HTTP at ${server.url} (${config.source}; ${config.backends.length} backend(s); ` +
      `${tokens.length > 0 ? `${tokens.length} bearer token(s)` : 'no bearer token: loopback only'}${config.global.readOnly ? '; read-only' : ''})`,
  );
  return new Promise<number>(() => undefined); // runs until a signal arrives
}

/** Thrown by writeStdout once stdout's reader has gone (EPIPE): the command ends quietly, status 0. */
class StdoutClosed extends Error {
  constructor() {
    super('stdout was closed by its reader');
  }
}

let stdoutClosed = false;

/** A failed write to stdout (EPIPE, say) marks it closed instead of ending the process as an uncaught error. */
function guardStdout(): void {
  process.stdout.on('error', () => void (stdoutClosed = true));
}

/** Writes to stdout, waiting when the pipe is full (a dump of a large store is written piece by piece). */
function writeStdout(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (stdoutClosed) return reject(new StdoutClosed());
    if (process.stdout.write(text)) return resolve();
    const settle = (error?: Error) => {
      process.stdout.off('error', settle);
      process.stdout.off('drain', settle);
      if (error) reject(new StdoutClosed());
      else resolve();
    };
    process.stdout.once('error', settle);
    process.stdout.once('drain', settle);
  });
}

/**
 * The body budget and stall time of `serve --http`, overridable for tests only (not a config
 * option): CINDERLIB_MCP_HTTP_BODY_BUDGET_BYTES, CINDERLIB_MCP_HTTP_BODY_STALL_MS.
 */
function httpLoadLimits(): { bodyBudgetBytes?: number; bodyStallMs?: number } {
  const whole = (raw: string | undefined) => (raw && /^\d+$/.test(raw) && Number(raw) > 0 ? Number(raw) : undefined);
  const bodyBudgetBytes = whole(process.env.CINDERLIB_MCP_HTTP_BODY_BUDGET_BYTES);
  const bodyStallMs = whole(process.env.CINDERLIB_MCP_HTTP_BODY_STALL_MS);
  return { ...(bodyBudgetBytes ? { bodyBudgetBytes } : {}), ...(bodyStallMs ? { bodyStallMs } : {}) };
}

const DEFAULT_SHUTDOWN_GRACE_MS = 30_000;

/** How long calls in flight may run on after stdin closes or a signal: CINDERLIB_MCP_SHUTDOWN_GRACE_MS. */
function shutdownGraceMs(log: Logger): number {
  const raw = process.env.CINDERLIB_MCP_SHUTDOWN_GRACE_MS;
  if (raw === undefined || raw === '') return DEFAULT_SHUTDOWN_GRACE_MS;
  const value = Number(raw);
  if (Number.isInteger(value) && value >= 0) return value;
  log.warn(`CINDERLIB_MCP_SHUTDOWN_GRACE_MS=${JSON.stringify(raw)} is not a whole number of milliseconds; using ${DEFAULT_SHUTDOWN_GRACE_MS}`);
  return DEFAULT_SHUTDOWN_GRACE_MS;
}

/** A config error names its file once: most already start with it. */
function withSource(source: string, error: string): string {
  return error.includes(source) ? error : `${source}: ${error}`;
}
