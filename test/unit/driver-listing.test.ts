import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { DRIVER_CATALOG } from '../../drivers/catalog.js';
import { optionInfo } from '../../drivers/kit/options.js';
import { DRIVER_INFO_KEYS, OPTION_KEYS, listSupportedDrivers, type StringDriverOption, type TypedDriverOption } from '../../src/core/driver-listing.js';
import { SecretRegistry, isSecretKey } from '../../src/base/secrets.js';
import listSupportedDriversTool from '../../tools/list_supported_drivers.js';

const className = (path: string) => path.slice(path.lastIndexOf('.') + 1);

/** Every catalog class path with its loaded definition. */
async function catalogClasses() {
  const classes = [];
  for (const entry of DRIVER_CATALOG) {
    const definition = await entry.load();
    for (const path of entry.cinderPaths) classes.push({ entry, definition, path, name: className(path) });
  }
  return classes;
}

describe("list_supported_drivers (cinderlib's Backend.list_supported_drivers)", () => {
  it('lists every class path the catalog knows, keyed by class name, and nothing else', async () => {
    const listing = await listSupportedDrivers(1);
    const classes = await catalogClasses();
    expect(Object.keys(listing).sort()).toEqual(classes.map((c) => c.name).sort());
    for (const { path, name } of classes) {
      expect(listing[name].class_fqn).toBe(path);
      expect(listing[name].class_name).toBe(name);
    }
    // Cinder's class paths for Cinder's drivers, one entry per class; our own name for the file driver.
    expect(listing.LVMVolumeDriver.class_fqn).toBe('cinder.volume.drivers.lvm.LVMVolumeDriver');
    expect(listing.XtremIOISCSIDriver.class_fqn).toBe('cinder.volume.drivers.dell_emc.xtremio.XtremIOISCSIDriver');
    expect(listing.XtremIOFCDriver.class_fqn).toBe('cinder.volume.drivers.dell_emc.xtremio.XtremIOFCDriver');
    expect(listing.KaminarioISCSIDriver.class_fqn).toBe('cinder.volume.drivers.kaminario.kaminario_iscsi.KaminarioISCSIDriver');
    expect(listing.KaminarioFCDriver.class_fqn).toBe('cinder.volume.drivers.kaminario.kaminario_fc.KaminarioFCDriver');
    expect(listing.FileDriver.class_fqn).toBe('cinderlib_mcp.drivers.file.FileDriver');
  });

  it("gives each entry exactly cinderlib's keys, the driver's own version and a description", async () => {
    for (const version of [1, 2] as const) {
      const listing = await listSupportedDrivers(version);
      for (const { definition, name } of await catalogClasses()) {
        const info = listing[name];
        expect(Object.keys(info).sort(), name).toEqual([...DRIVER_INFO_KEYS].sort());
        expect(definition.version, `${name}: the definition sets its version`).toMatch(/^\d+(\.\d+)*$/);
        expect(info.version).toBe(definition.version);
        expect(info.supported).toBe(true);
        expect(info.ci_wiki_name).toBeNull();
        expect(info.desc.length, name).toBeGreaterThan(20);
        for (const option of info.driver_options) expect(Object.keys(option), `${name}.${option.name}`).toEqual([...OPTION_KEYS]);
      }
    }
    const listing = await listSupportedDrivers(2);
    expect(listing.LVMVolumeDriver.version).toBe('3.0.0');
    expect(listing.XtremIOFCDriver.desc).toMatch(/Fibre Channel connections .* not implemented/);
  });

  it('lists every option the driver schema declares, in order, with its help, default and required flag', async () => {
    const listing = await listSupportedDrivers(2);
    for (const { definition, name } of await catalogClasses()) {
      const options = listing[name].driver_options;
      expect(
        options.map((o) => o.name),
        name,
      ).toEqual(Object.keys(definition.options));
      for (const option of options) {
        const info = optionInfo.get(definition.options[option.name])!;
        expect(option.help).toBe(info.help);
        expect(option.dest).toBe(option.name);
        expect(option.required).toBe(info.required ?? false);
        if (!option.secret) {
          expect(option.default, `${name}.${option.name}`).toEqual(info.default ?? null);
          expect(option.sample_default).toBe(info.defaultText ?? null);
        }
      }
    }
    const xtremio = listing.XtremIOISCSIDriver.driver_options;
    expect(xtremio.find((o) => o.name === 'san_ip')).toMatchObject({ required: true, default: null });
    expect(xtremio.find((o) => o.name === 'xtremio_array_busy_retry_count')).toMatchObject({ default: 5, required: false });
  });

  it('gives types that accept and refuse what the schema accepts and refuses', async () => {
    const listing = await listSupportedDrivers(2);
    for (const { definition, name } of await catalogClasses()) {
      for (const option of listing[name].driver_options) {
        const schema = definition.options[option.name] as z.ZodType;
        const accepts = (value: unknown) => schema.safeParse(value).success;
        const type = option.type as Record<string, unknown>;
        const where = `${name}.${option.name}`;
        expect(type.type_class, where).toEqual(expect.any(String));
        switch (type.type_name) {
          case 'boolean value':
            expect(accepts(true) && accepts(false), where).toBe(true);
            expect(accepts('maybe'), where).toBe(false);
            break;
          case 'integer value':
          case 'floating point value': {
            const { min, max } = type as { min: number | null; max: number | null };
            const inside = min ?? max ?? 1;
            expect(accepts(inside), where).toBe(true);
            expect(accepts(inside + 0.5), where).toBe(type.type_name === 'floating point value' && (max === null || inside + 0.5 <= max));
            if (min !== null) expect(accepts(min - 1), where).toBe(false);
            if (max !== null) expect(accepts(max + 1), where).toBe(false);
            break;
          }
          case 'string value': {
            const choices = type.choices as Record<string, null> | null;
            for (const choice of Object.keys(choices ?? {})) expect(accepts(choice), `${where}: ${choice}`).toBe(true);
            if (choices) expect(accepts('not-a-choice'), where).toBe(false);
            expect(accepts(42), where).toBe(false);
            break;
          }
          default:
            throw new Error(`${where}: unexpected type ${String(type.type_name)}`);
        }
      }
    }
    const lvm = listing.LVMVolumeDriver.driver_options;
    expect(lvm.find((o) => o.name === 'lvm_type')!.type).toMatchObject({
      type_name: 'string value',
      choices: { default: null, thin: null, auto: null },
      type_class: "String(choices=['default', 'thin', 'auto'])",
    });
    expect(lvm.find((o) => o.name === 'target_port')!.type).toMatchObject({ type_name: 'integer value', min: 1, max: 65535, type_class: 'Integer(min=1, max=65535)' });
    expect(lvm.find((o) => o.name === 'lvm_suppress_fd_warnings')!.type).toEqual({ type_name: 'boolean value', type_class: 'Boolean' });
  });

  it('makes every option attribute a string in version 1 (the default), as Python str() writes it, and keeps types in version 2', async () => {
    const v1 = await listSupportedDrivers(1);
    const v2 = await listSupportedDrivers(2);
    expect(await listSupportedDrivers()).toBe(v1);
    for (const [name, info] of Object.entries(v1)) {
      for (const option of info.driver_options) {
        for (const [key, value] of Object.entries(option)) expect(typeof value, `${name}.${option.name}.${key}`).toBe('string');
      }
    }
    for (const [name, info] of Object.entries(v2)) {
      for (const option of info.driver_options) {
        expect(typeof option.required, `${name}.${option.name}`).toBe('boolean');
        expect(typeof option.secret, `${name}.${option.name}`).toBe('boolean');
        expect(option.type, `${name}.${option.name}`).toHaveProperty('type_class');
      }
    }
    const ratio1 = v1.LVMVolumeDriver.driver_options.find((o) => o.name === 'max_over_subscription_ratio') as StringDriverOption;
    expect(ratio1).toMatchObject({ type: 'Float(min=1)', default: '20.0', required: 'False', secret: 'False', sample_default: 'None', deprecated_opts: '[]' });
    const ratio2 = v2.LVMVolumeDriver.driver_options.find((o) => o.name === 'max_over_subscription_ratio') as TypedDriverOption;
    expect(ratio2).toMatchObject({ default: 20, required: false, secret: false, sample_default: null, deprecated_opts: [] });
    const port1 = v1.LVMVolumeDriver.driver_options.find((o) => o.name === 'target_port') as StringDriverOption;
    expect(port1).toMatchObject({ type: 'Integer(min=1, max=65535)', default: '3260' });
    await expect(listSupportedDrivers(3 as 1)).rejects.toThrow(/output_version must be 1 or 2/);
  });

  it('marks secret options and never shows their defaults (san_password is one, chap_username is not)', async () => {
    expect(isSecretKey('chap_username')).toBe(false);
    const v1 = await listSupportedDrivers(1);
    const v2 = await listSupportedDrivers(2);
    let secretsSeen = 0;
    for (const [name, info] of Object.entries(v2)) {
      for (const option of info.driver_options) {
        expect(option.secret, `${name}.${option.name}`).toBe(isSecretKey(option.name));
        if (!option.secret) continue;
        secretsSeen += 1;
        expect(option.default).toBeNull();
        expect(option.sample_default).toBeNull();
        const asString = v1[name].driver_options.find((o) => o.name === option.name)!;
        expect(asString).toMatchObject({ secret: 'True', default: 'None', sample_default: 'None' });
      }
    }
    expect(secretsSeen).toBeGreaterThan(0);
    for (const name of ['LVMVolumeDriver', 'XtremIOISCSIDriver', 'KaminarioFCDriver']) {
      expect(
        v2[name].driver_options.find((o) => o.name === 'san_password'),
        name,
      ).toMatchObject({ secret: true, default: null });
    }
  });

  it('stays well below a client response-size limit', async () => {
    for (const version of [1, 2] as const) {
      const size = JSON.stringify(await listSupportedDrivers(version)).length;
      console.log(`list_supported_drivers output_version ${version}: ${size} bytes of JSON`);
      // The answer carries it twice (structuredContent and the JSON text): 2 x 64 KiB stays far below 1 MiB and ~25k tokens of text.
      expect(size).toBeLessThan(64 * 1024);
    }
  });

  it("matches the tool's schemas, the tool defaulting to output version 1 and refusing others", async () => {
    const tool = listSupportedDriversTool;
    expect(tool.input.parse({})).toEqual({ output_version: 1 });
    expect(tool.input.parse({ output_version: 2 })).toEqual({ output_version: 2 });
    expect(tool.input.safeParse({ output_version: 3 }).success).toBe(false);
    expect(tool.input.safeParse({ output_version: '2' }).success).toBe(false);
    for (const version of [1, 2] as const) {
      const answer = await tool.handler({ output_version: version }, undefined as never);
      expect(answer).toBe(await listSupportedDrivers(version));
      const parsed = tool.output.safeParse(answer);
      expect(parsed.success, parsed.error?.message).toBe(true);
    }
    expect(tool.annotations).toEqual({ readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false });
  });

  // The server passes every tool answer through SecretRegistry.maskOptions, which masks any key whose
  // name looks secret: oslo.config's `secret` flag must come through as true/false.
  it("survives the server's masking with its secret flags readable", async () => {
    const registry = new SecretRegistry();
    for (const version of [1, 2] as const) {
      const listing = await listSupportedDrivers(version);
      expect(registry.maskOptions(listing)).toEqual(listing);
    }
  });
});
