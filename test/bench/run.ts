import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { readFileSync } from 'node:fs';
import { encodeCursor } from '../../src/model/cursor.js';
import { benchHttpCall } from './http-call.js';
import { XmsEmulator } from '../emulators/xtremio/server.js';
import { SqliteVolumeStore } from '../../src/store/sqlite.js';
import type { VolumeRecord } from '../../src/model/volume.js';
import type { SnapshotRecord } from '../../src/model/snapshot.js';

/**
 * `npm run bench`: cold start, cached round trip, list_volumes at 200 and 100,000 volumes, and
 * create_volume on the file driver, all through the real server over a stdio pipe. Figures are
 * medians (and p95) in milliseconds; ratios compare like with like.
 */
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const BIN = join(REPO, 'bin', 'cinderlib-mcp.js');
const work = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-bench-'));
const rows: Array<[string, string]> = [];

function report(label: string, value: string): void {
  rows.push([label, value]);
  process.stdout.write(`${label.padEnd(58)} ${value}\n`);
}

function stats(samples: number[]): { median: number; p95: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)], p95: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.95))] };
}

const ms = (n: number) => `${n.toFixed(2)} ms`;

async function timed<T>(task: () => Promise<T>): Promise<[number, T]> {
  const start = process.hrtime.bigint();
  const value = await task();
  return [Number(process.hrtime.bigint() - start) / 1e6, value];
}

async function connect(command: string, args: string[], env: Record<string, string>): Promise<Client> {
  const transport = new StdioClientTransport({ command, args, env: { ...(process.env as Record<string, string>), ...env }, stderr: 'ignore' });
  const client = new Client({ name: 'bench', version: '1' });
  await client.connect(transport);
  return client;
}

/**
 * Spawn to first tools/list answer (initialize included), the user-visible start-up, and spawn to
 * the answer of a first tool call (`firstCall`), which needs the whole server loaded.
 */
async function coldStart(command: string, args: string[], env: Record<string, string>, firstCall: string): Promise<{ toolsListed: number; firstAnswer: number }> {
  const start = process.hrtime.bigint();
  const since = () => Number(process.hrtime.bigint() - start) / 1e6;
  const client = await connect(command, args, env);
  await client.listTools();
  const toolsListed = since();
  const answer = await client.callTool({ name: firstCall, arguments: {} });
  if (answer.isError) throw new Error(`${firstCall}: ${JSON.stringify(answer.content)}`);
  const firstAnswer = since();
  await client.close();
  return { toolsListed, firstAnswer };
}

/**
 * Cold start against the reference filesystem server, same machine, same client: BENCH_PAIRS
 * interleaved pairs (default 21), medians. Then the bytes of tools/list (the JSON of its result)
 * for the default toolsets and for all of them, next to the reference server's.
 */
async function benchColdStart(): Promise<void> {
  const pairs = Number(process.env.BENCH_PAIRS) || 21;
  const require = createRequire(import.meta.url);
  const fsServer = join(dirname(require.resolve('@modelcontextprotocol/server-filesystem/package.json')), 'dist', 'index.js');
  mkdirSync(join(work, 'fsroot'), { recursive: true });
  const oursListed: number[] = [];
  const oursAnswered: number[] = [];
  const referenceListed: number[] = [];
  const referenceAnswered: number[] = [];
  for (let run = 0; run < pairs; run++) {
    // Interleaved, so machine noise falls on both alike.
    const ours = await coldStart(process.execPath, [BIN], { XDG_DATA_HOME: join(work, 'cold'), CINDERLIB_MCP_LOG_LEVEL: 'warn' }, 'list_backends');
    const reference = await coldStart(process.execPath, [fsServer, join(work, 'fsroot')], {}, 'list_allowed_directories');
    oursListed.push(ours.toolsListed);
    oursAnswered.push(ours.firstAnswer);
    referenceListed.push(reference.toolsListed);
    referenceAnswered.push(reference.firstAnswer);
  }
  const [listed, referenceList] = [stats(oursListed), stats(referenceListed)];
  const [answered, referenceAnswer] = [stats(oursAnswered), stats(referenceAnswered)];
  report('cold start to first tools/list, cinderlib-mcp (median)', ms(listed.median));
  report('cold start, @modelcontextprotocol/server-filesystem (median)', ms(referenceList.median));
  report('  ratio cinderlib-mcp / server-filesystem', `${(listed.median / referenceList.median).toFixed(2)}x`);
  report('cold start to first tool answer: list_backends (median)', ms(answered.median));
  report('  server-filesystem: list_allowed_directories (median)', ms(referenceAnswer.median));
  report('  ratio cinderlib-mcp / server-filesystem', `${(answered.median / referenceAnswer.median).toFixed(2)}x`);

  const sizeOf = async (command: string, args: string[], env: Record<string, string>) => {
    const client = await connect(command, args, env);
    const bytes = Buffer.byteLength(JSON.stringify(await client.listTools()));
    await client.close();
    return bytes;
  };
  const coldEnv = { XDG_DATA_HOME: join(work, 'cold'), CINDERLIB_MCP_LOG_LEVEL: 'warn' };
  report('tools/list bytes, default toolsets', String(await sizeOf(process.execPath, [BIN], coldEnv)));
  report('tools/list bytes, --toolsets all', String(await sizeOf(process.execPath, [BIN, '--toolsets', 'all'], coldEnv)));
  report('tools/list bytes, server-filesystem', String(await sizeOf(process.execPath, [fsServer, join(work, 'fsroot')], {})));
}

function seed(path: string, count: number, backend: string): void {
  const store = new SqliteVolumeStore(path);
  const now = new Date().toISOString();
  const batch: VolumeRecord[] = [];
  for (let i = 0; i < count; i++) {
    batch.push({
      id: randomUUID(),
      backend,
      name: `bench-${i}`,
      description: '',
      size: 1,
      // 100 volumes in error, spread out, whatever the count.
      status: i % Math.max(1, Math.floor(count / 100)) === 0 ? 'error' : 'available',
      pool_name: backend,
      bootable: false,
      created_at: now,
      updated_at: now,
      status_reason: null,
      provider_location: null,
    });
    if (batch.length === 10_000) store.insertMany(batch.splice(0));
  }
  store.insertMany(batch);
  void store.close(); // SQLite closes synchronously; the promise is only the store interface's
}

async function call(client: Client, name: string, args: Record<string, unknown>): Promise<any> {
  const result = await client.callTool({ name, arguments: args });
  if (result.isError) throw new Error(`${name}: ${JSON.stringify(result.content)}`);
  return result.structuredContent;
}

async function sample(client: Client, runs: number, name: string, args: Record<string, unknown>): Promise<{ median: number; p95: number }> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) samples.push((await timed(() => call(client, name, args)))[0]);
  return stats(samples);
}

function serverEnv(label: string, volumes: number): { env: Record<string, string>; configPath: string } {
  const dir = join(work, label);
  mkdirSync(dir, { recursive: true });
  const db = join(dir, 'meta.sqlite');
  if (volumes > 0) seed(db, volumes, 'bench');
  const configPath = join(dir, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${db}` } },
      backends: [{ volume_backend_name: 'bench', volume_driver: 'file', volumes_dir: join(dir, 'volumes') }],
    }),
  );
  return { env: { XDG_DATA_HOME: join(dir, 'xdg'), CINDERLIB_MCP_LOG_LEVEL: 'warn' }, configPath };
}

async function main(): Promise<void> {
  process.stdout.write(`cinderlib-mcp benchmarks (node ${process.version}, ${new Date().toISOString()})\n\n`);
  // BENCH_ONLY=connections runs the last part alone (the rest takes minutes).
  if (process.env.BENCH_ONLY === 'connections') return benchConnections().finally(() => rmSync(work, { recursive: true, force: true }));
  if (process.env.BENCH_ONLY === 'shared') return benchShared().finally(() => rmSync(work, { recursive: true, force: true }));
  if (process.env.BENCH_ONLY === 'store') return benchStore().finally(() => rmSync(work, { recursive: true, force: true }));
  if (process.env.BENCH_ONLY === 'rbd') return benchRbd().finally(() => rmSync(work, { recursive: true, force: true }));
  if (process.env.BENCH_ONLY === 'cold') return benchColdStart().finally(() => rmSync(work, { recursive: true, force: true }));
  if (process.env.BENCH_ONLY === 'serialization') return benchSerialization().finally(() => rmSync(work, { recursive: true, force: true }));

  // 1. Cold start against the reference filesystem server, and the size of tools/list.
  await benchColdStart();

  // 2. Cached call round trip vs asking the "array" (statfs) again.
  const small = serverEnv('small', 200);
  const client = await connect(process.execPath, [BIN, '--config', small.configPath], small.env);
  await call(client, 'get_stats', { backend: 'bench' });
  const cached = await sample(client, 500, 'get_stats', { backend: 'bench' });
  const refreshed = await sample(client, 200, 'get_stats', { backend: 'bench', refresh: true });
  report('get_stats cached round trip (median / p95)', `${ms(cached.median)} / ${ms(cached.p95)}`);
  report('get_stats refresh:true round trip (median)', ms(refreshed.median));
  const listBackends = await sample(client, 200, 'list_backends', {});
  report('list_backends round trip (median)', ms(listBackends.median));

  // 3. list_volumes at 200 and at 100,000 volumes.
  const smallFirst = await sample(client, 200, 'list_volumes', { backend: 'bench', limit: 100 });
  const smallErrors = await sample(client, 200, 'list_volumes', { status: 'error', limit: 100 });

  // 4. create_volume per call on the file driver (real sparse files, real SQLite).
  const creates: number[] = [];
  const created: string[] = [];
  for (let i = 0; i < 200; i++) {
    const [elapsed, volume] = await timed(() => call(client, 'create_volume', { backend: 'bench', size: 1 }));
    creates.push(elapsed);
    created.push(volume.id);
  }
  const deletes: number[] = [];
  for (const id of created) deletes.push((await timed(() => call(client, 'delete_volume', { volume_id: id })))[0]);
  await client.close();

  const large = serverEnv('large', 100_000);
  const big = await connect(process.execPath, [BIN, '--config', large.configPath], large.env);
  await call(big, 'list_backends', {});
  const largeFirst = await sample(big, 200, 'list_volumes', { backend: 'bench', limit: 100 });
  const deepCursor = encodeCursor('list_volumes', 90_000, { backend: 'bench' });
  const largeDeep = await sample(big, 200, 'list_volumes', { backend: 'bench', limit: 100, cursor: deepCursor });
  const largeErrors = await sample(big, 200, 'list_volumes', { status: 'error', limit: 100 });
  const largeMax = await sample(big, 50, 'list_volumes', { backend: 'bench', limit: 1000 });
  const largeStats = await sample(big, 200, 'get_stats', { backend: 'bench' });
  await big.close();

  report('list_volumes limit 100 at 200 volumes (median / p95)', `${ms(smallFirst.median)} / ${ms(smallFirst.p95)}`);
  report('list_volumes limit 100 at 100,000 volumes (median / p95)', `${ms(largeFirst.median)} / ${ms(largeFirst.p95)}`);
  report('  ratio 100,000 / 200 volumes', `${(largeFirst.median / smallFirst.median).toFixed(2)}x`);
  report('list_volumes page at position 90,000 of 100,000 (median)', ms(largeDeep.median));
  report('list_volumes status=error, 100 of 200 volumes (median)', ms(smallErrors.median));
  report('list_volumes status=error, 100 of 100,000 volumes (median)', ms(largeErrors.median));
  report('  ratio 100,000 / 200 volumes (status filter)', `${(largeErrors.median / smallErrors.median).toFixed(2)}x`);
  report('list_volumes limit 1000 at 100,000 volumes (median)', ms(largeMax.median));
  report('get_stats cached at 100,000 volumes (median)', ms(largeStats.median));
  report('  ratio to 200 volumes', `${(largeStats.median / cached.median).toFixed(2)}x`);
  const create = stats(creates);
  report('create_volume, file driver (median / p95)', `${ms(create.median)} / ${ms(create.p95)}`);
  report('delete_volume, file driver (median)', ms(stats(deletes).median));

  // 5. Tool-call overhead against an array's own time: get_stats refresh on the XMS emulator
  // (one HTTPS GET per refresh) next to the same GET made directly with undici.
  const xms = await new XmsEmulator({ password: 'bench-password' }).start();
  const xmsConfig = join(work, 'xtremio.json');
  writeFileSync(
    xmsConfig,
    JSON.stringify({
      global: { persistence_config: { storage: 'memory' } },
      backends: [
        {
          volume_backend_name: 'xtremio',
          volume_driver: 'xtremio',
          san_ip: xms.address,
          xtremio_cluster_name: 'xtremio_cluster',
          san_login: xms.username,
          san_password: xms.password,
          driver_ssl_cert_path: xms.certs.caPath,
        },
      ],
    }),
  );
  const viaTool = await connect(process.execPath, [BIN, '--config', xmsConfig], { XDG_DATA_HOME: join(work, 'xms-xdg'), CINDERLIB_MCP_LOG_LEVEL: 'warn' });
  await call(viaTool, 'get_stats', { backend: 'xtremio', refresh: true });
  const toolStats = await sample(viaTool, 300, 'get_stats', { backend: 'xtremio', refresh: true });
  await viaTool.close();
  const dispatcher = new Agent({ connect: { ca: readFileSync(xms.certs.caPath, 'utf8') } });
  const auth = `Basic ${Buffer.from(`${xms.username}:${xms.password}`).toString('base64')}`;
  const direct: number[] = [];
  for (let i = 0; i < 300; i++) {
    const [elapsed] = await timed(async () => {
      const response = await request(`https://${xms.address}/api/json/v2/types/clusters?name=xtremio_cluster&cluster-name=xtremio_cluster`, {
        headers: { authorization: auth, accept: 'application/json' },
        dispatcher,
      });
      return response.body.json();
    });
    direct.push(elapsed);
  }
  await dispatcher.close();
  await xms.cleanup();
  const directStats = stats(direct);
  report('XtremIO get_stats refresh via MCP (median)', ms(toolStats.median));
  report('  the same XMS GET made directly (median)', ms(directStats.median));
  report('  tool overhead per call (stdio, validation, store, cache)', ms(toolStats.median - directStats.median));

  // 6. Snapshot and clone of a 1 GiB file volume, sparse and full, through the file driver's copy
  // next to `cp --sparse=always` of the same file on the same disk.
  await benchImageCopies();

  // 7. connect/disconnect through tgt, and attach/detach through a loop device, next to the bare commands.
  await benchConnections();

  // 8. cinderlib-mcp dump and load of a store of 100,000 volumes.
  await benchSerialization();

  // 9. The same figures on PostgreSQL, two servers creating at once, and MCP over HTTP against stdio.
  await benchShared();

  rmSync(work, { recursive: true, force: true });
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    rmSync(work, { recursive: true, force: true });
    process.exit(1);
  },
);

/**
 * The file driver's snapshot and clone are copies of the image (drivers/file/sparse-copy.ts:
 * a reflink where the filesystem shares blocks, else a copy that skips zero blocks). Timed on a
 * 1 GiB image with three 4 KiB blocks written (sparse) and with all of it written (full), next
 * to `cp --sparse=always` of the same file into the same folder, and to cp followed by an fsync
 * of the copy (`sync FILE`), since the driver's copy is fsynced before it answers. Medians of 5
 * runs, interleaved so machine noise falls on both alike.
 */
async function benchImageCopies(): Promise<void> {
  const { spawnSync } = await import('node:child_process');
  const { closeSync, fsyncSync, ftruncateSync, openSync, statSync, writeSync } = await import('node:fs');
  const { copyImage } = await import('../../drivers/kit/copy/sparse-copy.js');
  const GIB = 1024 ** 3;
  const dir = join(work, 'image-copies');
  mkdirSync(dir, { recursive: true });
  const run = (command: string, args: string[]) => {
    const result = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    if (result.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${result.stderr?.toString().trim() || result.error?.message}`);
  };
  const makeImage = (path: string, full: boolean) => {
    const fd = openSync(path, 'wx');
    ftruncateSync(fd, GIB);
    if (full) {
      const chunk = Buffer.alloc(128 * 1024 ** 2);
      for (let offset = 0, i = 0; offset < GIB; offset += chunk.length, i++) writeSync(fd, chunk.fill(0x11 + i), 0, chunk.length, offset);
    } else {
      const block = Buffer.alloc(4096, 0x5a);
      for (const offset of [0, GIB / 2, GIB - 4096]) writeSync(fd, block, 0, block.length, offset);
    }
    fsyncSync(fd);
    closeSync(fd);
  };
  const allocated = (path: string) => {
    const bytes = statSync(path).blocks * 512;
    return bytes < 1024 ** 2 ? `${(bytes / 1024).toFixed(0)} KiB` : `${(bytes / 1024 ** 2).toFixed(0)} MiB`;
  };
  for (const kind of ['sparse', 'full'] as const) {
    const volume = join(dir, `volume-${randomUUID()}`);
    makeImage(volume, kind === 'full');
    const snapshots: number[] = [];
    const clones: number[] = [];
    const cps: number[] = [];
    const cpSyncs: number[] = [];
    let method = '';
    let copyAllocated = '';
    let cpAllocated = '';
    for (let i = 0; i < 5; i++) {
      const snapshot = join(dir, `snapshot-${randomUUID()}`);
      const [snapshotMs, outcome] = await timed(() => copyImage(volume, snapshot, () => undefined));
      snapshots.push(snapshotMs);
      method = outcome.method;
      copyAllocated = allocated(snapshot);
      const clone = join(dir, `volume-${randomUUID()}`);
      clones.push((await timed(() => copyImage(volume, clone, () => undefined)))[0]);
      const copied = join(dir, `cp-${i}`);
      cps.push((await timed(async () => run('cp', ['--sparse=always', volume, copied])))[0]);
      cpAllocated = allocated(copied);
      const copiedSynced = join(dir, `cp-sync-${i}`);
      cpSyncs.push(
        (
          await timed(async () => {
            run('cp', ['--sparse=always', volume, copiedSynced]);
            run('sync', [copiedSynced]);
          })
        )[0],
      );
      for (const path of [snapshot, clone, copied, copiedSynced]) rmSync(path, { force: true });
    }
    rmSync(volume, { force: true });
    const [snapshot, clone, cp, cpSync] = [snapshots, clones, cps, cpSyncs].map((samples) => stats(samples).median) as [number, number, number, number];
    report(`file snapshot of a 1 GiB ${kind} volume (median of 5)`, `${ms(snapshot)} (${method} copy, ${copyAllocated} allocated)`);
    report(`file clone of a 1 GiB ${kind} volume (median of 5)`, ms(clone));
    report(`  cp --sparse=always of the same file (median of 5)`, `${ms(cp)} (${cpAllocated} allocated)`);
    report(`  cp --sparse=always + sync of the copy (median of 5)`, ms(cpSync));
    report(`  ratio snapshot / cp, clone / cp`, `${(snapshot / cp).toFixed(2)}x, ${(clone / cp).toFixed(2)}x`);
    report(`  ratio snapshot / (cp + sync), clone / (cp + sync)`, `${(snapshot / cpSync).toFixed(2)}x, ${(clone / cpSync).toFixed(2)}x`);
  }
}

/**
 * connect_volume + disconnect_volume on a file backend exporting through the running tgtd (as root),
 * next to the bare commands that make and remove the same target (`tgt-admin -c FILE --update IQN`,
 * `tgt-admin --delete IQN -f`); attach_volume + detach_volume next to `losetup --find --show` and
 * `losetup -d` of the same image. Medians of 20, interleaved.
 */
async function benchConnections(): Promise<void> {
  const { spawnSync } = await import('node:child_process');
  const { useTgtd, iscsiPrerequisites } = await import('../iscsi/fixtures.js');
  const missing = iscsiPrerequisites();
  if (missing) {
    report('connect/disconnect through tgt', `skipped: the iSCSI bench ${missing}`);
    return;
  }
  const tgtd = useTgtd();
  const dir = join(work, 'connections');
  mkdirSync(dir, { recursive: true });
  const configPath = join(dir, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(dir, 'meta.sqlite')}` } },
      backends: [
        {
          volume_backend_name: 'bench',
          volume_driver: 'file',
          volumes_dir: join(dir, 'volumes'),
          target_helper: 'tgtadm',
          target_ip_address: tgtd.address,
          target_port: tgtd.port,
          target_config_dir: join(dir, 'targets'),
        },
      ],
    }),
  );
  const run = (command: string, args: string[]) => {
    const result = spawnSync(command, args, { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${result.stderr.trim()}`);
    return result.stdout;
  };
  const client = await connect(process.execPath, [BIN, '--config', configPath], { XDG_DATA_HOME: join(dir, 'xdg'), CINDERLIB_MCP_LOG_LEVEL: 'warn' });
  try {
    const volume = await call(client, 'create_volume', { backend: 'bench', size: 1 });
    const bare = await call(client, 'create_volume', { backend: 'bench', size: 1 });
    const bareImage = join(dir, 'volumes', `volume-${bare.id}`);
    const bareIqn = `iqn.2010-10.org.openstack:bench-bare-${bare.id}`;
    const bareConfig = join(dir, 'bare.conf');
    writeFileSync(
      bareConfig,
      `<target ${bareIqn}>\n    backing-store ${bareImage}\n    driver iscsi\n    incominguser benchuser2345678901ab benchpass23456789\n    write-cache on\n</target>\n`,
      { mode: 0o600 },
    );
    const connector = { host: 'bench-host', initiator: 'iqn.1994-05.com.example:bench' };
    const [connects, disconnects, bareUpdates, bareDeletes, attaches, detaches, losetups, losetupDetaches] = [[], [], [], [], [], [], [], []] as number[][];
    for (let i = 0; i < 20; i++) {
      const [connectMs, connection] = await timed(() => call(client, 'connect_volume', { volume_id: volume.id, connector }));
      connects.push(connectMs);
      disconnects.push((await timed(() => call(client, 'disconnect_volume', { connection_id: connection.id })))[0]);
      bareUpdates.push((await timed(async () => run('tgt-admin', ['-c', bareConfig, '--update', bareIqn])))[0]);
      bareDeletes.push((await timed(async () => run('tgt-admin', ['--delete', bareIqn, '-f'])))[0]);
      const [attachMs, attached] = await timed(() => call(client, 'attach_volume', { volume_id: volume.id }));
      attaches.push(attachMs);
      detaches.push((await timed(() => call(client, 'detach_volume', { connection_id: attached.id })))[0]);
      const [loopMs, loop] = await timed(async () => run('losetup', ['--find', '--show', bareImage]).trim());
      losetups.push(loopMs);
      losetupDetaches.push((await timed(async () => run('losetup', ['-d', loop])))[0]);
    }
    const median = (samples: number[]) => stats(samples).median;
    report('connect_volume through tgt, file driver (median of 20)', ms(median(connects)));
    report('  bare tgt-admin -c FILE --update IQN of the same target', ms(median(bareUpdates)));
    report('  ratio connect_volume / bare tgt-admin --update', `${(median(connects) / median(bareUpdates)).toFixed(2)}x`);
    report('disconnect_volume through tgt (median of 20)', ms(median(disconnects)));
    report('  bare tgt-admin --delete IQN -f', ms(median(bareDeletes)));
    report('  ratio disconnect_volume / bare tgt-admin --delete', `${(median(disconnects) / median(bareDeletes)).toFixed(2)}x`);
    report('attach_volume / detach_volume, loop device (median of 20)', `${ms(median(attaches))} / ${ms(median(detaches))}`);
    report('  bare losetup --find --show / losetup -d', `${ms(median(losetups))} / ${ms(median(losetupDetaches))}`);
  } finally {
    await client.close();
    tgtd.stop();
  }
}

/** `cinderlib-mcp dump` of a store holding 100,000 volumes, and `load` of that dump into an empty store (whole commands, medians of 3). */
async function benchSerialization(): Promise<void> {
  const { spawnSync } = await import('node:child_process');
  const { statSync } = await import('node:fs');
  const source = serverEnv('dump-source', 100_000);
  const command = (args: string[], output?: string) => {
    const started = process.hrtime.bigint();
    const result = spawnSync(process.execPath, [BIN, ...args], { stdio: ['ignore', output ? 'pipe' : 'ignore', 'pipe'], maxBuffer: 1024 ** 3, env: { ...process.env, ...source.env } });
    if (result.status !== 0) throw new Error(`${args.join(' ')}: ${result.stderr?.toString()}`);
    if (output) writeFileSync(output, result.stdout);
    return Number(process.hrtime.bigint() - started) / 1e6;
  };
  const dumpFile = join(work, 'dump.json');
  const dumps: number[] = [];
  const loads: number[] = [];
  for (let run = 0; run < 3; run++) {
    dumps.push(command(['dump', '--config', source.configPath], dumpFile));
    const target = serverEnv(`dump-target-${run}`, 0);
    loads.push(command(['load', dumpFile, '--config', target.configPath]));
  }
  const megabytes = statSync(dumpFile).size / 1024 ** 2;
  report('cinderlib-mcp dump, 100,000 volumes (median of 3)', `${ms(stats(dumps).median)} (${megabytes.toFixed(0)} MiB of JSON)`);
  report('cinderlib-mcp load of that dump into an empty store (median of 3)', ms(stats(loads).median));
}

/**
 * The metadata store alone, through the real server: list_volumes and list_snapshots pages at 200
 * and at 100,000 records (first page, a deep cursor, a status filter) on SQLite.
 */
async function benchStore(): Promise<void> {
  const figures = async (label: string, count: number) => {
    const dir = join(work, `store-${label}`);
    mkdirSync(dir, { recursive: true });
    const db = join(dir, 'meta.sqlite');
    seed(db, count, 'bench');
    const store = new SqliteVolumeStore(db);
    const now = new Date().toISOString();
    const volumeId = randomUUID();
    for (let start = 0; start < count; start += 10_000) {
      const snapshots: SnapshotRecord[] = [];
      for (let i = start; i < Math.min(count, start + 10_000); i++) {
        snapshots.push({
          id: randomUUID(),
          volume_id: volumeId,
          backend: 'bench',
          name: `snap-${i}`,
          description: '',
          volume_size: 1,
          status: i % Math.max(1, Math.floor(count / 100)) === 0 ? 'error' : 'available',
          created_at: now,
          updated_at: now,
          status_reason: null,
          provider_location: null,
        });
      }
      await store.importRecords({ volumes: [], snapshots, connections: [] });
    }
    await store.close();
    const configPath = join(dir, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        global: { persistence_config: { storage: 'db', connection: `sqlite:///${db}` } },
        backends: [{ volume_backend_name: 'bench', volume_driver: 'file', volumes_dir: join(dir, 'volumes') }],
      }),
    );
    const client = await connect(process.execPath, [BIN, '--config', configPath], { XDG_DATA_HOME: join(dir, 'xdg'), CINDERLIB_MCP_LOG_LEVEL: 'warn' });
    await call(client, 'list_backends', {});
    const deep = Math.floor(count * 0.9);
    const result = {
      volumes: await sample(client, 200, 'list_volumes', { backend: 'bench', limit: 100 }),
      volumesDeep: await sample(client, 200, 'list_volumes', { backend: 'bench', limit: 100, cursor: encodeCursor('list_volumes', deep, { backend: 'bench' }) }),
      volumesError: await sample(client, 200, 'list_volumes', { status: 'error', limit: 100 }),
      snapshots: await sample(client, 200, 'list_snapshots', { backend: 'bench', limit: 100 }),
      snapshotsError: await sample(client, 200, 'list_snapshots', { status: 'error', limit: 100 }),
      snapshotsOfVolume: await sample(client, 200, 'list_snapshots', { volume_id: volumeId, limit: 100 }),
    };
    await client.close();
    return result;
  };
  const small = await figures('small', 200);
  const large = await figures('large', 100_000);
  for (const key of Object.keys(small) as Array<keyof typeof small>) {
    report(`${key} limit 100, 200 / 100,000 records (median)`, `${ms(small[key].median)} / ${ms(large[key].median)} (${(large[key].median / small[key].median).toFixed(2)}x)`);
  }
}

/**
 * PostgreSQL next to SQLite (a cached call, a list page at 100,000 volumes, create on the file
 * driver), creates per second from two servers at once on one PostgreSQL and one array (the XMS
 * emulator), and a cached call's round trip over Streamable HTTP next to stdio.
 */
/**
 * Where an operation's time goes: the servers append one line per operation to `file`
 * (CINDERLIB_MCP_STEP_TIMINGS); the median of each step, of operations named like `what`.
 */
/** The host's CPU time so far, busy and in all, in clock ticks (/proc/stat's first line). */
function hostCpu(): { busy: number; total: number } {
  const ticks = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = ticks.reduce((sum, value) => sum + value, 0);
  return { busy: total - ticks[3] - (ticks[4] ?? 0), total };
}

/** How many cores were busy on average between two hostCpu readings. */
function coresBusy(before: { busy: number; total: number }, after: { busy: number; total: number }): number {
  return ((after.busy - before.busy) / Math.max(1, after.total - before.total)) * cpus().length;
}

function stepFigures(file: string, what: RegExp, label: string): void {
  let lines: string[];
  try {
    lines = readFileSync(file, 'utf8').trim().split('\n').filter(Boolean);
  } catch {
    return;
  }
  const operations = lines.map((line) => JSON.parse(line) as { what: string; total_ms: number; steps: Record<string, number> }).filter((op) => what.test(op.what));
  if (operations.length === 0) return;
  const names = [...new Set(operations.flatMap((op) => Object.keys(op.steps)))];
  const parts = names.map((name) => `${name} ${stats(operations.map((op) => op.steps[name] ?? 0)).median.toFixed(2)}`);
  report(`  steps of ${label} (median ms, ${operations.length} ops)`, `total ${stats(operations.map((op) => op.total_ms)).median.toFixed(2)}: ${parts.join(', ')}`);
  writeFileSync(file, '');
}

async function benchShared(): Promise<void> {
  const { postgresPrerequisites, startPostgres } = await import('../postgres/fixture.js');
  const missing = postgresPrerequisites();
  if (missing) {
    report('PostgreSQL figures', `skipped: ${missing}`);
    return;
  }
  const { PostgresVolumeStore } = await import('../../src/store/postgres.js');
  const pg = await startPostgres();
  try {
    // 100,000 volumes in PostgreSQL, as in the SQLite figures.
    const url = await pg.createDatabase('bench');
    const store = await PostgresVolumeStore.open(url);
    const now = new Date().toISOString();
    for (let start = 0; start < 100_000; start += 10_000) {
      const volumes: VolumeRecord[] = [];
      for (let i = start; i < start + 10_000; i++) {
        volumes.push({
          id: randomUUID(),
          backend: 'bench',
          name: `bench-${i}`,
          description: '',
          size: 1,
          status: i % 1000 === 0 ? 'error' : 'available',
          pool_name: 'bench',
          bootable: false,
          created_at: now,
          updated_at: now,
          status_reason: null,
          provider_location: null,
        });
      }
      await store.importRecords({ volumes, snapshots: [], connections: [] });
    }
    await store.close();
    // Both servers run at once and take turns, 20 calls each, so the ratio compares them under the same load of the host.
    const pgDir = join(work, 'shared-pg');
    mkdirSync(pgDir, { recursive: true });
    const pgConfig = join(pgDir, 'config.json');
    writeFileSync(
      pgConfig,
      JSON.stringify({
        global: { persistence_config: { storage: 'db', connection: url } },
        backends: [{ volume_backend_name: 'bench', volume_driver: 'file', volumes_dir: join(pgDir, 'volumes') }],
      }),
    );
    const sqlite = serverEnv('shared-sqlite', 100_000);
    const timingsOf = { SQLite: join(work, 'steps-sqlite.jsonl'), PostgreSQL: join(work, 'steps-pg.jsonl') };
    for (const file of Object.values(timingsOf)) writeFileSync(file, '');
    const stores = [
      { label: 'SQLite' as const, client: await connect(process.execPath, [BIN, '--config', sqlite.configPath], { ...sqlite.env, CINDERLIB_MCP_STEP_TIMINGS: timingsOf.SQLite }) },
      {
        label: 'PostgreSQL' as const,
        client: await connect(process.execPath, [BIN, '--config', pgConfig], {
          XDG_DATA_HOME: join(pgDir, 'xdg'),
          CINDERLIB_MCP_LOG_LEVEL: 'warn',
          CINDERLIB_MCP_STEP_TIMINGS: timingsOf.PostgreSQL,
        }),
      },
    ];
    const measured = new Map(stores.map((store) => [store.label, { cached: [] as number[], page: [] as number[], create: [] as number[], made: [] as string[] }]));
    for (const { client } of stores) await call(client, 'get_stats', { backend: 'bench' });
    for (let round = 0; round < 15; round++) {
      for (const { label, client } of round % 2 ? [...stores].reverse() : stores) {
        const figures = measured.get(label)!;
        for (let i = 0; i < 20; i++) figures.cached.push((await timed(() => call(client, 'get_stats', { backend: 'bench' })))[0]);
        for (let i = 0; i < 20; i++) figures.page.push((await timed(() => call(client, 'list_volumes', { backend: 'bench', limit: 100 })))[0]);
        for (let i = 0; i < 20; i++) {
          const [elapsed, volume] = await timed(() => call(client, 'create_volume', { backend: 'bench', size: 1 }));
          figures.create.push(elapsed);
          figures.made.push(volume.id);
        }
      }
    }
    for (const { label, client } of stores) {
      for (const id of measured.get(label)!.made) await call(client, 'delete_volume', { volume_id: id });
      await client.close();
      stepFigures(timingsOf[label], /^create volume/, `create_volume, file driver, ${label}`);
    }
    const median = (label: 'SQLite' | 'PostgreSQL', key: 'cached' | 'page' | 'create') => stats(measured.get(label)![key]).median;
    const onSqlite = { cached: median('SQLite', 'cached'), page: median('SQLite', 'page'), create: median('SQLite', 'create') };
    const onPg = { cached: median('PostgreSQL', 'cached'), page: median('PostgreSQL', 'page'), create: median('PostgreSQL', 'create') };
    for (const [what, key] of [
      ['get_stats cached round trip', 'cached'],
      ['list_volumes page of 100 at 100,000 volumes', 'page'],
      ['create_volume, file driver', 'create'],
    ] as const) {
      report(
        `${what}: SQLite / PostgreSQL (median, 300 each, taking turns)`,
        `${ms(onSqlite[key])} / ${ms(onPg[key])} (ratio ${(onPg[key] / onSqlite[key]).toFixed(2)}x${key === 'create' ? '; goal <= 3x' : ''})`,
      );
    }
    const timings = join(work, 'step-timings.jsonl');
    writeFileSync(timings, '');

    // Creates per second: one server, then two at once, on one PostgreSQL and one array.
    const xms = await new XmsEmulator({ password: 'bench-password', physicalGb: 1_000_000 }).start();
    const shared = await pg.createDatabase('bench_two');
    const serverConfig = (host: string) => {
      const path = join(work, `two-${host}.json`);
      writeFileSync(
        path,
        JSON.stringify({
          global: { host, persistence_config: { storage: 'db', connection: shared } },
          backends: [
            {
              volume_backend_name: 'xtremio',
              volume_driver: 'xtremio',
              san_ip: xms.address,
              xtremio_cluster_name: 'xtremio_cluster',
              san_login: xms.username,
              san_password: xms.password,
              driver_ssl_cert_path: xms.certs.caPath,
            },
          ],
        }),
      );
      return path;
    };
    const clients = [
      await connect(process.execPath, [BIN, '--config', serverConfig('bench-a')], {
        XDG_DATA_HOME: join(work, 'two-a'),
        CINDERLIB_MCP_LOG_LEVEL: 'warn',
        CINDERLIB_MCP_STEP_TIMINGS: timings,
      }),
      await connect(process.execPath, [BIN, '--config', serverConfig('bench-b')], {
        XDG_DATA_HOME: join(work, 'two-b'),
        CINDERLIB_MCP_LOG_LEVEL: 'warn',
        CINDERLIB_MCP_STEP_TIMINGS: timings,
      }),
    ];
    for (const client of clients) await call(client, 'get_stats', { backend: 'xtremio' });
    const createMany = async (client: Client, count: number) => {
      for (let i = 0; i < count; i++) await call(client, 'create_volume', { backend: 'xtremio', size: 1 });
    };
    writeFileSync(timings, '');
    // How busy the host's cores are meanwhile (servers, PostgreSQL, the emulator and these clients all share them).
    let cpu = hostCpu();
    const [oneMs] = await timed(() => createMany(clients[0], 200));
    const oneBusy = coresBusy(cpu, (cpu = hostCpu()));
    const onePerSecond = 200 / (oneMs / 1000);
    report('creates per second, one server (XMS emulator, PostgreSQL)', `${onePerSecond.toFixed(0)}/s (${oneBusy.toFixed(2)} of ${cpus().length} cores busy)`);
    stepFigures(timings, /^create volume/, 'create_volume, XMS, one server');
    cpu = hostCpu();
    const [twoMs] = await timed(() => Promise.all(clients.map((client) => createMany(client, 200))));
    const twoBusy = coresBusy(cpu, hostCpu());
    const twoPerSecond = 400 / (twoMs / 1000);
    report('creates per second, two servers at once (same pool)', `${twoPerSecond.toFixed(0)}/s (${twoBusy.toFixed(2)} of ${cpus().length} cores busy)`);
    stepFigures(timings, /^create volume/, 'create_volume, XMS, two servers');
    report('two servers / one server, creates per second (goal >= 1.6x)', `${(twoPerSecond / onePerSecond).toFixed(2)}x`);
    for (const client of clients) await client.close();
    await xms.cleanup();

    // A cached call over Streamable HTTP next to the same over stdio, with plain clients and the SDK's.
    await benchHttpCall(report);
  } finally {
    await pg.stop();
  }
}

/**
 * BENCH_ONLY=rbd: each RBD tool call next to the bare `rbd`/`ceph` commands the driver runs for it,
 * as client.cinder against a real single-node Ceph (test/rbd/ceph-cluster.ts, started here).
 */
async function benchRbd(): Promise<void> {
  const { spawnSync } = await import('node:child_process');
  const { startCephCluster, cephPrerequisites, CINDER_USER } = await import('../rbd/ceph-cluster.js');
  const missing = cephPrerequisites();
  if (missing) {
    report('RBD tools over bare rbd', `skipped: the RBD bench ${missing}`);
    return;
  }
  const cluster = await startCephCluster();
  report('single-node Ceph start to HEALTH_OK', `${cluster.startSeconds.toFixed(1)} s`);
  const dir = join(work, 'rbd');
  mkdirSync(dir, { recursive: true });
  const configPath = join(dir, 'config.json');
  const backend = {
    volume_backend_name: 'bench',
    volume_driver: 'rbd',
    rbd_pool: cluster.pool,
    rbd_user: CINDER_USER,
    rbd_ceph_conf: cluster.conf,
    rbd_keyring_conf: cluster.cinderKeyring,
  };
  writeFileSync(configPath, JSON.stringify({ global: { persistence_config: { storage: 'memory' } }, backends: [backend] }));
  const common = ['--id', CINDER_USER, '--cluster', 'ceph', '--conf', cluster.conf, '--keyring', cluster.cinderKeyring];
  const bare = (tool: 'rbd' | 'ceph', ...args: string[]) => {
    const result = spawnSync(tool, [...common, ...args], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`${tool} ${args.join(' ')}: ${result.stderr.trim()}`);
    return result.stdout;
  };
  const spec = (name: string) => `${cluster.pool}/${name}`;
  const client = await connect(process.execPath, [BIN, '--config', configPath], { XDG_DATA_HOME: join(dir, 'xdg'), CINDERLIB_MCP_LOG_LEVEL: 'warn' });
  const runs = 10;
  const samples: Record<string, { tool: number[]; bare: number[] }> = {};
  const add = (label: string, tool: number, bareMs: number) => {
    samples[label] ??= { tool: [], bare: [] };
    samples[label].tool.push(tool);
    samples[label].bare.push(bareMs);
  };
  try {
    await call(client, 'get_stats', { backend: 'bench', refresh: true });
    for (let i = 0; i < runs; i++) {
      const [createMs, volume] = await timed(() => call(client, 'create_volume', { backend: 'bench', size: 1 }));
      const b = `bench-bare-${i}`;
      add('create_volume / rbd create', createMs, (await timed(async () => bare('rbd', 'create', '--size', '1G', '--object-size', '4M', spec(b))))[0]);
      add(
        'extend_volume / rbd resize',
        (await timed(() => call(client, 'extend_volume', { volume_id: volume.id, new_size: 2 })))[0],
        (await timed(async () => bare('rbd', 'resize', '--no-progress', '--size', '2G', spec(b))))[0],
      );
      const [snapMs, snapshot] = await timed(() => call(client, 'create_snapshot', { volume_id: volume.id }));
      add(
        'create_snapshot / rbd snap create + protect',
        snapMs,
        (await timed(async () => (bare('rbd', 'snap', 'create', '--no-progress', spec(`${b}@s`)), bare('rbd', 'snap', 'protect', spec(`${b}@s`)))))[0],
      );
      const [cloneMs, clone] = await timed(() => call(client, 'create_volume', { source_volume_id: volume.id }));
      add(
        'create_volume (clone) / rbd snap create + protect + clone',
        cloneMs,
        (
          await timed(
            async () => (
              bare('rbd', 'snap', 'create', '--no-progress', spec(`${b}@c`)),
              bare('rbd', 'snap', 'protect', spec(`${b}@c`)),
              bare('rbd', 'clone', spec(`${b}@c`), spec(`${b}-clone`))
            ),
          )
        )[0],
      );
      const [connectMs, connection] = await timed(() => call(client, 'connect_volume', { volume_id: volume.id, connector: { host: 'bench-host' } }));
      add('connect_volume (rbd info) / ceph mon dump', connectMs, (await timed(async () => bare('ceph', 'mon', 'dump', '--format', 'json')))[0]);
      await call(client, 'disconnect_volume', { connection_id: connection.id });
      add(
        'get_stats refresh / ceph df detail',
        (await timed(() => call(client, 'get_stats', { backend: 'bench', refresh: true })))[0],
        (await timed(async () => bare('ceph', 'df', 'detail', '--format', 'json')))[0],
      );
      add(
        'delete_volume (a clone) / rbd rm + snap unprotect + snap rm',
        (await timed(() => call(client, 'delete_volume', { volume_id: clone.id })))[0],
        (
          await timed(
            async () => (
              bare('rbd', 'rm', '--no-progress', spec(`${b}-clone`)),
              bare('rbd', 'snap', 'unprotect', spec(`${b}@c`)),
              bare('rbd', 'snap', 'rm', '--no-progress', spec(`${b}@c`))
            ),
          )
        )[0],
      );
      add(
        'delete_snapshot / rbd snap unprotect + snap rm',
        (await timed(() => call(client, 'delete_snapshot', { snapshot_id: snapshot.id })))[0],
        (await timed(async () => (bare('rbd', 'snap', 'unprotect', spec(`${b}@s`)), bare('rbd', 'snap', 'rm', '--no-progress', spec(`${b}@s`)))))[0],
      );
      add(
        'delete_volume / rbd rm',
        (await timed(() => call(client, 'delete_volume', { volume_id: volume.id })))[0],
        (await timed(async () => bare('rbd', 'rm', '--no-progress', spec(b))))[0],
      );
    }
    for (const [label, { tool, bare: bareSamples }] of Object.entries(samples)) {
      const toolMs = stats(tool).median;
      const bareMs = stats(bareSamples).median;
      report(`RBD ${label} (median of ${runs})`, `${ms(toolMs)} / ${ms(bareMs)}: +${ms(toolMs - bareMs)} (${(toolMs / bareMs).toFixed(2)}x)`);
    }
  } finally {
    await client.close();
    await cluster.stop();
  }
}
