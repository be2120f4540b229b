import { StorageError } from '../../../src/base/errors.js';

/**
 * The one command runner interface, with two transports (local child_process, SSH). Commands
 * are argv arrays; nothing is interpreted by a local shell, and the SSH transport quotes every
 * argument with the one quoting function in quote.ts.
 */
export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** What the command is for, in messages: "create volume-123". */
  operation: string;
  /** Overrides the runner's default per-command timeout. */
  timeoutMs?: number;
  /** Written to the command's standard input: how secrets reach a command without showing in its argv. */
  input?: string;
  /** Kills the command when aborted (a cancelled copy); the run then rejects with a CommandTransportError of kind 'cancelled'. */
  signal?: AbortSignal;
}

export interface CommandRunner {
  /** Runs argv; resolves with the exit code and output (a non-zero exit is not a throw). */
  run(argv: readonly string[], options: RunOptions): Promise<CommandResult>;
  /** "this host" or "root@10.0.0.5:22", for messages. */
  readonly target: string;
  /** Whether commands run as root there (then no root helper is needed). */
  isRoot(): Promise<boolean>;
  close(): Promise<void>;
}

/** What privileged commands on `runner`'s host start with: nothing as root, else the global root_helper (e.g. "sudo -n"). */
export async function privilegedPrefix(runner: CommandRunner, rootHelper: string): Promise<string[]> {
  return (await runner.isRoot()) ? [] : nonInteractive(rootHelper.split(/\s+/).filter(Boolean));
}

/** sudo never prompts (section 11): with -n a missing privilege is an answer, not a password prompt on someone's terminal. */
function nonInteractive(helper: string[]): string[] {
  const [command, ...rest] = helper;
  if (!command || command.split('/').pop() !== 'sudo' || rest.includes('-n') || rest.includes('--non-interactive')) return helper;
  return [command, '-n', ...rest];
}

/** What sudo -n says when it would have asked for a password, or when the user may not run the command at all. */
const SUDO_REFUSALS = /^sudo: (a password is required|a terminal is required|.* is not in the sudoers file|sorry, user .* is not allowed to execute)/m;

/**
 * A command the root helper refused to run is UNSUPPORTED on this host, not a failure worth a
 * retry: the message names root_helper and what would allow it. Every runner passes its results
 * through this.
 */
export function refuseUnprivileged(argv: readonly string[], result: CommandResult, target: string, operation: string): CommandResult {
  if (result.exitCode === 0 || argv[0]?.split('/').pop() !== 'sudo' || !SUDO_REFUSALS.test(result.stderr)) return result;
  const command = argv.slice(1).find((arg) => !arg.startsWith('-')) ?? 'the command';
  throw new StorageError(
    'UNSUPPORTED',
    `${operation}: the root helper (root_helper: "${argv.slice(0, argv.indexOf(command)).join(' ')}") may not run ${command} without a password on ${target} (${result.stderr.trim().split('\n', 1)[0]}); allow it in sudoers (NOPASSWD), set root_helper, or run the server as root`,
  );
}

/** Raised when a command could not be run at all (spawn failure, connection lost, timeout). */
export class CommandTransportError extends Error {
  constructor(
    message: string,
    readonly kind: 'unreachable' | 'host-key' | 'auth' | 'timeout' | 'spawn' | 'cancelled',
  ) {
    super(message);
    this.name = 'CommandTransportError';
  }
}

export const DEFAULT_COMMAND_TIMEOUT_MS = 120_000;
