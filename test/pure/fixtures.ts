import pure from '../../drivers/pure/index.js';
import type { Connector, VolumeDriver } from '../../drivers/kit/types.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { validateDriverOptions } from '../../src/config/driver-options.js';
import type { PureEmulator } from '../emulators/pure/server.js';
import { refusingHost } from '../helpers/refusing-host.js';

/** The Pure driver built straight against an emulator (no server), with what it logged. */
export interface DriverUnderTest {
  driver: VolumeDriver;
  secrets: SecretRegistry;
  /** Every line the driver logged, as it would reach stderr (redacted). */
  logged: string[];
}

export async function makeDriver(array: PureEmulator, extra: Record<string, unknown> = {}): Promise<DriverUnderTest> {
  const secrets = new SecretRegistry();
  const { options } = validateDriverOptions('pure', pure, array.cinderBackend('pure', extra), secrets);
  const logged: string[] = [];
  const base = createLogger('pure-test');
  const keep =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (message: string): void => {
      const redacted = secrets.redact(message);
      logged.push(`${level}: ${redacted}`);
      base[level](redacted);
    };
  const log = { ...base, debug: keep('debug'), info: keep('info'), warn: keep('warn'), error: keep('error') };
  const context = { backendName: 'pure', log, secrets, dataDir: '/tmp', rootHelper: '', serving: true, host: refusingHost('this test attaches nothing') };
  const driver = pure.create(options, context, 'cinder.volume.drivers.pure.PureISCSIDriver');
  await driver.setup();
  return { driver, secrets, logged };
}

let counter = 0;
export function uuid(): string {
  counter += 1;
  return `5e1a0000-0000-4000-8000-${String(counter).padStart(12, '0')}`;
}

export function newVolume(size = 1) {
  return { id: uuid(), size, pool_name: 'pure', name: 'display text', description: '', bootable: false };
}

let initiators = 0;
export function connectorFor(host: string, extra: Partial<Connector> = {}): Connector {
  initiators += 1;
  return { host, initiator: `iqn.1993-08.org.debian:01:${String(initiators).padStart(12, 'c')}`, ip: '127.0.0.5', platform: 'x86_64', os_type: 'linux2', multipath: false, ...extra };
}
