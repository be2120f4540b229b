import { StorageError } from '../../../src/base/errors.js';

/**
 * The values that become configfs directory names, symlink targets or attribute contents under
 * /sys/kernel/config/target. A name with '/' or '..' would reach another object, a newline or a
 * comma would add an option to a `control` write (the kernel splits those at ',' and '\n'), and
 * the kernel keeps CHAP values byte for byte. Each is refused, naming the field, before the relay
 * is started: nothing from a connector or a store row reaches configfs unchecked.
 */

/** RFC 3720 names (iqn., eui., naa.) of letters, digits, '.', ':' and '-', at most 223 bytes: the rule rtslib-fb applies to iSCSI WWNs. */
const ISCSI_NAME = /^(iqn\.\d{4}-\d{2}\.[A-Za-z0-9][A-Za-z0-9.:-]*|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16}([0-9A-Fa-f]{16})?)$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Absolute; printable ASCII without space, comma (the control parser's separator) or shell-meaningful characters. */
const BACKING_PATH = /^\/[\x21-\x7e]*$/;
const BACKING_PATH_FORBIDDEN = /[,"'<>#\\$`=]/;
/** Printable ASCII without space (contract section 11); the kernel keeps up to 255 bytes of each. */
const CHAP_SYMBOLS = /^[\x21-\x7e]{1,255}$/;
/** The configfs root: an absolute path of plain characters. */
const ROOT_PATH = /^(\/[A-Za-z0-9._+-]+)+$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6 = /^[0-9A-Fa-f:.]{2,45}$/;

function refuse(field: string, why: string): never {
  throw new StorageError('INVALID_ARGUMENT', `${field} ${why}; refused before anything was written to configfs`);
}

export function checkLioVolumeId(id: string): string {
  if (!UUID.test(id)) refuse(`volume id ${JSON.stringify(id)}`, 'is not a uuid, so it cannot name a LIO target');
  return id;
}

/** A target or initiator name as rtslib-fb takes it: an RFC 3720 name, at most 223 bytes. */
export function checkIscsiName(name: string, field: string): string {
  if (typeof name !== 'string' || name.length > 223 || !ISCSI_NAME.test(name)) {
    refuse(
      `${field} ${JSON.stringify(name)}`,
      "must be an iSCSI name (iqn.YYYY-MM.domain[:id], eui.<16 hex>, naa.<16 or 32 hex>) of letters, digits, '.', ':' and '-', at most 223 characters",
    );
  }
  return name;
}

export function checkLioBackingPath(path: string, field: string): string {
  if (!BACKING_PATH.test(path) || BACKING_PATH_FORBIDDEN.test(path) || /\/\.\.?(\/|$)|\/\//.test(path) || path.length > 512) {
    refuse(`${field} ${JSON.stringify(path)}`, "must be an absolute path of printable ASCII without spaces, control characters, '.' or '..' parts, or any of , = \" ' < > # \\ $ `");
  }
  return path;
}

/** A CHAP user name or password: the value itself never appears in the message. */
export function checkLioChap(value: string, field: string): string {
  if (!CHAP_SYMBOLS.test(value)) refuse(field, 'must be 1 to 255 printable ASCII characters without spaces or control characters (Cinder makes letters and digits)');
  return value;
}

export function checkConfigfsRoot(path: string): string {
  if (!ROOT_PATH.test(path) || /\/\.\.?(\/|$)/.test(path)) refuse(`configfs root ${JSON.stringify(path)}`, 'must be an absolute path of letters, digits, ".", "_", "+" and "-"');
  return path;
}

/**
 * A network portal's directory name, as rtslib-fb writes it and the kernel parses it
 * (lio_target_call_addnptotpg): `<IPv4>:<port>` or `[<IPv6>]:<port>`.
 */
export function portalDirName(address: string, port: number): string {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (!Number.isInteger(port) || port < 1 || port > 65535) refuse(`target_port ${port}`, 'must be 1 to 65535');
  if (IPV4.test(bare)) return `${bare}:${port}`;
  if (bare.includes(':') && IPV6.test(bare)) return `[${bare}]:${port}`;
  return refuse(`target address ${JSON.stringify(address)}`, 'must be an IPv4 or IPv6 address (LIO listens on addresses, not host names; check target_ip_address)');
}
