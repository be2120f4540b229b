import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { listSupportedDrivers, type DriverInfo } from '../../src/core/driver-listing.js';
import { REPO_ROOT } from '../helpers/server.js';

/**
 * Contract section 15: list_supported_drivers compared, option by option, with what real cinderlib
 * 5.0.0 lists for Cinder 21's drivers (test/fixtures/cinderlib/list-supported-drivers*.json, made as
 * test/fixtures/cinderlib/README.md says). Every Cinder option is listed with Cinder's type,
 * default, secret and required flags; where this project deliberately differs, or lists an option
 * of its own, the option's help says so ("[cinderlib-mcp: ...]").
 */
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'cinderlib');
const typed: Record<string, DriverInfo<any>> = JSON.parse(readFileSync(join(FIXTURES, 'list-supported-drivers.json'), 'utf8'));
const strings: Record<string, DriverInfo<any>> = JSON.parse(readFileSync(join(FIXTURES, 'list-supported-drivers-v1.json'), 'utf8'));

const OURS = /\[cinderlib-mcp: [^\]]+\]$/;

/** What is deliberately not Cinder's, per driver class: option name, then the attributes that differ. */
const DELIBERATE: Record<string, Record<string, string[]>> = {
  // Certificates are verified unless told not to (the guide's "secure by default").
  XtremIOISCSIDriver: { driver_ssl_cert_verify: ['default'] },
  XtremIOFCDriver: { driver_ssl_cert_verify: ['default'] },
  PureISCSIDriver: {
    driver_ssl_cert_verify: ['default'],
    // A token is a secret by its name (contract section 6), whatever Cinder 21 marked.
    pure_api_token: ['secret'],
    // Cinder's choices end with None (unset), which a YAML config writes by leaving the option out.
    pure_host_personality: ['type'],
  },
};

/**
 * Cinder 21's Pure driver spoke REST 1.x (the `purestorage` client); the one here follows Cinder's
 * REST 2.x driver (py-pure-client), a later release, whose version this listing gives.
 */
const LATER_RELEASE = new Set(['PureISCSIDriver']);

const ATTRIBUTES = ['type', 'default', 'secret', 'required', 'sample_default', 'dest', 'positional', 'deprecated_opts'] as const;

describe.each([
  ['2 (typed)', 2, typed],
  ['1 (strings)', 1, strings],
] as const)("list_supported_drivers output_version %s, against real cinderlib's", (_name, version, cinder) => {
  it.each(Object.keys(cinder))('%s: version, CI name, class path and every Cinder option as Cinder lists it', async (className) => {
    const ours = (await listSupportedDrivers(version))[className];
    expect(ours, `${className} is listed`).toBeDefined();
    const theirs = cinder[className];
    expect({ class_fqn: ours.class_fqn, ci_wiki_name: ours.ci_wiki_name, supported: ours.supported }).toEqual({
      class_fqn: theirs.class_fqn,
      ci_wiki_name: theirs.ci_wiki_name,
      supported: theirs.supported,
    });
    if (!LATER_RELEASE.has(className)) expect(ours.version).toBe(theirs.version);
    const listed = new Map(ours.driver_options.map((option: any) => [option.name, option]));
    const deliberate = DELIBERATE[className] ?? {};
    for (const option of theirs.driver_options) {
      const mine: any = listed.get(option.name);
      expect(mine, `${className}: Cinder's ${option.name} is listed`).toBeDefined();
      for (const attribute of ATTRIBUTES) {
        if (deliberate[option.name]?.includes(attribute)) continue;
        expect(mine[attribute], `${className}.${option.name}: ${attribute}`).toEqual(option[attribute]);
      }
      if (deliberate[option.name]) {
        expect(mine.help, `${className}.${option.name} says how it differs`).toMatch(OURS);
        for (const attribute of deliberate[option.name]) expect(mine[attribute], `${className}.${option.name}: ${attribute} differs`).not.toEqual(option[attribute]);
      }
    }
    const cinderNames = new Set(theirs.driver_options.map((option: any) => option.name));
    const ownOptions = ours.driver_options.filter((option: any) => !cinderNames.has(option.name));
    for (const option of ownOptions) expect(option.help, `${className}.${option.name} is this project's and says so`).toMatch(OURS);
  });
});
