import { Client, type ClientChannel, type ConnectConfig } from 'ssh2';
import type { Logger } from '../../../src/base/log.js';
import { readRegularFile } from '../../../src/base/regular-file.js';
import { KnownHosts } from './known-hosts.js';
import { shellCommand } from './quote.js';
import { CommandTransportError, DEFAULT_COMMAND_TIMEOUT_MS, refuseUnprivileged, type CommandResult, type CommandRunner, type RunOptions } from './runner.js';

/**
 * Runs commands on a remote host over SSH (ssh2): a small pool of connections
 * (ssh_min_pool_conn..ssh_max_pool_conn), a dead connection replaced on the next command, a
 * timeout per command, and Cinder's host key policy.
 */
export interface SshRunnerOptions {
  host: string;
  port: number;
  username: string;
  password?: string;
  privateKeyPath?: string;
  connectTimeoutMs: number;
  minConnections: number;
  maxConnections: number;
  knownHostsFile: string;
  strictHostKeyPolicy: boolean;
  commandTimeoutMs?: number;
  log: Logger;
}

interface PooledConnection {
  client: Client;
  alive: boolean;
}

export class SshRunner implements CommandRunner {
  readonly target: string;
  private readonly idle: PooledConnection[] = [];
  private readonly waiting: Array<(connection: PooledConnection | null) => void> = [];
  private open = 0;
  private closed = false;
  private readonly knownHosts: KnownHosts;

  constructor(private readonly options: SshRunnerOptions) {
    this.target = `${options.username}@${options.host}:${options.port}`;
    this.knownHosts = new KnownHosts(options.knownHostsFile, options.strictHostKeyPolicy);
  }

  async run(argv: readonly string[], options: RunOptions): Promise<CommandResult> {
    const command = shellCommand(argv);
    // One retry, and only when the channel never opened: the command cannot have run twice.
    for (let attempt = 1; ; attempt++) {
      const connection = await this.acquire(options.operation);
      let channel: ClientChannel;
      try {
        channel = await this.openChannel(connection, command);
      } catch (error) {
        this.discard(connection);
        if (attempt < 2) {
          this.options.log.warn(`${options.operation}: SSH connection to ${this.target} was lost (${(error as Error).message}); reconnecting`);
          continue;
        }
        throw new CommandTransportError(`${options.operation}: cannot run a command on ${this.target}: ${(error as Error).message}`, 'unreachable');
      }
      let result: CommandResult;
      try {
        const collected = this.collect(channel, options.timeoutMs ?? this.options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS, options.operation);
        channel.end(options.input ?? '');
        result = await collected;
      } catch (error) {
        this.discard(connection);
        throw error;
      }
      this.release(connection);
      return refuseUnprivileged(argv, result, this.target, options.operation);
    }
  }

  async isRoot(): Promise<boolean> {
    return this.options.username === 'root';
  }

  /** Opens the minimum number of connections, surfacing host key and login problems early. */
  async warmUp(): Promise<void> {
    const connections: PooledConnection[] = [];
    try {
      for (let i = 0; i < Math.max(1, this.options.minConnections); i++) connections.push(await this.acquire('connect'));
    } finally {
      for (const connection of connections) this.release(connection);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const connection of this.idle.splice(0)) connection.client.end();
    for (const waiter of this.waiting.splice(0)) waiter(null);
  }

  private async acquire(operation: string): Promise<PooledConnection> {
    if (this.closed) throw new CommandTransportError(`${operation}: the SSH runner for ${this.target} is closed`, 'unreachable');
    while (this.idle.length > 0) {
      const connection = this.idle.pop()!;
      if (connection.alive) return connection;
      this.open--;
      this.options.log.warn(`${operation}: SSH connection to ${this.target} was lost while idle; reconnecting`);
    }
    if (this.open < this.options.maxConnections) {
      this.open++;
      try {
        return await this.connect(operation);
      } catch (error) {
        this.open--;
        throw error;
      }
    }
    const connection = await new Promise<PooledConnection | null>((resolve) => this.waiting.push(resolve));
    if (!connection) throw new CommandTransportError(`${operation}: the SSH runner for ${this.target} is closed`, 'unreachable');
    return connection.alive ? connection : this.acquire(operation);
  }

  private release(connection: PooledConnection): void {
    if (!connection.alive) return this.discard(connection);
    const waiter = this.waiting.shift();
    if (waiter) waiter(connection);
    else this.idle.push(connection);
  }

  private discard(connection: PooledConnection): void {
    connection.alive = false;
    connection.client.end();
    this.open = Math.max(0, this.open - 1);
    const waiter = this.waiting.shift();
    if (waiter) {
      // Let the next caller open a fresh connection in the freed slot.
      this.acquire('reconnect').then(waiter, () => waiter(null));
    }
  }

  private async connect(operation: string): Promise<PooledConnection> {
    const { host, port, username, password, privateKeyPath, connectTimeoutMs } = this.options;
    let hostKeyRefusal: string | undefined;
    const config: ConnectConfig = {
      host,
      port,
      username,
      readyTimeout: connectTimeoutMs,
      keepaliveInterval: 15_000,
      // ssh2's callback form: the known_hosts file is read and written without blocking the event loop.
      hostVerifier: (key: Buffer, verify: (valid: boolean) => void) => {
        this.knownHosts.verify(host, port, key).then(
          (verdict) => {
            if (!verdict.accepted) hostKeyRefusal = verdict.reason;
            else if (verdict.recorded) this.options.log.info(`trusted ${this.target} on first use; its host key is recorded in ${this.knownHosts.file}`);
            verify(verdict.accepted);
          },
          (error: Error) => {
            hostKeyRefusal = `cannot check the host key of ${this.target}: ${error.message}`;
            verify(false);
          },
        );
      },
    };
    if (privateKeyPath) {
      // Asynchronous, regular files only, bounded: a FIFO or a /proc path fails this backend, never the event loop.
      try {
        config.privateKey = await readRegularFile(privateKeyPath);
      } catch (error) {
        throw new CommandTransportError(`${operation}: cannot read san_private_key ${privateKeyPath}: ${(error as Error).message}`, 'auth');
      }
    } else if (password) {
      config.password = password;
    }
    return new Promise((resolve, reject) => {
      const client = new Client();
      const connection: PooledConnection = { client, alive: false };
      let settled = false;
      client.on('ready', () => {
        settled = true;
        connection.alive = true;
        resolve(connection);
      });
      const onDown = () => {
        connection.alive = false;
      };
      client.on('close', onDown);
      client.on('end', onDown);
      client.on('error', (error: Error & { level?: string; code?: string }) => {
        connection.alive = false;
        if (settled) return;
        settled = true;
        reject(this.connectError(operation, error, hostKeyRefusal));
      });
      try {
        client.connect(config);
      } catch (error) {
        // ssh2 parses the key before connecting: a file that is not a key fails here.
        settled = true;
        const message = (error as Error).message;
        reject(
          privateKeyPath && /privateKey/i.test(message)
            ? new CommandTransportError(`${operation}: san_private_key ${privateKeyPath} is not a usable private key: ${message}`, 'auth')
            : this.connectError(operation, error as Error),
        );
      }
    });
  }

  private connectError(operation: string, error: Error & { level?: string; code?: string }, hostKeyRefusal?: string): CommandTransportError {
    if (hostKeyRefusal) return new CommandTransportError(`${operation}: ${hostKeyRefusal}`, 'host-key');
    if (error.level === 'client-authentication') {
      return new CommandTransportError(`${operation}: ${this.target} refused the login; check san_login and san_password or san_private_key`, 'auth');
    }
    if (/timed out/i.test(error.message)) {
      return new CommandTransportError(`${operation}: ${this.target} did not answer within ssh_conn_timeout (${this.options.connectTimeoutMs / 1000} s)`, 'timeout');
    }
    return new CommandTransportError(`${operation}: cannot reach ${this.target}: ${error.code ?? error.message}`, 'unreachable');
  }

  private openChannel(connection: PooledConnection, command: string): Promise<ClientChannel> {
    if (!connection.alive) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      try {
        connection.client.exec(command, (error, channel) => (error ? reject(error) : resolve(channel)));
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  private collect(channel: ClientChannel, timeoutMs: number, operation: string): Promise<CommandResult> {
    return new Promise((resolve, reject) => {
      let stdout = '';
      let stderr = '';
      let exitCode: number | null = null;
      const timer = setTimeout(() => {
        channel.close();
        reject(new CommandTransportError(`${operation}: the command on ${this.target} did not finish within ${timeoutMs} ms`, 'timeout'));
      }, timeoutMs);
      channel.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
      channel.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      channel.on('exit', (code: number | null) => (exitCode = code));
      channel.on('close', (code?: number | null) => {
        clearTimeout(timer);
        const final = exitCode ?? (typeof code === 'number' ? code : null);
        if (final === null) {
          reject(new CommandTransportError(`${operation}: the connection to ${this.target} closed before the command finished`, 'unreachable'));
        } else {
          resolve({ exitCode: final, stdout, stderr });
        }
      });
    });
  }
}
