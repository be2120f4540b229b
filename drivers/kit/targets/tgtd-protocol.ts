import { StorageError } from '../../../src/base/errors.js';
import {
  checkBackingFlags,
  checkBackingOptions,
  checkBackingPath,
  checkBackingType,
  checkChapSymbols,
  checkInitiatorAddress,
  checkNamedBacking,
  checkTargetName,
} from './tgt-fields.js';

/**
 * tgtd's management protocol, as tgtadm speaks it over the unix socket
 * /var/run/tgtd/socket.<control port>: one request per connection, a fixed header (struct
 * tgtadm_req) then the parameter text with its NUL; the answer is struct tgtadm_rsp then the
 * output text. tgtd admits only peers with its own uid and gid (root). Every parameter value is
 * checked (tgt-fields) where the request is built: the text cannot carry a second parameter.
 */
export const TGTD_SOCKET = '/var/run/tgtd/socket.0';

/** enum tgtadm_op. */
export const TgtOp = { New: 0, Delete: 1, Show: 2, Bind: 3, Unbind: 4, Update: 5 } as const;
export type TgtOp = (typeof TgtOp)[keyof typeof TgtOp];

/** enum tgtadm_mode. */
export const TgtMode = { System: 0, Target: 1, Device: 2, Portal: 3, Lld: 4, Session: 5, Connection: 6, Account: 7 } as const;
export type TgtMode = (typeof TgtMode)[keyof typeof TgtMode];

/** tgtadm_errno, as tgtadm prints each. */
const TGTADM_ERRORS = [
  'success',
  'unknown error',
  'out of memory',
  "can't find the driver",
  "can't find the target",
  "can't find the logical unit",
  "can't find the session",
  "can't find the connection",
  "can't find the binding",
  'this target already exists',
  'this logical unit number already exists',
  'this binding already exists',
  'this access control rule already exists',
  'this access control rule does not exist',
  'this account already exists',
  "can't find the account",
  'too many accounts',
  'invalid request',
  'this target already has an outgoing account',
  'this target is still active',
  'this logical unit is still active',
  'this driver is busy',
  "this operation isn't supported",
  'unknown parameter',
  'this device has Prevent Removal set',
] as const;

export const TgtError = {
  NoTarget: 4,
  NoLun: 5,
  NoConnection: 7,
  TargetExists: 9,
  AclMissing: 13,
  UserExists: 14,
  NoUser: 15,
  TargetActive: 19,
} as const;

export function tgtErrorText(code: number): string {
  return TGTADM_ERRORS[code] ?? `(unknown tgtadm_errno ${code})`;
}

export interface TgtRequest {
  /** What it does, for messages: "add LUN 1 to target iqn...". */
  operation: string;
  mode: TgtMode;
  op: TgtOp;
  tid?: number;
  sid?: bigint;
  cid?: number;
  lun?: bigint;
  force?: boolean;
  /** The parameter text, built below from checked values. */
  params?: string;
}

export interface TgtReply {
  /** tgtadm_errno: 0 is success. */
  code: number;
  output: string;
}

const REQUEST_HEADER_BYTES = 120;
const REPLY_HEADER_BYTES = 8;
/** tgtd's MAX_MGT_BUFSIZE: a longer parameter text is dropped with the connection. */
const MAX_PARAMS_BYTES = 8 * 1024;
const LLD = 'iscsi';
const TYPE_DISK = 0;
const ACCOUNT_INCOMING = 0;
const NO_LUN = 0xffff_ffff_ffff_ffffn;
/** tgtadm prefixes logical unit parameters with this word and ends them with a comma. */
const UNIT_PARAMS = 'targetOps ';

/** struct tgtadm_req in the host's byte order (little-endian: x86 and arm hosts) then the parameters and their NUL, as tgtadm sends them. */
export function encodeRequest(request: TgtRequest): Buffer {
  const params = request.params ?? '';
  // Printable ASCII only, the one space after the logical unit prefix aside: no NUL ends it early.
  const text = params.startsWith(UNIT_PARAMS) ? params.slice(UNIT_PARAMS.length) : params;
  if (!/^[\x21-\x7e]*$/.test(text)) throw new StorageError('INTERNAL', `${request.operation}: the request to tgtd holds characters it must not; nothing was sent`);
  const body = params ? Buffer.from(`${params}\0`, 'latin1') : Buffer.alloc(0);
  if (body.length > MAX_PARAMS_BYTES) throw new StorageError('INTERNAL', `${request.operation}: the request to tgtd is longer than it accepts; nothing was sent`);
  const header = Buffer.alloc(REQUEST_HEADER_BYTES);
  header.writeUInt32LE(request.mode, 0);
  header.writeUInt32LE(request.op, 4);
  header.write(LLD, 8, 'latin1');
  header.writeUInt32LE(REQUEST_HEADER_BYTES + body.length, 72);
  header.writeInt32LE(request.tid ?? -1, 76);
  header.writeBigUInt64LE(request.sid ?? 0n, 80);
  header.writeBigUInt64LE(request.lun ?? NO_LUN, 88);
  header.writeUInt32LE(request.cid ?? 0, 96);
  header.writeUInt32LE(0, 100); // host_no
  header.writeUInt32LE(TYPE_DISK, 104);
  header.writeUInt32LE(ACCOUNT_INCOMING, 108);
  header.writeUInt32LE(0, 112); // pack
  header.writeUInt32LE(request.force ? 1 : 0, 116);
  return Buffer.concat([header, body]);
}

/** struct tgtadm_rsp then its output (len counts the header; the text ends with a NUL). */
export function decodeReply(reply: Buffer): TgtReply | undefined {
  if (reply.length < REPLY_HEADER_BYTES) return undefined;
  const code = reply.readUInt32LE(0);
  const length = reply.readUInt32LE(4);
  if (length < REPLY_HEADER_BYTES || length > reply.length) return undefined;
  const output = reply.subarray(REPLY_HEADER_BYTES, length).toString('utf8').replace(/\0+$/, '');
  return { code, output };
}

function checkTid(tid: number): number {
  if (!Number.isInteger(tid) || tid < 1 || tid > 0x7fff_ffff) throw new StorageError('INTERNAL', `tgt target id ${tid} is out of range`);
  return tid;
}

/** The requests this server sends, each as tgtadm would build it from its options. */
export const tgtdRequests = {
  showTargets: (): TgtRequest => ({ operation: 'list tgtd targets', mode: TgtMode.Target, op: TgtOp.Show }),
  showPortals: (): TgtRequest => ({ operation: 'list the portals tgtd listens on', mode: TgtMode.Portal, op: TgtOp.Show }),
  showAccounts: (): TgtRequest => ({ operation: 'list tgtd accounts', mode: TgtMode.Account, op: TgtOp.Show }),

  /** tgtadm --op new --mode target --tid T --targetname NAME */
  newTarget: (tid: number, name: string): TgtRequest => ({
    operation: `create target ${checkTargetName(name)} (tid ${tid})`,
    mode: TgtMode.Target,
    op: TgtOp.New,
    tid: checkTid(tid),
    params: `targetname=${name}`,
  }),
  /** tgtadm --op delete --mode target --tid T (no --force: tgtd exits when a forced session outlives its close). */
  deleteTarget: (tid: number, name: string): TgtRequest => ({ operation: `delete target ${name} (tid ${tid})`, mode: TgtMode.Target, op: TgtOp.Delete, tid: checkTid(tid) }),
  /** tgtadm --op bind|unbind --mode target --tid T --initiator-address ADDRESS */
  bindAddress: (tid: number, address: string, bind = true): TgtRequest => ({
    operation: `${bind ? 'admit' : 'stop admitting'} initiators from ${checkInitiatorAddress(address)} in target tid ${tid}`,
    mode: TgtMode.Target,
    op: bind ? TgtOp.Bind : TgtOp.Unbind,
    tid: checkTid(tid),
    params: `initiator-address=${address}`,
  }),
  /** tgtadm --op delete --mode conn --tid T --sid S --cid C */
  closeConnection: (tid: number, sid: bigint, cid: number): TgtRequest => ({
    operation: `close connection ${cid} of session ${sid} in target tid ${tid}`,
    mode: TgtMode.Connection,
    op: TgtOp.Delete,
    tid: checkTid(tid),
    sid,
    cid,
  }),

  /**
   * tgtadm --op new --mode logicalunit --tid T --lun L --backing-store PATH [--bstype TYPE --bsopts OPTS] [--bsoflags FLAGS]
   * (device type disk). A file or device is an absolute path; a store of another module (rbd) is named by it (pool/image).
   */
  newUnit: (tid: number, lun: number, path: string, bsoflags: string, store: { type?: string; options?: string } = {}): TgtRequest => ({
    operation: `add ${store.type ? `${checkBackingType(store.type)} store ${checkNamedBacking(path)}` : checkBackingPath(path)} as LUN ${lun} of target tid ${tid}`,
    mode: TgtMode.Device,
    op: TgtOp.New,
    tid: checkTid(tid),
    lun: BigInt(lun),
    params:
      `path=${path}` +
      (store.type ? `,bstype=${store.type}` : '') +
      (store.type && store.options ? `,bsopts=${checkBackingOptions(store.options)}` : '') +
      (checkBackingFlags(bsoflags) ? `,bsoflags=${bsoflags}` : ''),
  }),
  /** tgtadm --op update --mode logicalunit --tid T --lun L --params NAME=VALUE[,...] */
  updateUnit: (tid: number, lun: number, settings: Record<string, string>): TgtRequest => {
    for (const [name, value] of Object.entries(settings)) {
      if (!/^[a-z_]+$/.test(name) || !/^[A-Za-z0-9.:_-]+$/.test(value)) throw new StorageError('INTERNAL', `LUN setting ${name} holds characters tgtd must not get`);
    }
    const list = Object.entries(settings)
      .map(([name, value]) => `${name}=${value},`)
      .join('');
    return {
      operation: `set ${Object.keys(settings).join(', ')} of LUN ${lun} in target tid ${tid}`,
      mode: TgtMode.Device,
      op: TgtOp.Update,
      tid: checkTid(tid),
      lun: BigInt(lun),
      params: `${UNIT_PARAMS}${list}`,
    };
  },

  /** tgtadm --mode account --op new --user U --password P: the password goes only into this socket request. */
  newAccount: (username: string, password: string): TgtRequest => ({
    operation: `create tgt account ${checkChapSymbols(username, 'CHAP user name')}`,
    mode: TgtMode.Account,
    op: TgtOp.New,
    params: `user=${username},password=${checkChapSymbols(password, 'CHAP password')}`,
  }),
  deleteAccount: (username: string): TgtRequest => ({
    operation: `delete tgt account ${checkChapSymbols(username, 'CHAP user name')}`,
    mode: TgtMode.Account,
    op: TgtOp.Delete,
    params: `user=${username}`,
  }),
  /** tgtadm --mode account --op bind --tid T --user U (incoming) */
  bindAccount: (tid: number, username: string): TgtRequest => ({
    operation: `require CHAP account ${checkChapSymbols(username, 'CHAP user name')} in target tid ${tid}`,
    mode: TgtMode.Account,
    op: TgtOp.Bind,
    tid: checkTid(tid),
    params: `user=${username}`,
  }),
};
