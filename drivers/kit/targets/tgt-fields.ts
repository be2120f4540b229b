import { StorageError } from '../../../src/base/errors.js';

/**
 * The characters each value sent to tgtd or written into a tgt config file may hold. tgtd splits
 * its request parameters at commas and ends them at NUL; tgt-admin's config parser reads a line
 * per option, `<target>` blocks, `#` comments and quotes. Anything outside these sets could add
 * options or targets, so it is refused, naming the field, before anything is written or sent.
 */

/** RFC 3720 names as tgtd accepts them (letters, digits, '.', ':' and '-'), at most 223 bytes. */
const TARGET_NAME = /^[A-Za-z0-9.:-]{1,223}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Absolute; printable ASCII without space, comma, quotes, angle brackets, '#', '\', '$' or '`'. */
const BACKING_PATH = /^\/[\x21-\x7e]*$/;
const BACKING_PATH_FORBIDDEN = /[,"'<>#\\$`]/;
/** Printable ASCII without space (contract section 11); tgt also splits its account request at a comma. */
const CHAP_SYMBOLS = /^[\x21-\x7e]+$/;
const CHAP_FORBIDDEN = /[,"'<>#\\$`]/;
/** tgt's bsoflags: sync, direct, or both joined by ':'. */
const BACKING_FLAGS = /^(sync|direct)(:(sync|direct))?$/;

function refuse(field: string, why: string): never {
  throw new StorageError('INVALID_ARGUMENT', `${field} ${why}; refused before anything was written or sent to tgtd`);
}

/** A volume id as it goes into target names and SCSI serials: Cinder's uuids only. */
export function checkVolumeId(id: string): string {
  if (!UUID.test(id)) refuse(`volume id ${JSON.stringify(id)}`, 'is not a uuid, so it cannot name a tgt target');
  return id;
}

export function checkTargetName(name: string, field = 'target name'): string {
  if (!TARGET_NAME.test(name)) {
    refuse(`${field} ${JSON.stringify(name)}`, "must be 1 to 223 letters, digits, '.', ':' or '-' (check target_prefix)");
  }
  return name;
}

export function checkBackingPath(path: string, field = 'backing store path'): string {
  if (!BACKING_PATH.test(path) || BACKING_PATH_FORBIDDEN.test(path) || /\/\.\.?(\/|$)/.test(path)) {
    refuse(`${field} ${JSON.stringify(path)}`, "must be an absolute path of printable ASCII without spaces, control characters, '.' or '..' parts, or any of , \" ' < > # \\ $ `");
  }
  return path;
}

/** A backing store tgt opens through one of its backing-store modules (rbd's pool/image): names, never paths. */
const NAMED_BACKING = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)+$/;
/** tgt's --bstype: a module name (rdwr, aio, rbd, ...). */
const BACKING_TYPE = /^[a-z][a-z0-9_]{0,15}$/;
/** tgt's --bsopts: key=value pairs joined by ';', each value printable ASCII without space, ',', ';', '=', quotes or shell characters. */
const BACKING_OPTION = /^[a-z_]+=[\x21-\x7e]+$/;
const BACKING_OPTION_FORBIDDEN = /[,;"'<>#\\$`]/;

export function checkNamedBacking(name: string, field = 'backing store name'): string {
  if (!NAMED_BACKING.test(name)) refuse(`${field} ${JSON.stringify(name)}`, "must be names of letters, digits, '.', '_' or '-' joined by '/' (pool/image)");
  return name;
}

export function checkBackingType(type: string): string {
  if (!BACKING_TYPE.test(type)) refuse(`backing store type ${JSON.stringify(type)}`, 'must be a tgt backing-store module name (lower-case letters, digits, _)');
  return type;
}

export function checkBackingOptions(options: string, field = 'backing store options'): string {
  if (!options.split(';').every((pair) => BACKING_OPTION.test(pair) && !BACKING_OPTION_FORBIDDEN.test(pair) && pair.indexOf('=') === pair.lastIndexOf('='))) {
    refuse(field, "must be key=value pairs joined by ';', each value printable ASCII without spaces or any of , ; = \" ' < > # \\ $ `");
  }
  return options;
}

/** A CHAP user name or password: the value itself never appears in the message. */
export function checkChapSymbols(value: string, field: string): string {
  if (!CHAP_SYMBOLS.test(value) || CHAP_FORBIDDEN.test(value)) {
    refuse(field, 'must be printable ASCII without spaces, control characters or any of , " \' < > # \\ $ ` (Cinder makes letters and digits)');
  }
  return value;
}

export function checkBackingFlags(flags: string): string {
  if (flags !== '' && !BACKING_FLAGS.test(flags)) refuse(`iscsi_target_flags ${JSON.stringify(flags)}`, 'must be empty, sync, direct or sync:direct');
  return flags;
}

export function checkWriteCache(value: string): 'on' | 'off' {
  if (value !== 'on' && value !== 'off') refuse(`iscsi_write_cache ${JSON.stringify(value)}`, 'must be on or off');
  return value;
}

/** An initiator address for a target's ACL: ALL, or an IPv4/IPv6 address with an optional prefix length. */
export function checkInitiatorAddress(address: string): string {
  if (address !== 'ALL' && !/^[0-9A-Fa-f.:]+(\/\d{1,3})?$/.test(address)) refuse(`initiator address ${JSON.stringify(address)}`, 'is not ALL or an IP address');
  return address;
}
