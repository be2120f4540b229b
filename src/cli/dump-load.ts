import { hostname } from 'node:os';
import { backendConfigView } from '../core/backend.js';
import type { LoadedConfig } from '../config/load.js';
import { StorageError, describeError } from '../base/errors.js';
import { openVolumeStore, openVolumeStoreForReading } from '../store/index.js';
import { readRegularFile } from '../base/regular-file.js';
import type { SecretRegistry } from '../base/secrets.js';
import { writeBackendDump, writeDump, type DumpedBackend } from '../serialization/dump.js';
import { loadDump } from '../serialization/load.js';

/** The largest dump `load` reads: far above a store of a hundred thousand volumes (about 3 KiB each), below V8's longest string. */
export const MAX_DUMP_BYTES = 500 * 1024 * 1024;

export interface CommandOutput {
  write(text: string): Promise<void>;
  error(text: string): void;
}

/**
 * `cinderlib-mcp dump [--backend ID]`: cinderlib's cl.dumps() (or backend.dumps) of the metadata
 * store, from the config and the store alone: no array is asked, and a backend that cannot
 * initialize dumps like any other.
 */
export async function dumpCommand(config: LoadedConfig, backendId: string | undefined, secrets: SecretRegistry, out: CommandOutput): Promise<number> {
  if (config.error) {
    out.error(`config: ${config.source}: ${config.error}\n`);
    return 1;
  }
  const backends: DumpedBackend[] = config.backends.map((spec) => ({ id: spec.name, config: backendConfigView(spec, config.global.outputAllBackendInfo, secrets) }));
  const chosen = backendId === undefined ? undefined : backends.find((backend) => backend.id === backendId);
  if (backendId !== undefined && !chosen) {
    out.error(`backend "${backendId}" is not in the config; its backends: ${backends.map((backend) => backend.id).join(', ') || 'none'}\n`);
    return 1;
  }
  const store = await openVolumeStoreForReading(config.global.persistence);
  try {
    const dumper = { store, secrets, context: { host: config.global.host ?? hostname() } };
    if (chosen) await writeBackendDump(dumper, chosen, (text) => out.write(text), { spaced: true });
    else await writeDump(dumper, backends, (text) => out.write(text));
    // cl.dumps() text exactly, so a dump of a loaded file is that file byte for byte; a terminal still gets its line end.
    if (process.stdout.isTTY) await out.write('\n');
    return 0;
  } finally {
    await store.close();
  }
}

/** `cinderlib-mcp load FILE`: a dump into the metadata store, all of it or nothing. */
export async function loadCommand(config: LoadedConfig, file: string, secrets: SecretRegistry, out: CommandOutput): Promise<number> {
  if (config.error) {
    out.error(`config: ${config.source}: ${config.error}\n`);
    return 1;
  }
  if (config.global.persistence.storage === 'memory') {
    out.error('the metadata store is "memory": a loaded dump would be gone when this command exits; set persistence_config to a sqlite store\n');
    return 1;
  }
  let text: string;
  try {
    text = (await readRegularFile(file, MAX_DUMP_BYTES)).toString('utf8');
  } catch (error) {
    out.error(`${file}: ${describeError(error)}; nothing was loaded\n`);
    return 1;
  }
  let store;
  try {
    store = await openVolumeStore(config.global.persistence);
  } catch (error) {
    out.error(`${secrets.redact(describeError(error))}; load writes the store, so stop the server that holds it first\n`);
    return 1;
  }
  try {
    const summary = await loadDump(store, text, new Set(config.backends.map((spec) => spec.name)), secrets);
    out.error(
      `loaded ${summary.volumes} volume(s), ${summary.snapshots} snapshot(s) and ${summary.connections} connection(s) for backend(s) ${summary.backends.join(', ') || 'none'}\n`,
    );
    return 0;
  } catch (error) {
    if (error instanceof StorageError) {
      out.error(`${file}: ${secrets.redact(error.toClientText())}\n`);
      return 1;
    }
    throw error;
  } finally {
    await store.close();
  }
}
