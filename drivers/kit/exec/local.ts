import { execFile } from 'node:child_process';
import { CommandTransportError, DEFAULT_COMMAND_TIMEOUT_MS, refuseUnprivileged, type CommandResult, type CommandRunner, type RunOptions } from './runner.js';

/** Runs commands on this host with execFile: an argv array, never a shell. */
export class LocalRunner implements CommandRunner {
  readonly target = 'this host';

  constructor(private readonly defaultTimeoutMs = DEFAULT_COMMAND_TIMEOUT_MS) {}

  async run(argv: readonly string[], options: RunOptions): Promise<CommandResult> {
    return refuseUnprivileged(argv, await this.spawn(argv, options), this.target, options.operation);
  }

  private spawn(argv: readonly string[], options: RunOptions): Promise<CommandResult> {
    const [file, ...args] = argv;
    if (!file) return Promise.reject(new CommandTransportError(`${options.operation}: empty command`, 'spawn'));
    const timeout = options.timeoutMs ?? this.defaultTimeoutMs;
    return new Promise((resolve, reject) => {
      const child = execFile(file, args, { timeout, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', signal: options.signal }, (error, stdout, stderr) => {
        if (!error) return resolve({ exitCode: 0, stdout, stderr });
        const failure = error as NodeJS.ErrnoException & { code?: string | number; killed?: boolean };
        if (options.signal?.aborted) return reject(new CommandTransportError(`${options.operation}: ${file} was stopped: the call was cancelled`, 'cancelled'));
        if (failure.killed) {
          return reject(new CommandTransportError(`${options.operation}: ${file} did not finish within ${timeout} ms`, 'timeout'));
        }
        if (typeof failure.code === 'number') return resolve({ exitCode: failure.code, stdout, stderr });
        reject(new CommandTransportError(`${options.operation}: cannot run ${file} (${failure.code ?? failure.message})`, 'spawn'));
      });
      // EPIPE from a command that exits without reading its input is not a failure of the run.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(options.input ?? '');
    });
  }

  async isRoot(): Promise<boolean> {
    return process.getuid?.() === 0;
  }

  async close(): Promise<void> {}
}
