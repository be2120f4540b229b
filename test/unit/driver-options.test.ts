import { describe, expect, it } from 'vitest';
import { DRIVER_CATALOG } from '../../drivers/catalog.js';
import { ConfigError } from '../../src/config/errors.js';
import { parseConfig } from '../../src/config/load.js';
import { readCoreOptions, validateDriverOptions } from '../../src/config/driver-options.js';
import { SecretRegistry } from '../../src/base/secrets.js';

/**
 * A rejected option value is quoted back to the user, except where it came from `${env:}`
 * (contract section 6): then it reads `***` whatever its length, where free-text redaction
 * cannot hunt values under 3 characters and quotes the masked ones.
 */
describe('rejected option values in config errors', () => {
  async function loadLvmBackend(options: Record<string, unknown>, env: Record<string, string>) {
    const secrets = new SecretRegistry();
    const config = parseConfig({ backends: [{ volume_backend_name: 'vg1', volume_driver: 'lvm', ...options }] }, 'test config', { env, secrets });
    const definition = await DRIVER_CATALOG.find((entry) => entry.alias === 'lvm')!.load();
    return { spec: config.backends[0], definition, secrets };
  }

  function rejection(run: () => unknown): string {
    try {
      run();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as Error).message;
    }
    throw new Error('the options were accepted');
  }

  it('prints *** for a driver option value taken from the environment, short or long, and the value otherwise', async () => {
    const { spec, definition, secrets } = await loadLvmBackend(
      { ssh_conn_timeout: '${env:SHORT}', lvm_type: '${env:LONGER}', lvm_mirrors: 'many', san_ssh_port: 'p${env:PART}' },
      { SHORT: 'x9', LONGER: 'thick-please', PART: 'q' },
    );
    const message = rejection(() => validateDriverOptions('vg1', definition, spec.options, secrets));
    expect(message).toMatch(/^backend "vg1": /);
    expect(message).toMatch(/option "ssh_conn_timeout" must be [^;]+, got \*\*\*(;|$)/);
    expect(message).toMatch(/option "lvm_type" must be [^;]+, got \*\*\*(;|$)/);
    // Partly from the environment is from the environment.
    expect(message).toMatch(/option "san_ssh_port" must be [^;]+, got \*\*\*(;|$)/);
    // A literal in the config file is the user's own text: quoted back so they can find it.
    expect(message).toMatch(/option "lvm_mirrors" must be [^;]+, got "many"/);
    for (const value of ['x9', 'thick-please', 'pq']) expect(message).not.toContain(value);
  });

  it('prints *** for a core option value taken from the environment', async () => {
    const { spec, secrets } = await loadLvmBackend({ backend_init_timeout: '${env:T}', backend_init_retry_interval: 'soon' }, { T: 'q7' });
    const result = readCoreOptions(spec, secrets);
    expect(result).toHaveProperty('error');
    const { error } = result as { error: string };
    expect(error).toMatch(/option "backend_init_timeout" must be [^;]+, got \*\*\*(;|$)/);
    expect(error).toMatch(/option "backend_init_retry_interval" must be [^;]+, got "soon"/);
    expect(error).not.toContain('q7');
  });
});
