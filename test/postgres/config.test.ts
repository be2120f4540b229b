import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { describePostgresUrl, driverUrl, postgresUrlPassword } from '../../src/store/postgres.js';
import { SecretRegistry } from '../../src/base/secrets.js';

/** persistence_config for PostgreSQL, without a server: parsing, ${env:} encoding, masking. */
function load(connection: string, env: NodeJS.ProcessEnv = {}) {
  const secrets = new SecretRegistry();
  const config = parseConfig({ global: { persistence_config: { storage: 'db', connection } }, backends: [{ volume_backend_name: 'b', volume_driver: 'x' }] }, 'c.yaml', {
    env,
    secrets,
  });
  return { persistence: config.global.persistence, secrets };
}

describe('postgresql persistence_config', () => {
  it("accepts postgresql://, postgres:// and SQLAlchemy's postgresql+psycopg2://, keeping the sqlite forms", () => {
    for (const url of ['postgresql://u:p4ss@db:5432/cinder', 'postgres://u:p4ss@db/cinder', 'postgresql+psycopg2://u:p4ss@db:5433/cinder']) {
      expect(load(url).persistence).toEqual({ storage: 'db', engine: 'postgresql', url });
    }
    expect(load('sqlite:////tmp/x.sqlite').persistence).toEqual({ storage: 'db', path: '/tmp/x.sqlite' });
    expect(() => load('mysql://u:p@h/d')).toThrow(
      /"mysql:\.\.\." is not supported; use sqlite:\/\/\/ABS\/PATH \(one server\) or a postgresql:\/\/ URL with user, password, host, port and database/,
    );
  });

  it('registers the password as a secret, decoded and as written', () => {
    const { secrets } = load('postgresql://cinder:s%40cret%2Fpw@db:5432/cinder');
    expect(secrets.redact('leaked s@cret/pw and s%40cret%2Fpw')).toBe('leaked *** and ***');
  });

  it('percent-encodes ${env:} values in the user name, password and database, not a whole URL or a host', () => {
    const env = { PGUSER: 'ad@min', PGPASS: 'p@ss/w:rd%', PGHOST: 'db.example.com', PGDB: 'my db', PGURL: 'postgresql://x:y@h:1/d' };
    const { persistence, secrets } = load('postgresql+psycopg2://${env:PGUSER}:${env:PGPASS}@${env:PGHOST}:5432/${env:PGDB}?application_name=${env:PGDB}', env);
    const url = (persistence as { url: string }).url;
    expect(url).toBe('postgresql+psycopg2://ad%40min:p%40ss%2Fw%3Ard%25@db.example.com:5432/my%20db?application_name=my%20db');
    const parsed = new URL(driverUrl(url));
    expect([decodeURIComponent(parsed.username), postgresUrlPassword(url), parsed.hostname]).toEqual(['ad@min', 'p@ss/w:rd%', 'db.example.com']);
    expect(secrets.redact(`url ${url}`)).not.toMatch(/p%40ss|p@ss/);
    expect(load('${env:PGURL}', env).persistence).toEqual({ storage: 'db', engine: 'postgresql', url: 'postgresql://x:y@h:1/d' });
  });

  it('describes a store by database, host and port only', () => {
    expect(describePostgresUrl('postgresql+psycopg2://u:secret@db.example.com:5433/cinder')).toBe('PostgreSQL cinder on db.example.com:5433');
    expect(describePostgresUrl('postgres://u:secret@db/cinder')).toBe('PostgreSQL cinder on db:5432');
  });

  it('names the shape, not the text, of a URL it cannot parse', () => {
    expect(() => load('postgresql://u:pa ss@[bad/cinder')).toThrow(/not a valid PostgreSQL URL/);
    try {
      load('postgresql://u:pa ss@[bad/cinder');
    } catch (error) {
      expect((error as Error).message).not.toContain('pa ss');
    }
  });
});
