import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commandLineOf, processAlive } from '../helpers/processes.js';

/**
 * A real single-node Ceph (Debian 12's Pacific packages): one monitor, one manager and one OSD on
 * memstore, started by hand (no cephadm, no systemd) under a scratch directory with a private
 * ceph.conf, on free 127.0.0.1 ports, and removed after. Keys are made here and written to 0600
 * keyrings: none is ever on a command line. `client.admin` is the harness's; the driver gets a
 * restricted `client.cinder` (Cinder's documented caps) on the pool `volumes`.
 */
const BINARIES = ['/usr/bin/ceph-mon', '/usr/bin/ceph-osd', '/usr/bin/ceph-mgr', '/usr/bin/ceph', '/usr/bin/rbd', '/usr/bin/monmaptool', '/usr/bin/qemu-img', '/usr/bin/qemu-io'];
const DIR_PREFIX = 'cinderlib-mcp-ceph-';
export const POOL = 'volumes';
export const CINDER_USER = 'cinder';

export function cephPrerequisites(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (the harness runs the Ceph daemons)';
  for (const binary of BINARIES) {
    if (!existsSync(binary)) return `needs ${binary} (apt-get install ceph-mon ceph-osd ceph-mgr ceph-common qemu-utils qemu-block-extra)`;
  }
  const rbdBlock = spawnSync('qemu-img', ['--help'], { encoding: 'utf8' });
  if (!/\brbd\b/.test(rbdBlock.stdout)) return 'needs qemu-img with the rbd block driver (qemu-block-extra)';
  return undefined;
}

export interface CephCluster {
  dir: string;
  /** The cluster's own ceph.conf: it names every keyring ($cluster.$name.keyring in keyrings/). */
  conf: string;
  fsid: string;
  /** The monitor's v1 (msgr1) and v2 ports, as `ceph mon dump` shows them. */
  monV1Port: number;
  monV2Port: number;
  pool: string;
  /** client.cinder's keyring file (what rbd_keyring_conf points at) and its key, for leak checks. */
  cinderKeyring: string;
  cinderKey: string;
  adminKey: string;
  /** Runs rbd as client.admin; throws on failure. */
  rbd(...args: string[]): string;
  /** Runs ceph as client.admin; throws on failure. */
  ceph(...args: string[]): string;
  /** An `rbd:` URL for qemu-img/qemu-io as client.cinder (keyring from the conf: no key in the URL). */
  qemuUrl(image: string): string;
  /** Seconds from the first command to HEALTH_OK. */
  startSeconds: number;
  stop(): Promise<void>;
}

/** A key as Ceph writes it: base64 of type 1 (AES), creation time, length 16, then 16 random bytes. */
export function makeCephKey(): string {
  const header = Buffer.alloc(12);
  header.writeUInt16LE(1, 0);
  header.writeUInt32LE(Math.floor(Date.now() / 1000), 2);
  header.writeUInt32LE(0, 6);
  header.writeUInt16LE(16, 10);
  return Buffer.concat([header, randomBytes(16)]).toString('base64');
}

function keyringEntry(name: string, key: string, caps: Record<string, string> = {}): string {
  return [`[${name}]`, `\tkey = ${key}`, ...Object.entries(caps).map(([service, cap]) => `\tcaps ${service} = "${cap}"`), ''].join('\n');
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** `count` consecutive free ports below the kernel's ephemeral range, so clients' own ports never collide. */
async function freePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 10_000);
    let free = true;
    for (let port = base; port < base + count && free; port++) free = await portFree(port);
    if (free) return base;
  }
  throw new Error(`no ${count} consecutive free ports on 127.0.0.1 between 20000 and 30000`);
}

/** Clusters of earlier runs whose test process is gone: their daemons are stopped (only processes running that directory's conf) and the directory removed. */
export function removeStaleClusters(): void {
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith(DIR_PREFIX)) continue;
    const dir = join(tmpdir(), entry);
    let owner: { owner?: number; daemons?: number[] } = {};
    try {
      owner = JSON.parse(readFileSync(join(dir, 'owner'), 'utf8')) as typeof owner;
    } catch {
      // no owner file: a run cut short before it wrote one
    }
    if (owner.owner !== undefined && processAlive(owner.owner)) continue;
    for (const pid of owner.daemons ?? []) {
      if (commandLineOf(pid).includes(join(dir, 'ceph.conf'))) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function startCephCluster(): Promise<CephCluster> {
  removeStaleClusters();
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  const daemons: ChildProcess[] = [];
  const writeOwner = () => writeFileSync(join(dir, 'owner'), JSON.stringify({ owner: process.pid, daemons: daemons.map((d) => d.pid) }));
  writeOwner();
  const conf = join(dir, 'ceph.conf');
  const keyrings = join(dir, 'keyrings');
  for (const sub of ['keyrings', 'run', 'log', 'mon', 'mgr', 'osd']) mkdirSync(join(dir, sub), { mode: 0o700 });
  const fsid = randomUUID();
  const monV2Port = await freePortRange(2);
  const monV1Port = monV2Port + 1;
  const bindBase = await freePortRange(40);
  writeFileSync(
    conf,
    [
      '[global]',
      `fsid = ${fsid}`,
      `mon host = [v2:127.0.0.1:${monV2Port},v1:127.0.0.1:${monV1Port}]`,
      'mon initial members = a',
      'public addr = 127.0.0.1',
      'cluster addr = 127.0.0.1',
      `ms bind port min = ${bindBase}`,
      `ms bind port max = ${bindBase + 39}`,
      'auth cluster required = cephx',
      'auth service required = cephx',
      'auth client required = cephx',
      'auth allow insecure global id reclaim = false',
      `keyring = ${keyrings}/$cluster.$name.keyring`,
      `run dir = ${dir}/run`,
      `pid file = ${dir}/run/$cluster-$name.pid`,
      'osd pool default size = 1',
      'osd pool default min size = 1',
      'osd pool default pg num = 8',
      'osd pool default pgp num = 8',
      'osd pool default pg autoscale mode = off',
      'osd crush chooseleaf type = 0',
      'mon allow pool size one = true',
      'mon allow pool delete = true',
      'mon warn on pool no redundancy = false',
      'mon data avail warn = 2',
      'mon data avail crit = 1',
      'mgr initial modules = iostat',
      '',
      '[mon]',
      `mon data = ${dir}/mon/$cluster-$id`,
      `log file = ${dir}/log/$cluster-$name.log`,
      '',
      '[mgr]',
      `mgr data = ${dir}/mgr/$cluster-$id`,
      `log file = ${dir}/log/$cluster-$name.log`,
      '',
      '[osd]',
      `osd data = ${dir}/osd/$cluster-$id`,
      'osd objectstore = memstore',
      'memstore device bytes = 4294967296',
      `log file = ${dir}/log/$cluster-$name.log`,
      '',
    ].join('\n'),
  );
  const adminKey = makeCephKey();
  const cinderKey = makeCephKey();
  const mgrKey = makeCephKey();
  const osdKey = makeCephKey();
  const keyringFile = (name: string) => join(keyrings, `ceph.${name}.keyring`);
  const writeKeyring = (file: string, text: string) => writeFileSync(file, text, { mode: 0o600 });
  writeKeyring(keyringFile('client.admin'), keyringEntry('client.admin', adminKey, { mon: 'allow *', osd: 'allow *', mds: 'allow *', mgr: 'allow *' }));
  writeKeyring(keyringFile(`client.${CINDER_USER}`), keyringEntry(`client.${CINDER_USER}`, cinderKey));
  writeKeyring(keyringFile('mgr.x'), keyringEntry('mgr.x', mgrKey));
  writeKeyring(keyringFile('osd.0'), keyringEntry('osd.0', osdKey));
  // The monitor's keyring seeds its auth database: every entity but the OSD (added by `ceph osd new`).
  const monKeyring = join(dir, 'mon.keyring');
  writeKeyring(
    monKeyring,
    [
      keyringEntry('mon.', makeCephKey(), { mon: 'allow *' }),
      keyringEntry('client.admin', adminKey, { mon: 'allow *', osd: 'allow *', mds: 'allow *', mgr: 'allow *' }),
      keyringEntry(`client.${CINDER_USER}`, cinderKey, { mon: 'profile rbd', osd: `profile rbd pool=${POOL}`, mgr: `profile rbd pool=${POOL}` }),
      keyringEntry('mgr.x', mgrKey, { mon: 'allow profile mgr', osd: 'allow *', mds: 'allow *' }),
    ].join(''),
  );

  const run = (command: string, args: string[], input?: string): string => {
    const result = spawnSync(command, args, { encoding: 'utf8', input, timeout: 60_000 });
    if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status ?? result.signal}): ${result.stderr}${result.stdout}`);
    return result.stdout;
  };
  const daemon = (command: string, args: string[]) => {
    const child = spawn(command, ['-f', '-c', conf, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr?.on('data', (chunk) => (log = (log + String(chunk)).slice(-4000)));
    child.on('exit', (code, signal) => {
      if (!stopping) process.stderr.write(`ceph test cluster: ${command} exited (${code ?? signal}): ${log}\n`);
    });
    daemons.push(child);
    writeOwner();
  };
  let stopping = false;
  const stop = async () => {
    stopping = true;
    await Promise.all(
      daemons.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
            child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const monmap = join(dir, 'monmap');
    run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monV2Port},v1:127.0.0.1:${monV1Port}]`, monmap]);
    run('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', monmap, '--keyring', monKeyring]);
    daemon('ceph-mon', ['-i', 'a']);
    const ceph = (...args: string[]) => run('ceph', ['-c', conf, '--id', 'admin', '--connect-timeout', '30', ...args]);
    const rbd = (...args: string[]) => run('rbd', ['-c', conf, '--id', 'admin', ...args]);
    daemon('ceph-mgr', ['-i', 'x']);
    const osdUuid = randomUUID();
    // The OSD's key goes in a file (ceph osd new -i), never in an argument.
    const secretFile = join(dir, 'osd-secret.json');
    writeKeyring(secretFile, JSON.stringify({ cephx_secret: osdKey }));
    const osdId = ceph('osd', 'new', osdUuid, '-i', secretFile).trim();
    rmSync(secretFile);
    if (osdId !== '0') throw new Error(`ceph osd new gave id ${osdId}, expected 0`);
    mkdirSync(join(dir, 'osd', 'ceph-0'), { mode: 0o700 });
    run('ceph-osd', ['-c', conf, '-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    daemon('ceph-osd', ['-i', '0']);
    ceph('osd', 'pool', 'create', POOL, '8', '8');
    rbd('pool', 'init', POOL);
    await waitForHealth(ceph);
    return {
      dir,
      conf,
      fsid,
      monV1Port,
      monV2Port,
      pool: POOL,
      cinderKeyring: keyringFile(`client.${CINDER_USER}`),
      cinderKey,
      adminKey,
      rbd,
      ceph,
      qemuUrl: (image) => `rbd:${POOL}/${image}:conf=${conf}:id=${CINDER_USER}`,
      startSeconds: (Date.now() - started) / 1000,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** HEALTH_OK with every placement group active+clean, or an error naming what the cluster said last. */
async function waitForHealth(ceph: (...args: string[]) => string): Promise<void> {
  const deadline = Date.now() + 90_000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const status = JSON.parse(ceph('status', '--format', 'json')) as {
        health: { status: string; checks?: Record<string, unknown> };
        pgmap: { num_pgs: number; pgs_by_state?: Array<{ state_name: string; count: number }> };
        mgrmap?: { available?: boolean };
      };
      const clean = status.pgmap.pgs_by_state?.find((s) => s.state_name === 'active+clean')?.count ?? 0;
      if (status.health.status === 'HEALTH_OK' && status.pgmap.num_pgs > 0 && clean === status.pgmap.num_pgs && status.mgrmap?.available !== false) return;
      last = `${status.health.status} ${Object.keys(status.health.checks ?? {}).join(',')} pgs ${clean}/${status.pgmap.num_pgs}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`the test Ceph cluster did not reach HEALTH_OK in 90 s: ${last}`);
}
