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

/** What privileged commands on `runner`'s host start with: nothing as root, else the global root_helper (e.g. "sudo"). */
export async function privilegedPrefix(runner: CommandRunner, rootHelper: string): Promise<string[]> {
  return (await runner.isRoot()) ? [] : rootHelper.split(/\s+/).filter(Boolean);
}

/** Raised when a command could not be run at all (spawn failure, connection lost, timeout). */
export class CommandTransportError extends Error {
  constructor(
    message: string,
    readonly kind: 'unreachable' | 'host-key' | 'auth' | 'timeout' | 'spawn',
  ) {
    super(message);
    this.name = 'CommandTransportError';
  }
}

export const DEFAULT_COMMAND_TIMEOUT_MS = 120_000;
