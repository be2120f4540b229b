import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RawMcpServer, mulberry32, toolText, writeFileDriverConfig, type RawAnswer } from '../helpers/raw-server.js';

/**
 * Generated bad inputs against one running server (file driver, memory store), as issue 13's
 * adversarial run did: tool calls with random tool names and random argument objects (wrong
 * types, strings up to 100 KB, nesting up to 5,000 levels, unicode, __proto__/constructor keys,
 * negative and NaN-ish numbers, arrays for objects, extra keys, null), other JSON-RPC methods with
 * junk params, and raw lines that are not JSON-RPC at all, interleaved on the same stdin.
 *
 * Asserted: every request gets exactly one answer (and a line that is not a request gets the one
 * error answer JSON-RPC 2.0 prescribes, or none for a notification); every tool error starts with
 * one of the contract's codes and a colon, none is INTERNAL, none carries a stack trace; no
 * JSON-RPC internal error (-32603); stdout carries only JSON; the server is alive and answers
 * list_backends at the end; the volumes folder holds exactly the volumes whose create succeeded
 * (and were not deleted): no file for a refused call.
 *
 * FUZZ_INPUTS sets the number of inputs (default 1500), FUZZ_SEED the seed (printed on failure).
 */
const INPUTS = Number(process.env.FUZZ_INPUTS ?? 1500);
const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed13);
const BATCH = 50;
/** Generated requests carry ids from here; garbage lines carry ids from GARBAGE_ID or strings. */
const FIRST_ID = 1_000_000;
/**
 * Requests of a valid JSON-RPC shape that the SDK's stricter request schema refuses (a `_meta`
 * that is not an object with a string or safe-integer progressToken, an extra top-level key):
 * on the main of this writing they are never answered (see the test below), so the broad run
 * leaves them out unless FUZZ_SDK_REFUSED_SHAPES=1; turn that on for good once they are answered.
 */
const SDK_REFUSED_SHAPES = process.env.FUZZ_SDK_REFUSED_SHAPES === '1';
const GARBAGE_ID = 2_000_000_000;
const STEP_TIMEOUT_MS = Number(process.env.FUZZ_STEP_TIMEOUT_MS ?? 60_000);
const BACKEND = 'files';
const CODES = ['INVALID_ARGUMENT', 'NOT_FOUND', 'ALREADY_EXISTS', 'OUT_OF_CAPACITY', 'BACKEND_UNAVAILABLE', 'BACKEND_BUSY', 'READ_ONLY', 'IN_USE', 'UNSUPPORTED', 'INTERNAL'];
const CODE_PREFIX = new RegExp(`^(${CODES.join('|')}): \\S`);
const STACK = /\n\s+at /;
/** attach_volume is left out: a fuzzed attach that succeeds would leave loop devices on this host. */
const TOOLS = [
  'list_backends',
  'get_stats',
  'pool_names',
  'list_volumes',
  'get_volume',
  'create_volume',
  'extend_volume',
  'delete_volume',
  'validate_connector',
  'connect_volume',
  'list_connections',
  'disconnect_volume',
  'detach_volume',
  'list_supported_drivers',
];
const ARG_NAMES = [
  'backend',
  'refresh',
  'status',
  'limit',
  'cursor',
  'volume_id',
  'size',
  'name',
  'description',
  'pool_name',
  'bootable',
  'new_size',
  'connector',
  'connection_id',
  'force',
  'request_id',
  'output_version',
];
const NASTY_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'valueOf',
  '__defineGetter__',
  '',
  ' ',
  'size ',
  'Size',
  'then',
  '$ref',
  '\u0000',
  '\u202e',
  'x'.repeat(300),
];

const root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-fuzz-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** What JSON-RPC 2.0 prescribes for one input line: no answer, or one answer with this id. */
type Expectation = { answer: false } | { answer: true; id: string | number | null };

/**
 * The JSON-RPC 2.0 reading of a line: blank lines are skipped; not JSON: a parse error (id null);
 * not a request, notification or response: an Invalid Request error with the line's id when it
 * has a string or number one (else null); a request (id a string or an integer): its answer; a
 * notification or a response: nothing.
 */
function expectationOf(line: string): Expectation {
  if (!/[^\t \r]/.test(line)) return { answer: false };
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return { answer: true, id: null };
  }
  const idOf = (value: unknown) => {
    const id = value && typeof value === 'object' && !Array.isArray(value) ? (value as { id?: unknown }).id : undefined;
    return typeof id === 'string' || typeof id === 'number' ? id : null;
  };
  const invalid: Expectation = { answer: true, id: idOf(parsed) };
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return invalid;
  const message = parsed as Record<string, unknown>;
  if (message.jsonrpc !== '2.0') return invalid;
  const hasId = 'id' in message;
  const idOk = !hasId || typeof message.id === 'string' || Number.isInteger(message.id);
  if (typeof message.method === 'string') {
    const paramsOk = message.params === undefined || (typeof message.params === 'object' && message.params !== null && !Array.isArray(message.params));
    if (!idOk || !paramsOk) return invalid;
    return hasId ? { answer: true, id: message.id as string | number } : { answer: false };
  }
  if (!hasId || !idOk) return invalid;
  if ('result' in message) return typeof message.result === 'object' && message.result !== null ? { answer: false } : invalid;
  const error = message.error as Record<string, unknown> | undefined;
  return error && typeof error === 'object' && typeof error.code === 'number' && typeof error.message === 'string' ? { answer: false } : invalid;
}

/** Generates inputs as JSON text, so that it can hold what JSON.stringify cannot (1e999, duplicate keys, __proto__). */
class Generator {
  readonly int: (low: number, high: number) => number;
  /** Volume ids seen in successful answers: some calls aim at real volumes. */
  readonly volumeIds: string[] = [];

  constructor(readonly random: () => number) {
    this.int = (low, high) => low + Math.floor(random() * (high - low + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }

  chance(p: number): boolean {
    return this.random() < p;
  }

  unicode(length: number): string {
    const pieces = [
      'a',
      'Z',
      '0',
      ' ',
      '-',
      '/',
      '..',
      '\\',
      '"',
      "'",
      '$',
      '{',
      '}',
      '%s',
      '%n',
      '\t',
      '\n',
      '\r',
      '\u0000',
      '\u0007',
      '\u00e9',
      '\u00df',
      '\u0130',
      '\u2028',
      '\u2029',
      '\u200b',
      '\u202e',
      '\ufeff',
      '\ufffd',
      '\ud800',
      '\udfff',
      '\u{1f4a5}',
      '\u{1f468}\u200d\u{1f469}',
      '\u0627\u0644',
      '\u4e2d\u6587',
      '${env:HOME}',
      '`id`',
      '$(id)',
      ';ls',
      '../../etc/passwd',
      '<script>',
      'NaN',
      'null',
      'undefined',
    ];
    let text = '';
    while (text.length < length) text += this.pick(pieces);
    return text.slice(0, length);
  }

  number(): string {
    return this.pick([
      '0',
      '-0',
      '1',
      '-1',
      '2',
      '3',
      '-3',
      '0.5',
      '-0.5',
      '1.0000000001',
      '2147483648',
      '4294967296',
      '9007199254740993',
      '-9007199254740993',
      '1e308',
      '1e999',
      '-1e999',
      '1e-999',
      '5e-324',
      '1E3',
      '1e+2',
      '1000000',
      '1073741824',
      '1.5e300',
      String(this.int(-10, 10)),
      String(this.int(0, 2000)),
    ]);
  }

  /** A JSON string literal: usually short, sometimes up to 100 KB. */
  string(): string {
    if (this.chance(0.03)) return JSON.stringify(this.unicode(this.int(1_000, 100_000)));
    if (this.chance(0.2)) {
      return JSON.stringify(
        this.pick([
          'NaN',
          'Infinity',
          '-Infinity',
          '-1',
          '1e3',
          '0x10',
          ' 1 ',
          '1,5',
          '',
          'true',
          'null',
          '[]',
          '{}',
          BACKEND,
          'FILES',
          'files ',
          'available',
          'error',
          'creating',
          'deleting',
          '00000000-0000-0000-0000-000000000000',
          'ffffffff-ffff-ffff-ffff-ffffffffffff',
          'volume-1',
          '*',
          '%',
          '..',
        ]),
      );
    }
    if (this.volumeIds.length && this.chance(0.1)) return JSON.stringify(this.pick(this.volumeIds));
    return JSON.stringify(this.unicode(this.int(0, 40)));
  }

  /** A value nested `depth` levels deep, in arrays or objects. */
  deep(depth: number): string {
    const inObjects = this.chance(0.5);
    const key = inObjects ? `{${JSON.stringify(this.pick([...ARG_NAMES, '__proto__', 'a']))}:` : '[';
    return key.repeat(depth) + this.scalar() + (inObjects ? '}' : ']').repeat(depth);
  }

  scalar(): string {
    const roll = this.random();
    if (roll < 0.1) return 'null';
    if (roll < 0.2) return this.chance(0.5) ? 'true' : 'false';
    if (roll < 0.55) return this.number();
    return this.string();
  }

  value(depth = 0): string {
    const roll = this.random();
    if (roll < 0.03) return this.deep(this.int(100, 5_000));
    if (depth >= 3 || roll < 0.6) return this.scalar();
    if (roll < 0.8) return `[${Array.from({ length: this.int(0, 4) }, () => this.value(depth + 1)).join(',')}]`;
    return this.object(depth + 1);
  }

  key(): string {
    const roll = this.random();
    if (roll < 0.55) return this.pick(ARG_NAMES);
    if (roll < 0.8) return this.pick(NASTY_KEYS);
    return this.unicode(this.int(0, 12));
  }

  object(depth = 0, keys = this.int(0, 5)): string {
    const members = Array.from({ length: keys }, () => `${JSON.stringify(this.key())}:${this.value(depth)}`);
    return `{${members.join(',')}}`;
  }

  /** Arguments for a tool call: mostly a broken object, sometimes almost right, sometimes not an object. */
  arguments(tool: string): string | undefined {
    const roll = this.random();
    if (roll < 0.05) return undefined;
    if (roll < 0.15) return this.value(1); // anything: a string, a number, an array, null, deep nesting
    if (roll < 0.35) return this.almostRight(tool);
    return this.object(0);
  }

  /** The right arguments with one thing wrong (or nothing: some calls must succeed to reach deeper paths). */
  almostRight(tool: string): string {
    const members: Record<string, string> = Object.create(null); // so that __proto__ is a key like any other
    const volume = JSON.stringify(this.volumeIds.length && this.chance(0.6) ? this.pick(this.volumeIds) : this.uuid());
    if (['get_stats', 'pool_names', 'create_volume'].includes(tool) || (tool === 'list_volumes' && this.chance(0.5))) members.backend = JSON.stringify(BACKEND);
    if (tool === 'create_volume') members.size = String(this.int(1, 3));
    if (['get_volume', 'extend_volume', 'delete_volume'].includes(tool)) members.volume_id = volume;
    if (tool === 'extend_volume') members.new_size = String(this.int(1, 6));
    if (tool === 'list_volumes' && this.chance(0.5)) members.limit = String(this.int(1, 5));
    if (['validate_connector', 'connect_volume'].includes(tool))
      members.connector = JSON.stringify({ host: `fuzz-${this.int(0, 9)}`, initiator: `iqn.1994-05.com.example:fuzz-${this.int(0, 9)}` });
    if (tool === 'validate_connector') members.backend = JSON.stringify(BACKEND);
    if (tool === 'connect_volume') members.volume_id = volume;
    if (['disconnect_volume', 'detach_volume'].includes(tool)) members.connection_id = JSON.stringify(this.uuid());
    if (tool === 'list_supported_drivers' && this.chance(0.5)) members.output_version = String(this.int(0, 3));
    const names = Object.keys(members);
    const roll = this.random();
    if (roll < 0.3 && names.length)
      members[this.pick(names)] = this.value(1); // one wrong value
    else if (roll < 0.45)
      members[this.key()] = this.value(1); // an extra (or duplicate-looking) key
    else if (roll < 0.55 && names.length)
      delete members[this.pick(names)]; // one missing
    else if (roll < 0.6) members.__proto__ = this.object(1); // __proto__ as an own key
    // else: right as is
    const text = Object.entries(members).map(([key, value]) => `${JSON.stringify(key)}:${value}`);
    if (this.chance(0.05) && names.length) text.push(`${JSON.stringify(this.pick(names))}:${this.value(1)}`); // a duplicate key: the last wins
    return `{${text.join(',')}}`;
  }

  uuid(): string {
    const hex = Array.from({ length: 32 }, () => this.int(0, 15).toString(16)).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`;
  }

  toolName(): string {
    const roll = this.random();
    if (roll < 0.6) return JSON.stringify(this.pick(TOOLS));
    if (roll < 0.75)
      return JSON.stringify(
        this.pick([
          'List_Backends',
          'list_backends ',
          'create-volume',
          'createVolume',
          'delete_volumes',
          'tools/call',
          '__proto__',
          'constructor',
          'toString',
          '',
          'a'.repeat(10_000),
          'list_backends\u0000',
          'get_volume\n',
        ]),
      );
    if (roll < 0.85) return JSON.stringify(this.unicode(this.int(0, 30)));
    return this.value(1); // not a string at all (or missing, as null)
  }

  /**
   * A request's params._meta: a valid one (a progress token, a string or a safe integer, or other
   * keys), or with SDK_REFUSED_SHAPES anything at all, which the SDK does not take for a request.
   */
  meta(): string {
    if (SDK_REFUSED_SHAPES && this.chance(0.5)) return this.chance(0.5) ? `{"progressToken":${this.scalar()}}` : this.value(1);
    const token = this.chance(0.5) ? JSON.stringify(this.unicode(this.int(0, 20))) : String(this.int(-1000, 1000));
    return this.chance(0.8) ? `{"progressToken":${token}}` : `{${JSON.stringify(this.unicode(this.int(1, 10)))}:${this.value(2)}}`;
  }

  /** One tools/call request line. */
  toolCall(id: number): { line: string; tool: string } {
    const name = this.toolName();
    const tool = (() => {
      try {
        return String(JSON.parse(name));
      } catch {
        return '?';
      }
    })();
    const args = this.arguments(TOOLS.includes(tool) ? tool : this.pick(TOOLS));
    const params: string[] = [];
    if (!this.chance(0.03)) params.push(`"name":${name}`);
    if (args !== undefined) params.push(`"arguments":${args}`);
    if (this.chance(0.05)) params.push(`"_meta":${this.meta()}`);
    if (this.chance(0.05)) params.push(`${JSON.stringify(this.key())}:${this.value(1)}`);
    return { line: `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{${params.join(',')}}}`, tool };
  }

  /** Another method with junk params: each still a well-formed request with a unique id. */
  otherRequest(id: number): string {
    const method = this.pick([
      'tools/list',
      'ping',
      'initialize',
      'resources/list',
      'resources/read',
      'prompts/list',
      'prompts/get',
      'completion/complete',
      'logging/setLevel',
      'notifications/initialized',
      'tools/call ',
      'rpc.discover',
      '',
      '__proto__',
      this.unicode(10),
    ]);
    const params = this.chance(0.3) ? '' : `,"params":${this.object(1)}`;
    return `{"jsonrpc":"2.0","id":${id},"method":${JSON.stringify(method)}${params}}`;
  }

  /** A line that is not a valid request: not JSON, wrong shape, batches, bad ids, notifications. */
  garbage(serial: number): string {
    const uniqueId = this.pick([`"g-${serial}"`, String(GARBAGE_ID + serial), `${GARBAGE_ID + serial}.5`]);
    const line = this.pick<() => string>([
      () => this.unicode(this.int(1, 200)).replace(/[\n]/g, ' '),
      () => `{"jsonrpc":"2.0","id":${uniqueId},"method":"tools/call","params":{"name":"list_backends"`, // cut short
      () => `[{"jsonrpc":"2.0","id":${uniqueId},"method":"ping"}]`, // a batch
      () => '[]',
      () => this.pick(['null', 'true', '0', '"text"', '{}', '1e999', 'NaN', 'undefined', '{"jsonrpc":"2.0"}', '\ufeff{}', '{,}']),
      () => `{"jsonrpc":"1.0","id":${uniqueId},"method":"ping"}`,
      () => `{"id":${uniqueId},"method":"ping"}`,
      () => `{"jsonrpc":"2.0","id":${this.pick(['null', 'true', '{}', '[]', `"x-${serial}"`])},"method":${this.pick(['1', 'null', '{}', '"ping"'])}}`,
      () => `{"jsonrpc":"2.0","id":${uniqueId},"method":"tools/call","params":${this.pick(['[]', '"x"', '1', 'null', '[1,2]'])}}`,
      () =>
        `{"jsonrpc":"2.0","method":${JSON.stringify(this.pick(['notifications/progress', 'notifications/unknown', 'notifications/cancelled', 'tools/call']))},"params":{"requestId":"never-${serial}","progressToken":"never"}}`,
      () => `{"jsonrpc":"2.0","id":"r-${serial}","result":${this.pick(['{}', '1', 'null'])}}`, // a response nobody asked for
      () => `{"jsonrpc":"2.0","id":"e-${serial}","error":${this.pick(['{"code":1,"message":"x"}', '{"code":"1"}', '"bad"'])}}`,
      () => `{"jsonrpc":"2.0","id":${uniqueId},"method":"ping","params":${this.deep(this.int(100, 5_000))}}`,
      () => `${this.deep(this.int(1_000, 5_000))}`,
      () => `{"jsonrpc":"2.0","id":${uniqueId},"method":"ping"}\r`, // CRLF
      () => '   \t ', // blank: skipped
      () => `{"jsonrpc":"2.0","id":${uniqueId},"id":"dup-${serial}","method":"ping"}`, // duplicate id key: the last wins
      () =>
        SDK_REFUSED_SHAPES
          ? `{"jsonrpc":"2.0","__proto__":{"id":1},"id":${uniqueId},"method":"ping"}` // an extra top-level key
          : `{"jsonrpc":"2.0","id":${uniqueId},"method":"ping","params":{"__proto__":{"id":1}}}`,
      () => `{"jsonrpc":"2.0","id":${uniqueId},"method":"tools/call","params":{"name":"get_volume","arguments":{"volume_id":${JSON.stringify('\u0000'.repeat(this.int(1, 5000)))}}}}`,
    ])();
    return line;
  }
}

function methodOf(line: string): string {
  try {
    const method = (JSON.parse(line) as { method?: unknown }).method;
    return typeof method === 'string' ? method : '(none)';
  } catch {
    return '(not JSON)';
  }
}

interface Sent {
  line: string;
  kind: 'tool' | 'other' | 'garbage';
  tool?: string;
  expect: Expectation;
}

describe('generated bad inputs', () => {
  it(
    `are each answered once, with a contract code and no stack trace, and the server keeps serving (${INPUTS} inputs, seed ${SEED})`,
    async () => {
      const started = Date.now();
      const volumesDir = join(root, 'volumes');
      const configPath = writeFileDriverConfig(join(root, 'config.json'), { volumesDir, backend: BACKEND, ratio: 20 });
      const server = new RawMcpServer(configPath);
      const generator = new Generator(mulberry32(SEED));
      const problems: string[] = [];
      const problem = (text: string) => {
        if (problems.length < 30) problems.push(text.length > 600 ? `${text.slice(0, 600)}...` : text);
      };
      const tally = {
        toolCalls: 0,
        otherRequests: 0,
        garbageLines: 0,
        toolSuccesses: 0,
        toolErrors: {} as Record<string, number>,
        jsonRpcErrors: {} as Record<string, number>,
        internal: 0,
        sdkInternalOtherMethods: {} as Record<string, number>,
        stackTraces: 0,
        badCodes: 0,
        missingAnswers: 0,
        duplicateAnswers: 0,
        unexpectedAnswers: 0,
        nullIdExpected: 0,
        nullIdAnswered: 0,
        crashes: 0,
        createsSucceeded: 0,
        deletesSucceeded: 0,
        largestLineBytes: 0,
        stalledAfterInput: 0,
      };
      /** Volumes the server said it created and has not said it deleted. */
      const created = new Set<string>();
      const sent = new Map<string | number, Sent>();

      try {
        await server.initialize();
        let nextId = FIRST_ID; // the harness's own calls (initialize, list_backends) count from 1
        for (let done = 0; done < INPUTS;) {
          const batch = Math.min(BATCH, INPUTS - done);
          const ids: Array<string | number> = [];
          for (let i = 0; i < batch; i++, done++) {
            const roll = generator.random();
            let entry: Sent;
            if (roll < 0.7) {
              const { line, tool } = generator.toolCall(nextId);
              entry = { line, kind: 'tool', tool, expect: expectationOf(line) };
              tally.toolCalls++;
            } else if (roll < 0.8) {
              const line = generator.otherRequest(nextId);
              entry = { line, kind: 'other', expect: expectationOf(line) };
              tally.otherRequests++;
            } else {
              const line = generator.garbage(done);
              entry = { line, kind: 'garbage', expect: expectationOf(line) };
              tally.garbageLines++;
            }
            nextId++;
            tally.largestLineBytes = Math.max(tally.largestLineBytes, Buffer.byteLength(entry.line));
            const expected = entry.expect;
            if (expected.answer && expected.id === null) tally.nullIdExpected++;
            else if (expected.answer && expected.id !== null) {
              const id = expected.id;
              if (sent.has(id)) throw new Error(`generator bug: id ${JSON.stringify(id)} used twice (seed ${SEED})`);
              sent.set(id, entry);
              ids.push(id);
            }
            server.writeLine(entry.line);
          }
          // Every request of the batch answered (and every null-id error so far) before the next batch.
          await server
            .until(
              () => ids.every((id) => server.answers.has(id)) && (server.answers.get(null)?.length ?? 0) >= tally.nullIdExpected,
              STEP_TIMEOUT_MS,
              `batch ending at input ${done} not fully answered (seed ${SEED})`,
            )
            .catch((error: Error) => {
              // Judged below like every other missing answer; the rest of the run is not sent.
              const unanswered = ids.filter((id) => !server.answers.has(id)).map((id) => sent.get(id)!.line.slice(0, 300));
              const nulls = `${server.answers.get(null)?.length ?? 0} of ${tally.nullIdExpected} id-null errors`;
              problem(`${error.message.split('\n')[0]}\n${nulls}; unanswered:\n${unanswered.join('\n')}`);
              tally.stalledAfterInput = done;
            });
          for (const id of ids) {
            const entry = sent.get(id)!;
            const answer = server.answers.get(id)?.[0];
            if (!answer) continue;
            if (entry.kind === 'tool' && answer.result && !answer.result.isError) {
              const data = answer.result.structuredContent;
              if (entry.tool === 'create_volume' && data?.id) {
                created.add(data.id);
                generator.volumeIds.push(data.id);
                tally.createsSucceeded++;
              }
              if (entry.tool === 'delete_volume' && data?.deleted === true) {
                created.delete(data.volume_id);
                tally.deletesSucceeded++;
              }
            }
          }
          if (tally.stalledAfterInput) break;
        }

        // The server is alive and serving; then let stray extra answers, if any, arrive.
        expect(server.alive, `server exited (seed ${SEED}); stderr:\n${server.stderr.slice(-2000)}`).toBe(true);
        const alive = await server.call('list_backends', {}, tally.stalledAfterInput ? 5_000 : STEP_TIMEOUT_MS).catch((error: Error) => {
          problem(`list_backends at the end: ${error.message.split('\n')[0]}`);
          return undefined;
        });
        if (alive) expect(alive.result?.structuredContent?.backends?.[0]).toMatchObject({ id: BACKEND, initialized: true });
        await new Promise((resolve) => setTimeout(resolve, 300));

        // Every answer judged.
        for (const [id, answers] of server.answers) {
          if (id === null) continue;
          const entry = sent.get(id);
          if (!entry) {
            if (typeof id === 'number' && id < FIRST_ID) continue; // the harness's own calls
            tally.unexpectedAnswers++;
            problem(`an answer for id ${JSON.stringify(id)} that no request carried: ${JSON.stringify(answers[0]).slice(0, 300)}`);
            continue;
          }
          if (answers.length > 1) {
            tally.duplicateAnswers++;
            problem(`${answers.length} answers for id ${JSON.stringify(id)} (${entry.line.slice(0, 200)})`);
          }
        }
        for (const [id, entry] of sent) {
          if (!server.answers.has(id)) {
            tally.missingAnswers++;
            problem(`no answer for ${entry.line.slice(0, 200)}`);
          }
        }
        const nullAnswers = server.answers.get(null) ?? [];
        tally.nullIdAnswered = nullAnswers.length;
        if (nullAnswers.length !== tally.nullIdExpected) problem(`${nullAnswers.length} error answers with id null, ${tally.nullIdExpected} expected`);

        const judge = (answer: RawAnswer, entry: Sent | undefined) => {
          const where = entry ? entry.line.slice(0, 200) : 'a line with no id';
          if (answer.error) {
            const key = String(answer.error.code);
            tally.jsonRpcErrors[key] = (tally.jsonRpcErrors[key] ?? 0) + 1;
            const message = String(answer.error.message);
            const method = entry ? methodOf(entry.line) : '(none)';
            if (answer.error.code === -32603 || /^INTERNAL\b/.test(message) || /INTERNAL:/.test(message)) {
              if (method === 'tools/call' || method === 'resources/read' || method === 'resources/list') {
                tally.internal++;
                problem(`internal error ${answer.error.code} "${message}" for ${where}`);
              } else {
                // The SDK's own handlers (initialize and the like) answer bad params with -32603 and a
                // zod dump: outside the tool contract, counted and reported rather than failed.
                tally.sdkInternalOtherMethods[method] = (tally.sdkInternalOtherMethods[method] ?? 0) + 1;
              }
            }
            if (STACK.test(message) || STACK.test(JSON.stringify(answer.error.data ?? ''))) {
              tally.stackTraces++;
              problem(`stack trace in a JSON-RPC error for ${where}: ${message}`);
            }
            return;
          }
          if (entry?.kind !== 'tool' && !(entry?.line.includes('"tools/call"') ?? false)) return;
          const text = toolText(answer) ?? '';
          if (!answer.result?.isError) {
            tally.toolSuccesses++;
            return;
          }
          const code = /^([A-Z_]+):/.exec(text)?.[1] ?? 'NO_CODE';
          tally.toolErrors[code] = (tally.toolErrors[code] ?? 0) + 1;
          if (!CODE_PREFIX.test(text)) {
            tally.badCodes++;
            problem(`tool error without a contract code for ${where}: ${JSON.stringify(text.slice(0, 300))}`);
          }
          if (code === 'INTERNAL') {
            tally.internal++;
            problem(`INTERNAL for ${where}: ${text}`);
          }
          if (STACK.test(text)) {
            tally.stackTraces++;
            problem(`stack trace in a tool error for ${where}: ${text}`);
          }
        };
        for (const [id, entry] of sent) for (const answer of server.answers.get(id) ?? []) judge(answer, entry);
        for (const answer of nullAnswers) judge(answer, undefined);
        if (server.badStdoutLines.length) problem(`stdout carried non-JSON: ${server.badStdoutLines.slice(0, 3).join(' | ')}`);
        if (/failed unexpectedly/.test(server.stderr)) problem(`stderr reports an unexpected failure: ${/.*failed unexpectedly.*/.exec(server.stderr)?.[0]}`);

        // The folder holds exactly the volumes whose create succeeded (and were not deleted).
        const files = existsSync(volumesDir)
          ? readdirSync(volumesDir)
              .filter((name) => name.startsWith('volume-'))
              .sort()
          : [];
        const expected = [...created].map((id) => `volume-${id}`).sort();
        const strays = files.filter((name) => !expected.includes(name));
        const missing = expected.filter((name) => !files.includes(name));
        if (strays.length) problem(`files no successful create accounts for: ${strays.join(', ')}`);
        if (missing.length) problem(`created volumes without a file: ${missing.join(', ')}`);

        // Plain calls still behave after all that (no polluted prototype, no stuck lock).
        if (tally.stalledAfterInput) throw new Error(`seed ${SEED}:\n${problems.join('\n')}`);
        const create = await server.call('create_volume', { backend: BACKEND, size: 1, name: 'after-fuzz' }, STEP_TIMEOUT_MS);
        const volume = create.result?.structuredContent;
        expect(volume, JSON.stringify(create)).toMatchObject({ backend: BACKEND, name: 'after-fuzz', size: 1, status: 'available', bootable: false, description: '' });
        const removed = await server.call('delete_volume', { volume_id: volume.id }, STEP_TIMEOUT_MS);
        expect(removed.result?.structuredContent).toEqual({ volume_id: volume.id, deleted: true });
      } finally {
        if (!server.alive) tally.crashes++;
        const exit = await server.close();
        if (exit !== 0) problem(`clean shutdown exited ${exit ?? server.exitSignal}; stderr:\n${server.stderr.slice(-1000)}`);
        const seconds = ((Date.now() - started) / 1000).toFixed(1);
        console.log(`fuzz-inputs figures: ${JSON.stringify({ seed: SEED, inputs: INPUTS, seconds, ...tally })}`);
      }
      expect(problems, `seed ${SEED}:\n${problems.join('\n')}`).toEqual([]);
      expect(tally.crashes).toBe(0);
      expect(tally.internal).toBe(0);
    },
    Math.max(60_000, INPUTS * 100 + 60_000),
  );
});

/**
 * Found by this fuzzing: a frame of valid JSON-RPC shape that the SDK's stricter request schema
 * refuses (`_meta` not an object with a string or safe-integer progressToken; a top-level key
 * besides jsonrpc, id, method and params; an integer id beyond 2^53) passes the transport's shape
 * check and is counted in flight, then the SDK drops it as "Unknown message type" (to onerror
 * only): no answer ever, and its place among the calls in flight is never freed. 64 of them stall
 * the session (no later request is handed on), and a clean shutdown waits the whole grace period.
 */
describe('requests the SDK request schema refuses', () => {
  const shapes: Record<string, (id: number) => string> = {
    '_meta an array': (id) => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"list_backends","arguments":{},"_meta":[]}}`,
    '_meta a string': (id) => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"list_backends","arguments":{},"_meta":"x"}}`,
    'progressToken true': (id) => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"list_backends","arguments":{},"_meta":{"progressToken":true}}}`,
    'progressToken 1.5': (id) => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"list_backends","arguments":{},"_meta":{"progressToken":1.5}}}`,
    'related-task without taskId': (id) =>
      `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"list_backends","arguments":{},"_meta":{"io.modelcontextprotocol/related-task":{}}}}`,
    'an extra top-level key': (id) => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"list_backends","arguments":{}},"extra":1}`,
    'an id beyond 2^53': (id) => `{"jsonrpc":"2.0","id":${9007199254740994 + id * 2},"method":"tools/call","params":{"name":"list_backends","arguments":{}}}`,
  };

  it('answers each once, keeps serving after 70 of them, and shuts down without waiting for them', async () => {
    const dir = mkdtempSync(join(root, 'refused-'));
    const server = new RawMcpServer(writeFileDriverConfig(join(dir, 'config.json'), { volumesDir: join(dir, 'volumes'), backend: BACKEND }));
    try {
      await server.initialize();
      expect((await server.call('list_backends', {}, 10_000)).result?.structuredContent?.backends).toHaveLength(1); // the SDK is loaded
      const ids = new Map<string, string | number>();
      let next = 5_000;
      for (const [shape, frame] of Object.entries(shapes)) {
        const line = frame(next++);
        ids.set(shape, JSON.parse(line).id);
        server.writeLine(line);
      }
      await server.until(() => [...ids.values()].every((id) => server.answers.has(id)), 5_000, 'waiting for answers').catch(() => undefined);
      const unanswered = [...ids].filter(([, id]) => !server.answers.has(id)).map(([shape]) => shape);
      expect.soft(unanswered, 'requests never answered').toEqual([]);
      for (const id of ids.values()) {
        if (!server.answers.has(id)) continue;
        expect.soft(server.answers.get(id)).toHaveLength(1);
        expect.soft(server.answers.get(id)![0].error?.code).not.toBe(-32603);
      }

      for (let i = 0; i < 70; i++) server.writeLine(shapes['_meta an array'](10_000 + i));
      const after = server.callTool('list_backends', {});
      await server.until(() => server.answers.has(after), 5_000, 'a valid call after 70 refused ones').catch(() => undefined);
      expect.soft(server.answers.has(after), 'a valid call after 70 refused ones is answered').toBe(true);

      const closing = Date.now();
      expect.soft(await server.close(12_000), 'exit code of a clean shutdown').toBe(0);
      expect.soft(Date.now() - closing, 'shutdown waited for calls that can never finish').toBeLessThan(10_000);
    } finally {
      await server.kill9();
    }
  }, 60_000);
});
