import { describe, expect, it } from 'vitest';
import { DRIVER_CATALOG } from '../../drivers/catalog.js';
import { parseSanIp } from '../../drivers/kit/options.js';
import type { DriverDefinition } from '../../drivers/kit/types.js';
import { ConfigError } from '../../src/config/errors.js';
import { validateDriverOptions } from '../../src/config/driver-options.js';
import { SecretRegistry } from '../../src/base/secrets.js';

/** san_ip is checked when the config is read, the same way by every driver that takes it. */
async function driver(alias: string): Promise<DriverDefinition> {
  return DRIVER_CATALOG.find((entry) => entry.alias === alias)!.load();
}

const ACCEPTED: Array<[string, { host: string; port?: number }]> = [
  ['10.0.0.1', { host: '10.0.0.1' }],
  ['10.0.0.1:8443', { host: '10.0.0.1', port: 8443 }],
  ['array.example.com', { host: 'array.example.com' }],
  ['Array-1.Example:443', { host: 'Array-1.Example', port: 443 }],
  ['xms_1', { host: 'xms_1' }],
  ['bücher.example', { host: 'bücher.example' }],
  ['fe80::1', { host: 'fe80::1' }],
  ['::1', { host: '::1' }],
  ['[::1]', { host: '::1' }],
  ['[::1]:8443', { host: '::1', port: 8443 }],
  ['127.0.0.2:65535', { host: '127.0.0.2', port: 65535 }],
];

const REJECTED = [
  '',
  ' ',
  '127.0.0.2:abc',
  'https://127.0.0.2',
  'https://array',
  '10.0.0.1/24',
  'array/api',
  '10.0.0.1:0',
  '10.0.0.1:65536',
  '10.0.0.1:',
  'host:8443:1',
  '[::1]:x',
  '[10.0.0.1]:443',
  '[::1',
  '999.1.1.1',
  '10.1',
  'user@host',
  'a b',
  '-host',
  'host..example',
  'fe80::1%eth0',
  'array?x=1',
];

describe('san_ip', () => {
  it('accepts host, host:port, IPv4, IPv6 bare or in brackets', () => {
    for (const [value, address] of ACCEPTED) expect(parseSanIp(value), value).toEqual(address);
  });

  it('rejects schemes, paths, bad ports and empty values', () => {
    for (const value of REJECTED) expect(parseSanIp(value), value).toBeUndefined();
  });

  for (const alias of ['xtremio', 'kaminario', 'lvm']) {
    it(`${alias}: a bad san_ip is a config error naming the backend, the option and the accepted forms`, async () => {
      const definition = await driver(alias);
      for (const value of ['127.0.0.2:abc', 'https://127.0.0.2']) {
        const run = () => validateDriverOptions('array-a', definition, { volume_backend_name: 'array-a', san_ip: value }, new SecretRegistry());
        expect(run, value).toThrow(ConfigError);
        expect(run, value).toThrow(/backend "array-a": option "san_ip" must be a host name or IP address, optionally with a port: host, host:port, .*\[fe80::1\]:8443.*no scheme/);
      }
      for (const [value] of ACCEPTED) {
        const { options } = validateDriverOptions('array-a', definition, { volume_backend_name: 'array-a', san_ip: value }, new SecretRegistry());
        expect(options.san_ip).toBe(value);
      }
    });
  }
});
