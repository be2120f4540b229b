import { spawnSync } from 'node:child_process';
import { BIN, REPO_ROOT } from './server.js';

/** What `cinderlib-mcp connection-secret` printed for a connection: its exit code and output, and the CHAP pair it named. */
export interface ConnectionSecret {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Undefined at run time when the command printed none (the type says what a test expects of a printed secret). */
  username: string;
  password: string;
}

/** Runs `connection-secret <id> --config <configPath>` as the host's administrator does, and reads its `key: value` lines. */
export function connectionSecret(configPath: string, connectionId: string): ConnectionSecret {
  const result = spawnSync(process.execPath, [BIN, 'connection-secret', connectionId, '--config', configPath], { encoding: 'utf8', cwd: REPO_ROOT });
  const lines = Object.fromEntries(
    result.stdout
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split(': ') as [string, string]),
  );
  return { code: result.status, stdout: result.stdout, stderr: result.stderr, username: lines.auth_username, password: lines.auth_password };
}
