import { closeSync, existsSync, mkdtempSync, openSync, readSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UUID_PATTERN, errorCode, listAllPages, listImageFiles, readTombstones } from '../helpers/crash-store.js';
import { RawMcpServer, mulberry32, toolText, writeFileDriverConfig, type RawAnswer } from '../helpers/raw-server.js';

/**
 * Crash safety of snapshots, clones and volumes from snapshots (issue 8 item 6, contract section 7)
 * on the file driver with a SQLite store. A 2 GiB source volume is filled with written data (every
 * 4 KiB block non-zero, so each copy reads and writes all of it and takes seconds). Each round
 * starts a server, starts one create_snapshot, create_volume with source_volume_id, or create_volume
 * with snapshot_id (of a snapshot an earlier round made), and kills the server with SIGKILL 20 to
 * 600 ms later: mid-copy, or before the intent was written. Some rounds ("late": the first of each
 * kind, then about one in five) wait for the answer and kill 20 to 600 ms after it instead, so
 * completed copies are checked too. The next server on the same store and folder must show:
 *   - no orphan: every `volume-<uuid>` and `snapshot-<uuid>` file in volumes_dir has a record (any
 *     status) or a tombstone, and nothing else named after an id is there;
 *   - the interrupted operation's record, if any, in `error` with a status_reason starting
 *     "interrupted while"; nothing left creating or deleting;
 *   - no lost record: an operation answered before the kill is listed, `available`;
 *   - the bytes: every available snapshot, clone and volume from a snapshot is 2 GiB and holds the
 *     source's bytes at sampled offsets (the source itself is checked against the pattern too);
 *   - the same call sent again with its request_id (an agent's retry) answers that record, in its
 *     current state, rather than making a second copy;
 *   - delete_snapshot / delete_volume of every error record answers deleted and removes its file.
 * At the end, cascade delete of the source leaves nothing in volumes_dir named after any id.
 *
 * CRASH_LIFECYCLE_RUNS sets the number of kills (default 6), CRASH_LIFECYCLE_SEED the seed
 * (printed with the figures). The built server runs (npm run build first).
 */
const RUNS = Number(process.env.CRASH_LIFECYCLE_RUNS ?? 6);
const SEED = Number(process.env.CRASH_LIFECYCLE_SEED ?? 0x6c1fec7);
const GIB = 1024 ** 3;
const SOURCE_GIB = 2;
const BLOCK = 4096;
const CHUNK = 1024 * 1024;
const STEP_TIMEOUT_MS = 30_000;
/** A 2 GiB copy takes seconds here; one that is let finish may take much longer on a slow disk. */
const COPY_TIMEOUT_MS = 180_000;
/** Available snapshots kept for later rounds to copy from; older ones are deleted, to bound the disk. */
const KEEP_SNAPSHOTS = 2;
const BACKEND = 'files';
/** The driver's process lock and its holder note: the only other files it keeps there. */
const LOCK_FILES = new Set(['.cinderlib-mcp.lock', '.cinderlib-mcp.lock.holder']);
const IMAGE_FILE = new RegExp(`^(volume|snapshot)-(${UUID_PATTERN})$`);

const root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-crash-lifecycle-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Volume {
  id: string;
  name: string;
  size: number;
  status: string;
  status_reason?: string | null;
  snapshot_id?: string | null;
  source_volume_id?: string | null;
}

interface Snapshot {
  id: string;
  volume_id: string;
  name: string;
  volume_size: number;
  status: string;
  status_reason?: string | null;
}

type Kind = 'snapshot' | 'clone' | 'fromSnapshot';

interface Fired {
  run: number;
  kind: Kind;
  /** The record's name: how the next server's listing is matched to the call even when it was not answered. */
  name: string;
  callId: string | number;
  /** The call as sent (with its request_id), to be sent again after the restart as an agent's retry would. */
  tool: string;
  args: Record<string, unknown>;
  late: boolean;
  killAfterMs: number;
}

interface Figures {
  runs: number;
  fired: Record<Kind, number>;
  lateRounds: number;
  answeredBeforeKill: number;
  refusedBeforeKill: Record<string, number>;
  /** Unanswered at the kill: no record at all (killed before the intent was written). */
  noRecordAfterKill: number;
  /** Unanswered at the kill: the record is `error`, interrupted while creating. */
  interruptedRecords: Record<Kind, number>;
  /** Unanswered at the kill, yet the copy finished and was recorded. */
  finishedUnanswered: number;
  /** Bytes found in the partial copies left by interrupted operations (how far the copies got). */
  partialCopyBytes: number[];
  errorRecordsDeleted: number;
  failedErrorDeletes: number;
  filesLeftAfterDelete: number;
  /** Distinct completed copies whose sampled bytes were compared with the source's. */
  copiesVerified: Record<Kind, number>;
  /** Retries with the same request_id after the restart that answered the record the first call made. */
  retriesReplayed: number;
  badRetries: number;
  byteMismatches: number;
  orphans: number;
  unexpectedFiles: number;
  lostRecords: number;
  badErrorReasons: number;
  unsettled: number;
  internalErrors: number;
  duplicateAnswers: number;
  tombstonesSeen: number;
  maxFilesSeen: number;
}

/** The bytes the source holds: a seeded 1 MiB random chunk, each 4 KiB block stamped with its index (never a hole). */
function makePattern(seed: number): (offset: number, length: number) => Buffer {
  const random = mulberry32(seed);
  const base = Buffer.alloc(CHUNK);
  for (let i = 0; i < CHUNK; i += 4) base.writeUInt32LE(Math.floor(random() * 2 ** 32), i);
  const chunk = (index: number): Buffer => {
    const buffer = Buffer.from(base);
    for (let block = 0; block < CHUNK / BLOCK; block++) {
      const blockIndex = (index * CHUNK) / BLOCK + block;
      buffer.writeUInt32LE(blockIndex + 1, block * BLOCK);
      buffer.writeUInt32LE((~blockIndex ^ 0x5a5a5a5a) >>> 0, block * BLOCK + 4);
    }
    return buffer;
  };
  return (offset, length) => {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const index = Math.floor(at / CHUNK);
      const within = at - index * CHUNK;
      const take = Math.min(CHUNK - within, length - done);
      chunk(index).copy(out, done, within, within + take);
      done += take;
    }
    return out;
  };
}

/** Writes the pattern over the whole image, through the filesystem (the server never sees these writes). */
function fillImage(path: string, bytes: number, pattern: (offset: number, length: number) => Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    const batch = 16 * CHUNK;
    for (let offset = 0; offset < bytes; offset += batch) {
      const data = pattern(offset, Math.min(batch, bytes - offset));
      let written = 0;
      while (written < data.length) written += writeSync(fd, data, written, data.length - written, offset + written);
    }
  } finally {
    closeSync(fd);
  }
}

function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const n = readSync(fd, buffer, got, length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return buffer.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

describe('kill -9 during snapshots, clones and volumes from snapshots', () => {
  it(
    `leaves error records and no unknown files over ${RUNS} kills (seed ${SEED})`,
    async () => {
      const random = mulberry32(SEED);
      const int = (low: number, high: number) => low + Math.floor(random() * (high - low + 1));
      const pattern = makePattern(SEED ^ 0x2545f491);
      const volumesDir = join(root, 'volumes');
      const sqlitePath = join(root, 'meta.sqlite');
      const configPath = writeFileDriverConfig(join(root, 'config.json'), { volumesDir, sqlitePath, backend: BACKEND });
      const kinds = (): Record<Kind, number> => ({ snapshot: 0, clone: 0, fromSnapshot: 0 });
      const figures: Figures = {
        runs: 0,
        fired: kinds(),
        lateRounds: 0,
        answeredBeforeKill: 0,
        refusedBeforeKill: {},
        noRecordAfterKill: 0,
        interruptedRecords: kinds(),
        finishedUnanswered: 0,
        partialCopyBytes: [],
        errorRecordsDeleted: 0,
        failedErrorDeletes: 0,
        filesLeftAfterDelete: 0,
        copiesVerified: kinds(),
        retriesReplayed: 0,
        badRetries: 0,
        byteMismatches: 0,
        orphans: 0,
        unexpectedFiles: 0,
        lostRecords: 0,
        badErrorReasons: 0,
        unsettled: 0,
        internalErrors: 0,
        duplicateAnswers: 0,
        tombstonesSeen: 0,
        maxFilesSeen: 0,
      };
      const problems: string[] = [];
      const problem = (text: string) => {
        if (problems.length < 40) problems.push(text);
      };
      const started = Date.now();
      /** Every id any server answered or listed: at the end nothing in volumes_dir may be named after one. */
      const knownIds = new Set<string>();
      const verified = new Set<string>();
      const imagePath = (kind: 'volume' | 'snapshot', id: string) => join(volumesDir, `${kind}-${id}`);

      const startServer = async (): Promise<RawMcpServer> => {
        const server = new RawMcpServer(configPath);
        try {
          await server.initialize(STEP_TIMEOUT_MS);
        } catch (error) {
          await server.kill9();
          throw error;
        }
        return server;
      };

      /** The sampled offsets: both ends, a read across a chunk boundary, and random 4 KiB-aligned or odd places. */
      const sampleOffsets = (): number[] => {
        const size = SOURCE_GIB * GIB;
        const offsets = [0, size - 2 * BLOCK, 7 * CHUNK - 3000];
        for (let i = 0; i < 5; i++) offsets.push(int(0, size / BLOCK - 3) * BLOCK + (i % 2 ? int(1, BLOCK - 1) : 0));
        return offsets;
      };

      /** Does the image at `path` hold the source's bytes (the pattern) at sampled offsets, and is it 2 GiB? */
      const verifyBytes = (path: string, what: string): boolean => {
        const size = existsSync(path) ? statSync(path).size : undefined;
        if (size !== SOURCE_GIB * GIB) {
          figures.byteMismatches++;
          problem(`${what}: ${path} is ${size ?? 'missing'} bytes, not ${SOURCE_GIB} GiB`);
          return false;
        }
        for (const offset of sampleOffsets()) {
          const got = readAt(path, offset, 2 * BLOCK);
          if (!got.equals(pattern(offset, 2 * BLOCK))) {
            figures.byteMismatches++;
            problem(`${what}: ${path} differs from the source at offset ${offset}`);
            return false;
          }
        }
        return true;
      };

      // The source: a 2 GiB volume made by the server, its image then written through with data.
      let sourceId: string;
      {
        const server = await startServer();
        const answer = await server.call('create_volume', { backend: BACKEND, size: SOURCE_GIB, name: 'crash-source' }, STEP_TIMEOUT_MS);
        const volume = answer.result?.structuredContent as Volume | undefined;
        expect(volume?.status, JSON.stringify(answer)).toBe('available');
        sourceId = volume!.id;
        knownIds.add(sourceId);
        expect(await server.close()).toBe(0);
        fillImage(imagePath('volume', sourceId), SOURCE_GIB * GIB, pattern);
        expect(verifyBytes(imagePath('volume', sourceId), 'source after filling')).toBe(true);
      }

      let lastFired: Fired | undefined;
      let lastAnswer: RawAnswer | undefined;

      /** Deletes a record through the server; true when it answered deleted and the image is gone. */
      const deleteRecord = async (server: RawMcpServer, kind: 'volume' | 'snapshot', id: string, run: number, why: string): Promise<boolean> => {
        const tool = kind === 'volume' ? 'delete_volume' : 'delete_snapshot';
        const answer = await server.call(tool, kind === 'volume' ? { volume_id: id } : { snapshot_id: id }, STEP_TIMEOUT_MS);
        const data = answer.result?.structuredContent;
        if (answer.error || answer.result?.isError || data?.deleted !== true || data?.[`${kind}_id`] !== id) {
          figures.failedErrorDeletes += why === 'error' ? 1 : 0;
          problem(`run ${run}: ${tool} of ${why} ${kind} ${id} answered ${JSON.stringify(answer).slice(0, 400)}`);
          return false;
        }
        if (existsSync(imagePath(kind, id))) {
          figures.filesLeftAfterDelete++;
          problem(`run ${run}: ${tool} of ${why} ${kind} ${id} answered deleted, but ${kind}-${id} is still in volumes_dir`);
          return false;
        }
        return true;
      };

      /** What the server started after a kill must show; returns the available snapshots kept for later rounds. */
      const check = async (server: RawMcpServer, files: Map<string, number>, tombstones: Set<string>, run: number): Promise<Snapshot[]> => {
        const volumes = await listAllPages<Volume>(server, 'list_volumes', 'volumes', STEP_TIMEOUT_MS);
        const snapshots = await listAllPages<Snapshot>(server, 'list_snapshots', 'snapshots', STEP_TIMEOUT_MS);
        for (const record of [...volumes, ...snapshots]) knownIds.add(record.id);
        const volumeById = new Map(volumes.map((volume) => [volume.id, volume]));
        const snapshotById = new Map(snapshots.map((snapshot) => [snapshot.id, snapshot]));
        figures.tombstonesSeen = Math.max(figures.tombstonesSeen, tombstones.size);
        figures.maxFilesSeen = Math.max(figures.maxFilesSeen, files.size);

        // No orphan, and nothing but images and the lock file in the folder.
        for (const [name, bytes] of files) {
          if (LOCK_FILES.has(name)) continue;
          const match = IMAGE_FILE.exec(name);
          if (!match) {
            figures.unexpectedFiles++;
            problem(`run ${run}: unexpected file ${name} (${bytes} bytes) in volumes_dir`);
            continue;
          }
          const [, kind, id] = match as unknown as [string, 'volume' | 'snapshot', string];
          const known = kind === 'volume' ? volumeById.has(id) : snapshotById.has(id);
          if (!known && !tombstones.has(id)) {
            figures.orphans++;
            problem(`run ${run}: orphan ${name} (${bytes} bytes): no ${kind} record, no tombstone`);
          }
        }

        // Settled statuses; error records are interrupted operations and nothing else (no call here fails).
        for (const record of [...volumes, ...snapshots]) {
          if (record.status !== 'available' && record.status !== 'error') {
            figures.unsettled++;
            problem(`run ${run}: ${record.id} is "${record.status}" after a restart`);
          }
          if (record.status === 'error' && !record.status_reason?.startsWith('interrupted while')) {
            figures.badErrorReasons++;
            problem(`run ${run}: ${record.id} is in error with status_reason ${JSON.stringify(record.status_reason)}`);
          }
        }

        // The source is untouched: available, 2 GiB, its bytes.
        const source = volumeById.get(sourceId);
        if (source?.status !== 'available' || source.size !== SOURCE_GIB) {
          problem(`run ${run}: the source volume is ${JSON.stringify(source)}`);
        }
        verifyBytes(imagePath('volume', sourceId), `run ${run}: source`);

        // The operation of the previous round, found by its name.
        if (lastFired) {
          const fired = lastFired;
          const record = fired.kind === 'snapshot' ? snapshots.find((s) => s.name === fired.name) : volumes.find((v) => v.name === fired.name);
          const answered = lastAnswer && !lastAnswer.error && !lastAnswer.result?.isError;
          if (answered) {
            const answeredId = (lastAnswer!.result!.structuredContent as { id: string }).id;
            knownIds.add(answeredId);
            if (!record || record.id !== answeredId || record.status !== 'available') {
              figures.lostRecords++;
              problem(`run ${run}: the ${fired.kind} answered before the kill (${answeredId}) is now ${JSON.stringify(record) ?? 'not listed'}`);
            }
          } else if (!lastAnswer) {
            if (!record) figures.noRecordAfterKill++;
            else if (record.status === 'error') {
              figures.interruptedRecords[fired.kind]++;
              const path = imagePath(fired.kind === 'snapshot' ? 'snapshot' : 'volume', record.id);
              const partial = files.get(path.slice(volumesDir.length + 1));
              if (partial !== undefined) figures.partialCopyBytes.push(partial);
            } else if (record.status === 'available') figures.finishedUnanswered++;
          }
          // An agent that timed out retries with the same request_id: it must get this record, not a second copy.
          if (record) {
            const retry = await server.call(fired.tool, fired.args, STEP_TIMEOUT_MS);
            const again = retry.result?.structuredContent as { id?: string; status?: string } | undefined;
            if (retry.error || retry.result?.isError || again?.id !== record.id || again?.status !== record.status) {
              figures.badRetries++;
              problem(`run ${run}: the retry of the ${fired.kind} (record ${record.id}, ${record.status}) answered ${JSON.stringify(retry).slice(0, 500)}`);
            } else figures.retriesReplayed++;
          }
        }

        // Available copies hold the source's bytes; then they go (the disk stays bounded), as do error records.
        for (const volume of volumes) {
          if (volume.id === sourceId) continue;
          const kind: Kind = volume.snapshot_id ? 'fromSnapshot' : 'clone';
          if (volume.status === 'available') {
            if (verifyBytes(imagePath('volume', volume.id), `run ${run}: ${kind} ${volume.id}`) && !verified.has(volume.id)) {
              verified.add(volume.id);
              figures.copiesVerified[kind]++;
            }
            await deleteRecord(server, 'volume', volume.id, run, 'available');
          } else if (volume.status === 'error') {
            if (await deleteRecord(server, 'volume', volume.id, run, 'error')) figures.errorRecordsDeleted++;
          }
        }
        const kept: Snapshot[] = [];
        for (const snapshot of snapshots) {
          if (snapshot.status === 'error') {
            if (await deleteRecord(server, 'snapshot', snapshot.id, run, 'error')) figures.errorRecordsDeleted++;
          } else if (snapshot.status === 'available') {
            if (verifyBytes(imagePath('snapshot', snapshot.id), `run ${run}: snapshot ${snapshot.id}`) && !verified.has(snapshot.id)) {
              verified.add(snapshot.id);
              figures.copiesVerified.snapshot++;
            }
            kept.push(snapshot);
          }
        }
        // Oldest first: keep the newest few for later rounds to copy from.
        for (const snapshot of kept.splice(0, Math.max(0, kept.length - KEEP_SNAPSHOTS))) await deleteRecord(server, 'snapshot', snapshot.id, run, 'old');
        return kept;
      };

      const allFiles = () => listImageFiles(volumesDir, '');

      for (let run = 1; run <= RUNS; run++) {
        const files = allFiles();
        const tombstones = readTombstones(sqlitePath);
        const server = await startServer();
        const snapshots = await check(server, files, tombstones, run);

        // The first round makes (and lets finish) a snapshot, so later rounds have one to copy from.
        let kind: Kind = run === 1 ? 'snapshot' : (['snapshot', 'clone', 'fromSnapshot'] as const)[int(0, 2)];
        if (kind === 'fromSnapshot' && snapshots.length === 0) kind = 'snapshot';
        // Late rounds let the copy finish before the kill: the first of each kind, and about one in five.
        const late = figures.fired[kind] === 0 || random() < 0.2;
        const name = `crash-${run}-${kind}`;
        const request_id = `crash-lifecycle-${SEED}-${run}`;
        const [tool, args]: [string, Record<string, unknown>] =
          kind === 'snapshot'
            ? ['create_snapshot', { volume_id: sourceId, name, request_id }]
            : kind === 'clone'
              ? ['create_volume', { source_volume_id: sourceId, name, request_id }]
              : ['create_volume', { snapshot_id: snapshots[int(0, snapshots.length - 1)].id, name, request_id }];
        const fired: Fired = { run, kind, name, tool, args, callId: server.callTool(tool, args), late, killAfterMs: int(20, 600) };
        figures.fired[kind]++;
        if (late) {
          figures.lateRounds++;
          await server.answer(fired.callId, COPY_TIMEOUT_MS);
        }
        await new Promise((resolve) => setTimeout(resolve, fired.killAfterMs));
        await server.kill9();
        figures.runs++;

        const answers = server.answers.get(fired.callId) ?? [];
        if (answers.length > 1) {
          figures.duplicateAnswers++;
          problem(`run ${run}: ${answers.length} answers to one ${kind}`);
        }
        lastFired = fired;
        lastAnswer = answers[0];
        if (lastAnswer) {
          figures.answeredBeforeKill++;
          if (lastAnswer.error || lastAnswer.result?.isError) {
            const code = errorCode(lastAnswer);
            figures.refusedBeforeKill[code] = (figures.refusedBeforeKill[code] ?? 0) + 1;
            if (code === 'INTERNAL') figures.internalErrors++;
            problem(`run ${run}: ${kind} answered ${toolText(lastAnswer) ?? JSON.stringify(lastAnswer.error)}`);
          }
        } else if (late) {
          problem(`run ${run}: the late ${kind} had an answer, then lost it`);
        }
      }

      // The last kill is checked too; then the source goes with its snapshots, and the folder is empty.
      const last = await startServer();
      const remaining = await check(last, allFiles(), readTombstones(sqlitePath), RUNS + 1);
      const cascade = await last.call('delete_volume', { volume_id: sourceId, cascade: true }, STEP_TIMEOUT_MS);
      const deleted = cascade.result?.structuredContent as { deleted?: boolean; snapshots_deleted?: string[] } | undefined;
      if (
        deleted?.deleted !== true ||
        [...(deleted.snapshots_deleted ?? [])].sort().join() !==
          remaining
            .map((s) => s.id)
            .sort()
            .join()
      ) {
        problem(`cascade delete of the source answered ${JSON.stringify(cascade).slice(0, 600)}; expected snapshots ${remaining.map((s) => s.id).join(', ')}`);
      }
      const leftVolumes = await listAllPages<Volume>(last, 'list_volumes', 'volumes', STEP_TIMEOUT_MS);
      const leftSnapshots = await listAllPages<Snapshot>(last, 'list_snapshots', 'snapshots', STEP_TIMEOUT_MS);
      if (leftVolumes.length + leftSnapshots.length > 0) problem(`end: still listed: ${JSON.stringify([...leftVolumes, ...leftSnapshots]).slice(0, 600)}`);
      expect(await last.close()).toBe(0);
      const leftFiles = readdirSync(volumesDir).filter((name) => !LOCK_FILES.has(name));
      const namedAfterIds = leftFiles.filter((name) => IMAGE_FILE.test(name) || [...knownIds].some((id) => name.includes(id)));
      for (const name of namedAfterIds) problem(`end: ${name} is left in volumes_dir`);
      for (const name of leftFiles.filter((n) => !namedAfterIds.includes(n))) problem(`end: unexpected ${name} in volumes_dir`);

      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      const partial = figures.partialCopyBytes;
      const report = {
        seed: SEED,
        seconds,
        idsSeen: knownIds.size,
        ...figures,
        partialCopyBytes: partial.length ? { count: partial.length, min: Math.min(...partial), max: Math.max(...partial) } : { count: 0 },
      };
      console.log(`crash-lifecycle figures: ${JSON.stringify(report)}`);
      const summary = `seed ${SEED}: ${JSON.stringify(report)}\n${problems.join('\n')}`;
      expect(problems, summary).toEqual([]);
      expect(figures.orphans + figures.unexpectedFiles + figures.lostRecords + figures.byteMismatches, summary).toBe(0);
      expect(figures.failedErrorDeletes + figures.filesLeftAfterDelete + figures.badErrorReasons + figures.unsettled + figures.badRetries, summary).toBe(0);
      // The rounds did exercise what they claim to: kills landed mid-operation, and finished copies were read.
      expect(
        Object.values(figures.interruptedRecords).reduce((a, b) => a + b, 0),
        summary,
      ).toBeGreaterThan(0);
      expect(figures.copiesVerified.snapshot, summary).toBeGreaterThan(0);
      if (RUNS >= 6) expect(figures.copiesVerified.clone + figures.copiesVerified.fromSnapshot, summary).toBeGreaterThan(0);
    },
    Math.max(120_000, RUNS * 30_000 + 120_000),
  );
});
