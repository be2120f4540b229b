import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, REPO_ROOT, startMcpServer, type McpHarness } from '../helpers/server.js';

/**
 * Canary secrets through every tool and every failure we can provoke: none may appear, whole or
 * encoded, in any result, error text or stderr line.
 */
const PASSWORD = 'Canary-Pa55word-7f3a9c';
const TOKEN = 'canary-token-91be22d4';
const ENV_SECRET = 'canary-env-d00dfeed';
const CHAP = 'canary-chap-5150';
const PASSWD = 'canary-passwd-4e1b';
const API_KEY = 'canary-apikey-88c0';
const PASS = 'canary-pass-0b7d';
const URL_PASSWORD = 'canary-urlpw-6a2f';
const CANARIES = [PASSWORD, TOKEN, ENV_SECRET, CHAP, PASSWD, API_KEY, PASS, URL_PASSWORD];
/** An ${env:} value inside san_ip: URL parsing lowercases it, so it is hunted in any letter case. */
const HOST_FROM_ENV = 'LocalHost';
/** Too short to hunt in free text, but still a secret in the config view. */
const SHORT_ENV = 'Zq';
const ENV = { CANARY_DIR_PART: ENV_SECRET, K2_PASSWORD: PASSWORD, XMS_HOST: HOST_FROM_ENV, SHORT_ENV };

function forms(secret: string): string[] {
  return [secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64'), secret.slice(0, 12)];
}

function expectNoSecret(text: string, where: string): void {
  for (const canary of CANARIES) for (const form of forms(canary)) expect(text, `${where} leaks ${form}`).not.toContain(form);
  expect(text.toLowerCase(), `${where} leaks the env-derived host`).not.toContain(HOST_FROM_ENV.toLowerCase());
}

describe('secrets never leave the process', () => {
  let root: string;
  let server: McpHarness;
  const transcript: string[] = [];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-secrets-'));
    server = await startMcpServer(
      {
        global: { output_all_backend_info: true, persistence_config: { storage: 'memory' } },
        backends: [
          {
            volume_backend_name: 'files',
            volume_driver: 'file',
            volumes_dir: join(root, 'vols-${env:CANARY_DIR_PART}'),
            api_token: TOKEN,
            target_chap_password: CHAP,
          },
          {
            // Unreachable array with real credentials: the failure path must not echo them.
            volume_backend_name: 'far-xtremio',
            volume_driver: 'cinder.volume.drivers.dell_emc.xtremio.XtremIOISCSIDriver',
            san_ip: '127.0.0.1:9',
            xtremio_cluster_name: 'xtremio_cluster',
            san_login: 'xtremio_user',
            san_password: PASSWORD,
          },
          {
            volume_backend_name: 'far-k2',
            volume_driver: 'kaminario',
            san_ip: '127.0.0.1:9',
            san_login: 'admin',
            san_password: '${env:K2_PASSWORD}',
          },
          {
            // Wrong type on a secret option: the error names the option, never the value.
            volume_backend_name: 'bad-types',
            volume_driver: 'file',
            volumes_dir: join(root, 'bad'),
            max_over_subscription_ratio: PASSWORD,
          },
          {
            // Names beyond the contract's fragments, and a password inside a URL.
            volume_backend_name: 'widened',
            volume_driver: 'file',
            volumes_dir: join(root, 'widened'),
            san_passwd: PASSWD,
            api_key: API_KEY,
            san_pass: PASS,
            proxy_url: `https://proxy-user:${URL_PASSWORD}@proxy.example:3128/`,
            short_env: '${env:SHORT_ENV}',
          },
          {
            // The array address comes from the environment; errors show the URL's lowercased host.
            volume_backend_name: 'env-host',
            volume_driver: 'xtremio',
            san_ip: '${env:XMS_HOST}:9',
            san_login: 'xtremio_user',
            san_password: PASSWORD,
          },
        ],
      },
      { env: ENV },
    );
  });
  afterAll(async () => {
    await server?.close();
    rmSync(root, { recursive: true, force: true });
  });

  const record = async (name: string, args: Record<string, unknown> = {}) => {
    const answer = await server.call(name, args);
    transcript.push(`${name}: ${answer.text} ${JSON.stringify(answer.data ?? null)}`);
    return answer;
  };

  it('masks secrets in list_backends config, including ${env:} substitutions', async () => {
    const answer = await record('list_backends');
    const files = answer.data.backends.find((b: { id: string }) => b.id === 'files');
    expect(files.config.api_token).toBe('***');
    expect(files.config.target_chap_password).toBe('***');
    expect(files.config.volumes_dir).toBe(join(root, 'vols-***'));
    const xtremio = answer.data.backends.find((b: { id: string }) => b.id === 'far-xtremio');
    expect(xtremio.config.san_password).toBe('***');
    expect(xtremio.config.san_login).toBe('xtremio_user');
    expect(xtremio.initialized).toBe(false);
    expect(xtremio.error).toBeTruthy();
    const badTypes = answer.data.backends.find((b: { id: string }) => b.id === 'bad-types');
    expect(badTypes.initialized).toBe(false);
    expect(badTypes.error).toMatch(/backend "bad-types": option "max_over_subscription_ratio" must be a number of at least 1 \(such as 20 or 1\.5\), or "auto", got \*\*\*$/);
    const widened = answer.data.backends.find((b: { id: string }) => b.id === 'widened');
    expect(widened.config).toMatchObject({
      san_passwd: '***',
      api_key: '***',
      san_pass: '***',
      proxy_url: 'https://proxy-user:***@proxy.example:3128/',
      short_env: '***',
      volume_backend_name: 'widened',
    });
    const envHost = answer.data.backends.find((b: { id: string }) => b.id === 'env-host');
    expect(envHost.config.san_ip).toBe('***:9');
  });

  it('masks an env-derived host in errors whatever its letter case', async () => {
    let answer = await record('list_backends');
    // Initialization may still be under way: wait for the failure (bounded by the test timeout).
    while (!answer.data.backends.find((b: { id: string }) => b.id === 'env-host').error) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      answer = await record('list_backends');
    }
    const envHost = answer.data.backends.find((b: { id: string }) => b.id === 'env-host');
    expect(envHost.initialized).toBe(false);
    expect(envHost.error).toMatch(/cannot reach https:\/\/\*\*\*:9/);
    const stats = await record('get_stats', { backend: 'env-host', refresh: true });
    expect(stats.isError).toBe(true);
    await record('create_volume', { backend: 'env-host', size: 1 });
    for (const line of transcript) expectNoSecret(line, line.slice(0, 40));
  });

  it('keeps the check command output free of secrets', async () => {
    const run = promisify(execFile);
    const env = { ...process.env, ...ENV, XDG_DATA_HOME: join(server.workDir, 'data') };
    const result = await run(process.execPath, [BIN, 'check', '--config', join(server.workDir, 'config.yaml')], { cwd: REPO_ROOT, env }).then(
      (done) => ({ ...done, failed: false }),
      (error: { stdout: string; stderr: string }) => ({ stdout: error.stdout, stderr: error.stderr, failed: true }),
    );
    expect(result.failed).toBe(true); // unreachable arrays: not every backend initialized
    expect(result.stdout).toMatch(/env-host\t.*not initialized: .*cannot reach https:\/\/\*\*\*:9/);
    expectNoSecret(result.stdout, 'check stdout');
    expectNoSecret(result.stderr, 'check stderr');
  });

  it('masks secrets in every tool result and failure', async () => {
    await record('get_stats', { backend: 'files', refresh: true });
    await record('pool_names', { backend: 'files' });
    const created = await record('create_volume', { backend: 'files', size: 1, name: `named ${PASSWORD}`, description: TOKEN });
    await record('get_volume', { volume_id: created.data.id });
    await record('list_volumes', {});
    await record('extend_volume', { volume_id: created.data.id, new_size: 2 });
    await record('create_volume', { backend: 'files', size: 10_000_000 });
    await record('create_volume', { backend: 'far-xtremio', size: 1 });
    await record('get_stats', { backend: 'far-k2' });
    await record('pool_names', { backend: 'far-xtremio' });
    await record('get_stats', { backend: PASSWORD });
    await record('create_volume', { backend: 'files', size: 1, pool_name: ENV_SECRET });
    await record('list_volumes', { cursor: Buffer.from(PASSWORD).toString('base64url') });
    await record('create_volume', { backend: 'files', size: PASSWORD });
    rmSync(join(root, `vols-${ENV_SECRET}`), { recursive: true, force: true });
    await record('create_volume', { backend: 'files', size: 1 });
    await record('delete_volume', { volume_id: created.data.id });
    expect(transcript.length).toBeGreaterThan(10);
    for (const line of transcript) expectNoSecret(line, line.slice(0, 40));
    // Values the user typed into name/description are masked too when they match a secret.
    expect(created.data.name).toBe('named ***');
  });

  it('keeps stderr free of secrets', async () => {
    expect(server.stderr().length).toBeGreaterThan(0);
    expectNoSecret(server.stderr(), 'stderr');
  });
});
