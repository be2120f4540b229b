import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { isSecretKey } from '../../src/base/secrets.js';
import { convertCinderConf, envNameFor } from '../../src/cli/cinder-conf/convert.js';
import { REPO_ROOT } from '../helpers/server.js';

/**
 * Contract section 15: import-cinder-conf against what real cinderlib 5.0.0's cinder_to_yaml
 * wrote for the same cinder.conf files (test/fixtures/cinderlib/cinder-conf/, made as
 * test/fixtures/cinderlib/README.md says). Every option cinder_to_yaml keeps is kept, with the
 * same value (lists as lists); where this project deliberately differs, the test names it.
 */
const SAMPLES = join(REPO_ROOT, 'test', 'fixtures', 'cinderlib', 'cinder-conf');

/** Options cinder_to_yaml drops that this project keeps, and why. */
const KEPT_HERE = {
  // Cinder defaults target_ip_address to [DEFAULT] my_ip: without it exports would advertise another address.
  target_ip_address: 'my_ip',
  // Contract section 9: a section without volume_backend_name takes the section's name.
  volume_backend_name: 'section',
  // cinderlib's own RBD option (the keyring it puts in connections): cinder_to_yaml drops it, though cinderlib reads it.
  rbd_keyring_conf: 'cinderlib',
} as const;

describe.each(['lvm', 'xtremio', 'kaminario', 'pure', 'rbd', 'several'])("import-cinder-conf on %s.conf, against cinderlib's cinder_to_yaml", (sample) => {
  it('keeps what cinder_to_yaml keeps, with its values; secrets become environment references', async () => {
    const conf = readFileSync(join(SAMPLES, `${sample}.conf`), 'utf8');
    const theirs: Record<string, unknown>[] = parse(readFileSync(join(SAMPLES, `${sample}.yaml`), 'utf8')).backends;
    const converted = await convertCinderConf(conf, `${sample}.conf`);
    const ours: Record<string, unknown>[] = parse(converted.yaml).backends;
    const sections = /enabled_backends\s*=\s*(.*)/
      .exec(conf)![1]
      .split(',')
      .map((name) => name.trim());
    const myIp = /^my_ip\s*=\s*(.*)$/m.exec(conf)?.[1].trim();
    expect(ours).toHaveLength(theirs.length);
    theirs.forEach((expected, index) => {
      const mine = ours[index];
      const section = sections[index];
      for (const [option, value] of Object.entries(expected)) {
        const where = `[${section}] ${option}`;
        if (isSecretKey(option)) {
          expect(mine[option], where).toBe(`\${env:${envNameFor(section, option)}}`);
          expect(converted.yaml, where).not.toContain(String(value));
        } else {
          // cinder_to_yaml leaves a number it cannot type as text ('10.5'); typed here.
          expect(typeof value === 'string' && typeof mine[option] === 'number' ? String(mine[option]) : mine[option], where).toEqual(value);
        }
      }
      for (const option of Object.keys(mine).filter((name) => !(name in expected))) {
        const why = KEPT_HERE[option as keyof typeof KEPT_HERE];
        expect(why, `[${section}] ${option} is kept here only for a stated reason`).toBeDefined();
        if (why === 'my_ip') expect(mine[option]).toBe(myIp);
        if (why === 'section') expect(mine[option]).toBe(section);
      }
    });
  });
});

describe('import-cinder-conf: a value is a secret because of its option, never because it equals a secret', () => {
  it('writes driver_ssl_cert_verify = true as true beside use_chap_auth = true and a password "true"', async () => {
    const conf = [
      '[DEFAULT]',
      'enabled_backends = xms',
      '[xms]',
      'volume_driver = cinder.volume.drivers.dell_emc.xtremio.XtremIOISCSIDriver',
      'san_ip = 198.51.100.20',
      'san_password = true',
      'use_chap_auth = true',
      'driver_ssl_cert_verify = true',
    ].join('\n');
    const [backend] = parse((await convertCinderConf(conf, 'x.conf')).yaml).backends;
    expect(backend).toMatchObject({ san_password: '${env:CINDERLIB_XMS_SAN_PASSWORD}', use_chap_auth: true, driver_ssl_cert_verify: true });
  });
});
