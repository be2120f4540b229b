import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { parseConfig } from '../../src/config/load.js';
import { SecretRegistry } from '../../src/base/secrets.js';

const parse = (doc: unknown, env: Record<string, string> = {}) => {
  const secrets = new SecretRegistry();
  return { config: parseConfig(doc, 'test.yaml', { env, secrets }), secrets };
};

describe('config parsing', () => {
  it('reads the contract example shape, with cinderlib defaults', () => {
    const { config } = parse({
      global: { persistence_config: { storage: 'db', connection: 'sqlite:///var/lib/cinderlib-mcp/meta.sqlite' } },
      backends: [{ volume_backend_name: 'lvm', volume_driver: 'cinder.volume.drivers.lvm.LVMVolumeDriver', volume_group: 'cinder-volumes' }],
    });
    expect(config.global).toEqual({
      persistence: { storage: 'db', path: '/var/lib/cinderlib-mcp/meta.sqlite' },
      outputAllBackendInfo: false,
      readOnly: false,
      rootHelper: 'sudo -n',
      leaseSeconds: 30,
      // Contract section 14's default toolsets.
      toolsets: ['backends', 'volumes', 'snapshots', 'connections'],
    });
    expect(config.backends[0].options.volume_group).toBe('cinder-volumes');
    const named = parse({ global: { host: 'storage-1', lease_seconds: '45' }, backends: [{ volume_backend_name: 'a' }] }).config.global;
    expect(named).toMatchObject({ host: 'storage-1', leaseSeconds: 45 });
    expect(() => parse({ global: { lease_seconds: 1 }, backends: [{ volume_backend_name: 'a' }] })).toThrow(/lease_seconds must be a whole number of seconds from 5 to 3600/);
    expect(parse({ global: { http_sessions_per_token: '3' }, backends: [{ volume_backend_name: 'a' }] }).config.global.httpSessionsPerToken).toBe(3);
    expect(() => parse({ global: { http_sessions_per_token: 0 }, backends: [{ volume_backend_name: 'a' }] })).toThrow(
      /http_sessions_per_token must be a whole number of sessions from 1 to 1000/,
    );
  });

  it('accepts SQLAlchemy four-slash URLs and memory storage', () => {
    const four = parse({ global: { persistence_config: { storage: 'db', connection: 'sqlite:////tmp/x.sqlite' } }, backends: [{ volume_backend_name: 'a' }] });
    expect(four.config.global.persistence).toEqual({ storage: 'db', path: '/tmp/x.sqlite' });
    const memory = parse({ global: { persistence_config: { storage: 'memory' } }, backends: [{ volume_backend_name: 'a' }] });
    expect(memory.config.global.persistence).toEqual({ storage: 'memory' });
  });

  it('substitutes ${env:NAME} and treats every substituted value as a secret', () => {
    const { config, secrets } = parse(
      { backends: [{ volume_backend_name: 'x', san_ip: '${env:ARRAY_HOST}:8443', san_password: '${env:PW}' }] },
      { ARRAY_HOST: 'array.example', PW: 's3cr3t-value' },
    );
    expect(config.backends[0].options.san_ip).toBe('array.example:8443');
    expect(secrets.redact('login with s3cr3t-value at array.example')).toBe('login with *** at ***');
  });

  it('names a missing environment variable, never a value, and disables only that backend', () => {
    const { config } = parse({ backends: [{ volume_backend_name: 'x', san_password: '${env:MISSING_PW}' }, { volume_backend_name: 'y' }] });
    expect(config.backends[0]).toMatchObject({ name: 'x', error: expect.stringMatching(/environment variable MISSING_PW is not set/) });
    expect(config.backends[1].error).toBeUndefined();
    expect(() => parse({ global: { persistence_config: { storage: 'db', connection: 'sqlite:///${env:MISSING_DB}' } }, backends: [{ volume_backend_name: 'y' }] })).toThrow(
      /global.*environment variable MISSING_DB is not set/,
    );
  });

  it('maps root_helper and disable_sudo like cinderlib', () => {
    expect(parse({ global: { disable_sudo: true }, backends: [{ volume_backend_name: 'a' }] }).config.global.rootHelper).toBe('');
    expect(parse({ global: { root_helper: 'doas' }, backends: [{ volume_backend_name: 'a' }] }).config.global.rootHelper).toBe('doas');
  });

  it('refuses what cannot work, naming the place', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ backends: [] }, /"backends" is empty/],
      [{ global: {} }, /"backends" is missing/],
      [{ global: { read_only: 'maybe' }, backends: [{ volume_backend_name: 'a' }] }, /global option "read_only": true or false/],
      [{ global: { persistence_config: { storage: 'redis' } }, backends: [{ volume_backend_name: 'a' }] }, /storage must be "memory" or "db"/],
    ];
    for (const [doc, message] of cases) {
      expect(() => parse(doc)).toThrow(ConfigError);
      expect(() => parse(doc)).toThrow(message);
    }
  });

  it('lists a backend without a name, or with a taken one, as not serving, and serves the others', () => {
    const { config } = parse({
      backends: [{ volume_driver: 'lvm' }, { volume_backend_name: 'a' }, { volume_backend_name: 'b' }, { volume_backend_name: 'a', volume_driver: 'file' }],
    });
    expect(config.backends.map((spec) => [spec.name, spec.error ?? 'ok'])).toEqual([
      ['backends[0]', 'test.yaml: backends[0] needs "volume_backend_name" (a non-empty string naming the backend)'],
      ['a', 'test.yaml: backends[1] and backends[3] are all named "a"; each volume_backend_name must be unique, so none of them serves until the others are renamed'],
      ['b', 'ok'],
    ]);
  });

  it('warns about unknown global keys but accepts cinderlib setup options', () => {
    const { config } = parse({ global: { disable_logs: true, colour: 'blue' }, backends: [{ volume_backend_name: 'a' }] });
    expect(config.warnings).toEqual(['test.yaml: unknown global option "colour" kept but has no effect']);
  });
});

describe('secret masking', () => {
  it('masks by key name and by value, in encodings too', () => {
    const secrets = new SecretRegistry();
    secrets.registerFromOptions({ san_password: 'pa55-word!', nested: { chap_secret: 'chapchap' } });
    expect(secrets.maskOptions({ san_password: 'pa55-word!', san_login: 'admin', x_token: 'anything', note: 'pw is pa55-word!' })).toEqual({
      san_password: '***',
      san_login: 'admin',
      x_token: '***',
      note: 'pw is ***',
    });
    expect(secrets.redact(`a=${encodeURIComponent('pa55-word!')} b=${Buffer.from('pa55-word!').toString('base64')}`)).toBe('a=*** b=***');
  });
});
