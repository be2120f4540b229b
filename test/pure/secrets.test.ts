import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initiatorChapPassword } from '../../drivers/pure/chap.js';
import { PureEmulator } from '../emulators/pure/server.js';
import { BIN, REPO_ROOT, startMcpServer } from '../helpers/server.js';

/**
 * Contract sections 6, 8 and 11 for the Pure backend: the API token, every session token the array
 * issued and the CHAP password appear in no tool answer, no log line (debug level included), no
 * error text and no dump, even when the array echoes the request headers in its errors; the
 * host's administrator reads the CHAP credentials with `connection-secret` only.
 */
const TOKEN = '0f9e8d7c-6b5a-4321-9fed-cba987654321';
const array = new PureEmulator({ apiToken: TOKEN });
/** Every session token the emulator issued, whether still open or ended. */
const issued = new Set<string>();
const collect = () => array.sessions.forEach((token) => issued.add(token));

beforeAll(async () => {
  await array.start();
});
afterAll(async () => {
  await array.cleanup();
});

function cli(workDir: string, ...args: string[]) {
  const result = spawnSync(process.execPath, [BIN, ...args, '--config', join(workDir, 'config.yaml')], {
    encoding: 'utf8',
    cwd: REPO_ROOT,
    env: { ...process.env, XDG_DATA_HOME: join(workDir, 'data'), PURE_TOKEN: TOKEN, CINDERLIB_MCP_LOG_LEVEL: 'debug' },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('Pure secrets', () => {
  it('never shows the API token, a session token or a CHAP password; connection-secret gives the CHAP credentials to the administrator', async () => {
    const backend = array.cinderBackend('pure', { pure_api_token: '${env:PURE_TOKEN}', use_chap_auth: true });
    const server = await startMcpServer({ backends: [backend] }, { env: { PURE_TOKEN: TOKEN, CINDERLIB_MCP_LOG_LEVEL: 'debug' }, keepWorkDir: true });
    const answers: string[] = [];
    const call = async (name: string, args: Record<string, unknown> = {}) => {
      const answer = await server.call(name, args);
      answers.push(answer.text, JSON.stringify(answer.data ?? null));
      return answer;
    };
    const connector = { host: 'secret-host', initiator: 'iqn.1994-05.com.example:secret-host' };
    const password = initiatorChapPassword(TOKEN, connector.initiator);
    let connectionId = '';
    try {
      await call('list_backends');
      const volume = (await call('create_volume', { backend: 'pure', size: 1 })).data;
      collect();
      array.endSessions(); // a second session, made by the re-login
      const connected = await call('connect_volume', { volume_id: volume.id, connector });
      expect(connected.isError, connected.text).toBe(false);
      connectionId = connected.data.id;
      expect(connected.data.connection_info.data).toMatchObject({ auth_method: 'CHAP', auth_username: 'secret-host', auth_password: '***' });
      expect([...array.hosts.values()].find((host) => host.iqns.includes(connector.initiator))?.chap.host_password).toBe(password);
      collect();
      await call('list_connections', { volume_id: volume.id });
      await call('get_stats', { backend: 'pure', refresh: true });
      // Array errors that carry the request headers (the session token among them) are shown masked.
      array.echoRequestHeaders(true);
      array.inject({ method: 'PATCH', pathIncludes: '/volumes', status: 500, message: 'Internal server error.' });
      const failed = await call('extend_volume', { volume_id: volume.id, new_size: 2 });
      expect(failed.text).toMatch(/^BACKEND_UNAVAILABLE: .*HTTP 500: Internal server error\. \(.*"x-auth-token":"\*\*\*"/);
      array.echoRequestHeaders(false);
      collect();
      expect(issued.size).toBeGreaterThanOrEqual(2);
    } finally {
      array.clearFaults();
      array.echoRequestHeaders(false);
      await server.close();
    }
    try {
      const dumped = cli(server.workDir, 'dump');
      expect(dumped.code, dumped.stderr).toBe(0);
      expect(dumped.stdout).toContain(connectionId);
      const secret = cli(server.workDir, 'connection-secret', connectionId);
      expect(secret.code, secret.stderr).toBe(0);
      expect(secret.stdout).toBe(`auth_username: secret-host\nauth_password: ${password}\n`);
      const everything = [...answers, server.stderr(), dumped.stdout, dumped.stderr, secret.stderr].join('\n');
      expect(everything).toMatch(/POST \/api\/2\.26\/connections/); // the debug log was there to be searched
      for (const value of [TOKEN, password, ...issued]) expect(everything).not.toContain(value);
    } finally {
      rmSync(server.workDir, { recursive: true, force: true });
    }
  });
});
