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
        expect(definition.version, `${name}: the definition sets its version`).toMatch(/^\d+(\.\d+)*(\.[a-z]+)?$/);
        expect(info.version).toBe(definition.version);
        expect(info.supported).toBe(true);
        // Cinder's CI_WIKI_NAME for the Cinder driver followed; none for this project's own.
        expect(info.ci_wiki_name).toBe(definition.ciWikiName ?? null);
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
        expect(option.help).toBe(info.ours ? `${info.help} [cinderlib-mcp: ${info.ours}]` : info.help);
        expect(option.dest).toBe(option.name);
        expect(option.required).toBe(info.required ?? false);
        if (!option.secret) {
          expect(option.default, `${name}.${option.name}`).toEqual((info.listedDefault !== undefined ? info.listedDefault : info.default) ?? null);
          expect(option.sample_default).toBe(info.defaultText ?? null);
        }
      }
    }
    const xtremio = listing.XtremIOISCSIDriver.driver_options;
    // Cinder's san_ip: not required, default '' (the driver says it is missing when it starts).
    expect(xtremio.find((o) => o.name === 'san_ip')).toMatchObject({ required: false, default: '' });
    expect(xtremio.find((o) => o.name === 'xtremio_array_busy_retry_count')).toMatchObject({ default: 5, required: false });
  });

  it("gives Cinder's types, which the schema never accepts more than: what the type refuses, the config refuses", async () => {
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
          case 'port value':
          case 'floating point value': {
            const { min, max } = type as { min: number | null; max: number | null };
            if (type.type_name !== 'floating point value') expect(accepts(Math.max(min ?? 1, 1) + 0.5), where).toBe(false);
            if (min !== null) expect(accepts(min - 1), where).toBe(false);
            if (max !== null) expect(accepts(max + 1), where).toBe(false);
            expect(accepts('many'), where).toBe(false);
            break;
          }
          case 'string value': {
            const choices = type.choices as Record<string, string | null> | null;
            for (const choice of Object.keys(choices ?? {})) expect(accepts(choice), `${where}: ${choice}`).toBe(true);
            if (choices) expect(accepts('not-a-choice'), where).toBe(false);
            if (type.regex) expect(accepts('no match here'), where).toBe(false);
            expect(accepts({}), where).toBe(false);
            break;
          }
          case 'list value':
            expect(accepts([]), where).toBe(true);
            expect(accepts({}), where).toBe(false);
            break;
          case 'dict value':
            expect(accepts({ key: 'value' }), where).toBe(true);
            expect(accepts(42), where).toBe(false);
            break;
          default:
            throw new Error(`${where}: unexpected type ${String(type.type_name)}`);
        }
      }
    }
    const lvm = listing.LVMVolumeDriver.driver_options;
    expect(lvm.find((o) => o.name === 'lvm_type')!.type).toMatchObject({
      type_name: 'string value',
      choices: { default: 'Thick-provisioned LVM.', thin: 'Thin-provisioned LVM.', auto: 'Defaults to thin when supported.' },
      type_class: "String(choices=['default', 'thin', 'auto'])",
    });
    expect(lvm.find((o) => o.name === 'target_port')!.type).toMatchObject({ type_name: 'port value', min: 0, max: 65535, type_class: 'Port(min=0, max=65535)' });
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
    expect(ratio1).toMatchObject({
      type: "String(regex='^(auto|\\\\d*\\\\.\\\\d+|\\\\d+)$')",
      default: '20.0',
      required: 'False',
      secret: 'False',
      sample_default: 'None',
      deprecated_opts: '[]',
    });
    const ratio2 = v2.LVMVolumeDriver.driver_options.find((o) => o.name === 'max_over_subscription_ratio') as TypedDriverOption;
    expect(ratio2).toMatchObject({ default: '20.0', required: false, secret: false, sample_default: null, deprecated_opts: [] });
    const port1 = v1.LVMVolumeDriver.driver_options.find((o) => o.name === 'target_port') as StringDriverOption;
    expect(port1).toMatchObject({ type: 'Port(min=0, max=65535)', default: '3260' });
    const ports1 = v1.XtremIOISCSIDriver.driver_options.find((o) => o.name === 'xtremio_ports') as StringDriverOption;
    expect(ports1).toMatchObject({ type: 'List of String', default: '[]' });
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
        // Never a value: none, or Cinder's empty default (san_password '').
        expect([null, '']).toContain(option.default);
        expect(option.sample_default).toBeNull();
        const asString = v1[name].driver_options.find((o) => o.name === option.name)!;
        expect(asString).toMatchObject({ secret: 'True', default: option.default === '' ? '' : 'None', sample_default: 'None' });
      }
    }
    expect(secretsSeen).toBeGreaterThan(0);
    for (const name of ['LVMVolumeDriver', 'XtremIOISCSIDriver', 'KaminarioFCDriver']) {
      expect(
        v2[name].driver_options.find((o) => o.name === 'san_password'),
        name,
      ).toMatchObject({ secret: true, default: '' });
    }
  });

  it('stays well below a client response-size limit', async () => {
    for (const version of [1, 2] as const) {
      const size = JSON.stringify(await listSupportedDrivers(version)).length;
      console.log(`list_supported_drivers output_version ${version}: ${size} bytes of JSON`);
      // Every Cinder option of every driver followed is listed. The answer carries it twice
      // (structuredContent and the JSON text): 2 x 128 KiB stays far below a 1 MiB message.
      expect(size).toBeLessThan(128 * 1024);
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
