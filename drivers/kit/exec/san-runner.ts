import { join } from 'node:path';
import type { Logger } from '../../../src/base/log.js';
import { parseSanIp } from '../options.js';
import { LocalRunner } from './local.js';
import type { CommandRunner } from './runner.js';
import { SshRunner } from './ssh.js';

/** The SAN options (sanOptionSet) a driver that runs commands on san_ip reads. */
export interface SanSshOptions {
  san_ip?: string;
  san_ssh_port: number;
  san_login: string;
  san_password: string;
  san_private_key?: string;
  ssh_conn_timeout: number;
  ssh_min_pool_conn: number;
  ssh_max_pool_conn: number;
  ssh_hosts_key_file?: string;
  strict_ssh_host_key_policy: boolean;
}

/** Where a driver's commands run, and how messages name that host. */
export interface SanCommandHost {
  runner: CommandRunner;
  hostLabel: string;
  /** san_ip's host (no port) when the commands run there over SSH; undefined on this host. */
  remoteHost?: string;
}

/**
 * Where a driver's commands run: on san_ip over SSH when it is set (a pool of connections, host
 * keys as Cinder trusts them), else on this host.
 */
export function sanCommandRunner(options: SanSshOptions, context: { dataDir: string; log: Logger }): SanCommandHost {
  const address = options.san_ip ? parseSanIp(options.san_ip) : undefined;
  if (!address) return { runner: new LocalRunner(), hostLabel: 'this host' };
  const port = address.port ?? options.san_ssh_port;
  const runner = new SshRunner({
    host: address.host,
    port,
    username: options.san_login,
    password: options.san_password || undefined,
    privateKeyPath: options.san_private_key,
    connectTimeoutMs: options.ssh_conn_timeout * 1000,
    minConnections: Math.min(options.ssh_min_pool_conn, options.ssh_max_pool_conn),
    maxConnections: options.ssh_max_pool_conn,
    knownHostsFile: options.ssh_hosts_key_file ?? join(context.dataDir, 'ssh_known_hosts'),
    strictHostKeyPolicy: options.strict_ssh_host_key_policy,
    log: context.log,
  });
  return { runner, hostLabel: `${address.host}:${port}`, remoteHost: address.host };
}
