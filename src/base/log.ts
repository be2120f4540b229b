import { secrets } from './secrets.js';

/** Logs go to stderr only: stdout carries nothing but JSON-RPC. Every line is redacted. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const LEVEL_ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

function configuredLevel(): LogLevel {
  const wanted = process.env.CINDERLIB_MCP_LOG_LEVEL?.toLowerCase();
  return wanted && isLogLevel(wanted) ? wanted : 'info';
}

function isLogLevel(name: string): name is LogLevel {
  return Object.hasOwn(LEVEL_ORDER, name);
}

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  child(scope: string): Logger;
}

/**
 * Set once stderr fails (EPIPE: whoever read the logs went away). Logging then stops; the process
 * goes on (contract section 11): a log reader is never a reason to die.
 */
let stderrGone = false;

function onStderrError(): void {
  stderrGone = true;
}

/**
 * Without a listener, a failed write to stderr is an uncaught exception that ends the process. One
 * listener, added once, for every writer of stderr (the logger and the CLI's own messages).
 */
let stderrGuarded = false;

export function guardStderr(): void {
  if (stderrGuarded) return;
  stderrGuarded = true;
  process.stderr.on('error', onStderrError);
}

function writeLine(line: string): void {
  if (stderrGone) return;
  guardStderr();
  try {
    process.stderr.write(line + '\n');
  } catch {
    stderrGone = true;
  }
}

export function createLogger(scope = 'cinderlib-mcp'): Logger {
  const threshold = LEVEL_ORDER[configuredLevel()];
  const write = (level: LogLevel, message: string) => {
    if (LEVEL_ORDER[level] < threshold || stderrGone) return;
    writeLine(secrets.redact(`${new Date().toISOString()} ${level.toUpperCase()} [${scope}] ${message}`));
  };
  return {
    debug: (message) => write('debug', message),
    info: (message) => write('info', message),
    warn: (message) => write('warn', message),
    error: (message) => write('error', message),
    child: (childScope) => createLogger(`${scope}:${childScope}`),
  };
}
