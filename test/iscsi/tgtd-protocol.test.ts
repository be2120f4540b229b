import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeReply, encodeRequest, tgtErrorText, tgtdRequests, type TgtRequest } from '../../drivers/kit/targets/tgtd-protocol.js';
import { TgtdChannel } from '../../drivers/kit/targets/tgtd-relay.js';
import { StorageError } from '../../src/base/errors.js';
import type { CommandResult, CommandRunner } from '../../drivers/kit/exec/runner.js';
import { SecretRegistry } from '../../src/base/secrets.js';

/**
 * The requests this server sends to tgtd are the bytes tgtadm itself sends for the same options:
 * tgtadm (which honours TGT_IPC_SOCKET) talks to a socket of the test's, which records each
 * request and answers success. No tgtd, no root needed; tgtadm is.
 */
const TGTADM = '/usr/sbin/tgtadm';
const inCi = process.env.CI === 'true';
const NAME = 'iqn.2010-10.org.openstack:volume-0b6e9f5c-3d0e-4d43-9d7e-2f1f3b0c2a11';
const PATH = '/var/lib/cinder/volumes/volume-0b6e9f5c-3d0e-4d43-9d7e-2f1f3b0c2a11';

const CASES: [string, TgtRequest, string[]][] = [
  ['show targets', tgtdRequests.showTargets(), ['--lld', 'iscsi', '--op', 'show', '--mode', 'target']],
  ['show portals', tgtdRequests.showPortals(), ['--lld', 'iscsi', '--op', 'show', '--mode', 'portal']],
  ['show accounts', tgtdRequests.showAccounts(), ['--lld', 'iscsi', '--op', 'show', '--mode', 'account']],
  ['new target', tgtdRequests.newTarget(7, NAME), ['--lld', 'iscsi', '--op', 'new', '--mode', 'target', '--tid', '7', '--targetname', NAME]],
  ['delete target', tgtdRequests.deleteTarget(7, NAME), ['--lld', 'iscsi', '--op', 'delete', '--mode', 'target', '--tid', '7']],
  ['bind ALL', tgtdRequests.bindAddress(7, 'ALL'), ['--lld', 'iscsi', '--op', 'bind', '--mode', 'target', '--tid', '7', '--initiator-address', 'ALL']],
  ['unbind ALL', tgtdRequests.bindAddress(7, 'ALL', false), ['--lld', 'iscsi', '--op', 'unbind', '--mode', 'target', '--tid', '7', '--initiator-address', 'ALL']],
  ['close connection', tgtdRequests.closeConnection(7, 3n, 1), ['--lld', 'iscsi', '--op', 'delete', '--mode', 'conn', '--tid', '7', '--sid', '3', '--cid', '1']],
  ['new LUN', tgtdRequests.newUnit(7, 1, PATH, ''), ['--lld', 'iscsi', '--op', 'new', '--mode', 'logicalunit', '--tid', '7', '--lun', '1', '--backing-store', PATH]],
  [
    'new LUN with bsoflags',
    tgtdRequests.newUnit(7, 1, PATH, 'sync:direct'),
    ['--lld', 'iscsi', '--op', 'new', '--mode', 'logicalunit', '--tid', '7', '--lun', '1', '--backing-store', PATH, '--bsoflags', 'sync:direct'],
  ],
  [
    'LUN serials',
    tgtdRequests.updateUnit(7, 1, { scsi_id: 'volume-0b6e9f5c', scsi_sn: 'volume-0b6e9f5c' }),
    ['--lld', 'iscsi', '--op', 'update', '--mode', 'logicalunit', '--tid', '7', '--lun', '1', '--params', 'scsi_id=volume-0b6e9f5c,scsi_sn=volume-0b6e9f5c'],
  ],
  [
    'new account',
    tgtdRequests.newAccount('Abcdefghij2345678901', 'NotASecret234567'),
    ['--lld', 'iscsi', '--mode', 'account', '--op', 'new', '--user', 'Abcdefghij2345678901', '--password', 'NotASecret234567'],
  ],
  ['delete account', tgtdRequests.deleteAccount('Abcdefghij2345678901'), ['--lld', 'iscsi', '--mode', 'account', '--op', 'delete', '--user', 'Abcdefghij2345678901']],
  ['bind account', tgtdRequests.bindAccount(7, 'Abcdefghij2345678901'), ['--lld', 'iscsi', '--mode', 'account', '--op', 'bind', '--tid', '7', '--user', 'Abcdefghij2345678901']],
];

/** A runner that answers every command with `result`: the relay's exits, without a host. */
function answering(result: CommandResult): CommandRunner {
  return { target: 'this host', run: async () => result, isRoot: async () => true, close: async () => undefined };
}

function channel(result: CommandResult): TgtdChannel {
  return new TgtdChannel({ runner: answering(result), privileged: async () => [] }, { backendName: 'files', portal: '127.0.0.1:3260' }, new SecretRegistry());
}

describe('tgtd replies and relay failures', () => {
  it('reads a reply: its code and its text without the NUL', () => {
    const reply = Buffer.concat([Buffer.from([0, 0, 0, 0, 14, 0, 0, 0]), Buffer.from('abcde\0')]);
    expect(decodeReply(reply)).toEqual({ code: 0, output: 'abcde' });
    expect(decodeReply(Buffer.from([15, 0, 0, 0, 8, 0, 0, 0]))).toEqual({ code: 15, output: '' });
    expect(decodeReply(Buffer.from([0, 0, 0]))).toBeUndefined();
    expect(tgtErrorText(19)).toBe('this target is still active');
    expect(tgtErrorText(99)).toMatch(/unknown/);
  });

  it('says tgtd is not running, with the portal to start it on, when the relay cannot connect', async () => {
    const error = await channel({ exitCode: 3, stdout: '', stderr: "can't connect to tgt daemon at /var/run/tgtd/socket.0: No such file or directory\n" })
      .send([tgtdRequests.showPortals()])
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageError);
    expect((error as StorageError).code).toBe('BACKEND_UNAVAILABLE');
    expect((error as StorageError).message).toMatch(
      /list the portals tgtd listens on: tgtd is not running on this host \(can't connect .*\); start tgtd \(control port 0\) listening on 127\.0\.0\.1:3260/,
    );
  });

  it('names the root helper when sudo refuses, and perl when it is missing', async () => {
    const sudo = await channel({ exitCode: 1, stdout: '', stderr: 'sudo: a password is required\n' })
      .send([tgtdRequests.showTargets()])
      .catch((caught: unknown) => caught);
    expect((sudo as StorageError).code).toBe('UNSUPPORTED');
    expect((sudo as StorageError).message).toMatch(/root_helper/);
    const perl = await channel({ exitCode: 127, stdout: '', stderr: 'sh: 1: perl: not found\n' })
      .send([tgtdRequests.showTargets()])
      .catch((caught: unknown) => caught);
    expect((perl as StorageError).message).toMatch(/perl is not installed/);
  });

  it('answers the replies up to the first error, which the caller names', async () => {
    const ok = Buffer.from([0, 0, 0, 0, 8, 0, 0, 0]).toString('hex');
    const noUser = Buffer.from([15, 0, 0, 0, 8, 0, 0, 0]).toString('hex');
    const replies = await channel({ exitCode: 0, stdout: `${ok}\n${noUser}\n`, stderr: '' }).send([
      tgtdRequests.showTargets(),
      tgtdRequests.deleteAccount('someone'),
      tgtdRequests.showTargets(),
    ]);
    expect(replies).toEqual([
      { code: 0, output: '' },
      { code: 15, output: '' },
    ]);
    expect(tgtErrorText(replies[1].code)).toBe("can't find the account");
  });

  it('says tgtd closed the connection unanswered (as it does for a peer that is not root)', async () => {
    const error = await channel({ exitCode: 0, stdout: '\n', stderr: '' })
      .send([tgtdRequests.showTargets()])
      .catch((caught: unknown) => caught);
    expect((error as StorageError).message).toMatch(/list tgtd targets: tgtd on this host closed the connection without a full answer; it answers root only/);
  });

  it('sends nothing when any request of a batch holds what tgtd must not get', () => {
    expect(() => tgtdRequests.newAccount('user,password=x', 'pass2345')).toThrow(/CHAP user name/);
    expect(() => tgtdRequests.newAccount('user', 'pass 2345')).toThrow(/CHAP password/);
    expect(() => tgtdRequests.newAccount('user', 'pass 2345')).not.toThrow(/pass 2345/);
    expect(() => tgtdRequests.newTarget(1, 'iqn.x:a\nb')).toThrow(/target name/);
    expect(() => tgtdRequests.newUnit(1, 1, '/a,path=/etc/shadow', '')).toThrow(/backing store path/);
    expect(() => tgtdRequests.newUnit(1, 1, '/a', 'sync,path=/b')).toThrow(/iscsi_target_flags/);
    expect(() => tgtdRequests.updateUnit(1, 1, { scsi_sn: 'a,path=/b' })).toThrow(/LUN setting/);
    expect(() => encodeRequest({ operation: 'x', mode: 0, op: 2, params: 'a\0b' })).toThrow(/characters/);
  });
});

if (!existsSync(TGTADM) && !inCi) {
  describe.skip('tgtd requests as tgtadm sends them (needs tgtadm: apt-get install tgt)', () => {
    it('runs where tgtadm is', () => undefined);
  });
} else {
  describe('tgtd requests as tgtadm sends them', () => {
    let dir: string;
    let server: Server;
    const received: Buffer[] = [];

    beforeAll(async () => {
      if (!existsSync(TGTADM)) throw new Error(`needs ${TGTADM} (apt-get install tgt); .ci/run must install it`);
      dir = mkdtempSync(join(tmpdir(), 'tgtd-protocol-'));
      server = createServer((socket) => {
        let request = Buffer.alloc(0);
        socket.on('data', (chunk) => {
          request = Buffer.concat([request, chunk]);
          if (request.length >= 120 && request.length >= request.readUInt32LE(72)) {
            received.push(request);
            socket.end(Buffer.from([0, 0, 0, 0, 8, 0, 0, 0]));
          }
        });
      });
      await new Promise<void>((resolve) => server.listen(join(dir, 'socket.0'), resolve));
    });
    afterAll(async () => {
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const viaTgtadm = (args: string[]) =>
      new Promise<Buffer>((resolve, reject) => {
        const before = received.length;
        execFile(TGTADM, args, { env: { ...process.env, TGT_IPC_SOCKET: join(dir, 'socket') }, timeout: 10_000 }, (error, stdout, stderr) => {
          if (error) return reject(new Error(`tgtadm ${args.join(' ')}: ${stderr}${stdout}`));
          if (received.length !== before + 1) return reject(new Error('tgtadm sent no request'));
          resolve(received.at(-1)!);
        });
      });

    for (const [label, request, args] of CASES) {
      it(`${label}: the same bytes as tgtadm ${args.slice(2).join(' ')}`, async () => {
        expect(encodeRequest(request).toString('hex')).toBe((await viaTgtadm(args)).toString('hex'));
      });
    }
  });
}
