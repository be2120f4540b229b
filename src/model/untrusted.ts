/**
 * Contract section 11: what this server did not create is hostile until checked, at each use.
 * Tool input, a loaded dump and a row read back from the metadata store all meet the same rules,
 * kept here once: the connector's fields, CHAP's provider_auth, the iSCSI details a host attacher
 * acts on, device paths and provider_location. Whatever reaches a command, a file or an array
 * passes one of these first.
 */
import { z } from 'zod';
import { StorageError } from '../base/errors.js';
import type { ConnectionInfo, Connector } from '../../drivers/kit/types.js';

/**
 * iSCSI names (RFC 3720 section 3.2.6): iqn.YYYY-MM.reversed.domain[:unique part], eui.<16 hex>,
 * naa.<16 or 32 hex>. After stringprep the only ASCII characters left are letters, digits, '-',
 * '.' and ':'; nothing that quotes, separates or ends a line.
 */
export const ISCSI_NAME = /^(iqn\.\d{4}-\d{2}\.[A-Za-z0-9][A-Za-z0-9.-]*(:[A-Za-z0-9.:-]+)?|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16}([0-9A-Fa-f]{16})?)$/;
export const WWN = /^[0-9A-Fa-f]{16}$/;
/** Printable ASCII without the space: host names, addresses, identifiers. */
export const PRINTABLE = /^[\x21-\x7e]+$/;
/** Cinder's provider_auth for CHAP: "CHAP <username> <password>", each part printable ASCII without spaces. */
export const PROVIDER_AUTH = /^CHAP [\x21-\x7e]{1,255} [\x21-\x7e]{1,255}$/;
/** An iSCSI portal as Cinder's drivers answer it: address:port, IPv6 in brackets. */
const PORTAL = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;
/** A device node a host attacher made: /dev/loopN, /dev/sdX, /dev/disk/by-path/..., nothing that climbs out of /dev. */
const DEVICE_PATH = /^\/dev\/[A-Za-z0-9_.:+@-]+(\/[A-Za-z0-9_.:+@-]+)*$/;

/** os-brick's connector dict (contract section 8); keys os-brick adds beyond these are kept as given. */
export const connectorSchema = z
  .object({
    host: z
      .string({ error: "connector.host must be the connecting host's name" })
      .min(1, { error: 'connector.host must not be empty' })
      .max(255, { error: 'connector.host must be at most 255 characters' })
      .regex(PRINTABLE, { error: 'connector.host must be a host name (printable characters, no spaces)' })
      .describe('Host name.'),
    initiator: z
      .string({ error: "connector.initiator must be the host's iSCSI initiator name (IQN)" })
      .max(223, { error: 'connector.initiator must be at most 223 characters (RFC 3720)' })
      .regex(ISCSI_NAME, {
        error:
          'connector.initiator must be an iSCSI name of RFC 3720\'s characters (letters, digits, "-", ".", ":"): iqn.YYYY-MM.domain[:id], eui.<16 hex> or naa.<16 or 32 hex> (the host\'s /etc/iscsi/initiatorname.iscsi)',
      })
      .optional()
      .describe('IQN from /etc/iscsi/initiatorname.iscsi; iSCSI needs it.'),
    ip: z.string().max(64).regex(PRINTABLE, { error: 'connector.ip must be an address' }).optional(),
    multipath: z.boolean({ error: 'connector.multipath must be true or false' }).optional().describe('Ask for every portal.'),
    platform: z.string().max(64).optional(),
    os_type: z.string().max(64).optional(),
    wwpns: z
      .array(z.string().regex(WWN, { error: 'connector.wwpns entries must be 16 hex digits' }))
      .max(64)
      .optional()
      .describe('FC port WWNs.'),
    wwnns: z
      .array(z.string().regex(WWN, { error: 'connector.wwnns entries must be 16 hex digits' }))
      .max(64)
      .optional()
      .describe('FC node WWNs.'),
  })
  .catchall(
    z.union([z.string().max(1024), z.number(), z.boolean(), z.null()], {
      error: 'extra connector keys may only hold strings (up to 1024 characters), numbers, booleans or null',
    }),
  )
  .refine((connector) => Object.keys(connector).length <= 64, { error: 'a connector has at most 64 keys' });

/** The first rule `value` breaks, as "field: problem", or undefined when it keeps them all. */
function firstProblem(schema: z.ZodType, value: unknown, prefix: string): string | undefined {
  const result = schema.safeParse(value);
  if (result.success) return undefined;
  const issue = result.error.issues[0];
  const field = [prefix, ...issue.path.map(String)].join('.');
  // The connector's messages already name their field.
  return issue.message.startsWith(field) ? issue.message : `${field}: ${issue.message}`;
}

/** Why a connector read back from a dump or the store is not one this server would have accepted. */
export function connectorProblem(connector: unknown): string | undefined {
  return firstProblem(connectorSchema, connector, 'connector');
}

/** Why a provider_auth is not Cinder's CHAP form (null is fine: no credentials yet). */
export function providerAuthProblem(value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value !== 'string' || !PROVIDER_AUTH.test(value)) {
    return 'provider_auth must be "CHAP <username> <password>", each of printable ASCII without spaces or control characters';
  }
  return undefined;
}

/** Why a provider_location cannot be what a driver wrote: drivers write names and paths of printable characters. */
export function providerLocationProblem(value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value !== 'string' || value.length > 1024 || !/^[\x20-\x7e]*$/.test(value)) {
    return 'provider_location must be printable ASCII of at most 1024 characters';
  }
  return undefined;
}

const iscsiData = z
  .object({
    target_iqn: z.string().regex(ISCSI_NAME, { error: "must be an iSCSI name of RFC 3720's characters" }),
    target_portal: z.string().regex(PORTAL, { error: 'must be address:port' }),
    target_lun: z.number().int().min(0).max(16383),
    target_iqns: z
      .array(z.string().regex(ISCSI_NAME, { error: 'must hold iSCSI names' }))
      .max(64)
      .optional(),
    target_portals: z
      .array(z.string().regex(PORTAL, { error: 'must hold address:port portals' }))
      .max(64)
      .optional(),
    target_luns: z.array(z.number().int().min(0).max(16383)).max(64).optional(),
    auth_username: z.string().regex(PRINTABLE, { error: 'must be printable ASCII without spaces' }).max(255).optional(),
    auth_password: z.string().regex(PRINTABLE, { error: 'must be printable ASCII without spaces' }).max(255).optional(),
  })
  .loose();

/** Why an iSCSI connection's data (what a host attacher logs in to) is not what a driver answers. */
export function iscsiDataProblem(data: unknown): string | undefined {
  return firstProblem(iscsiData, data, 'connection_info.data');
}

/** Why a recorded device is not a device node a host attacher made. */
export function devicePathProblem(path: unknown): string | undefined {
  if (typeof path !== 'string' || !DEVICE_PATH.test(path) || path.split('/').includes('..')) {
    return 'device.path must be a device node under /dev';
  }
  return undefined;
}

/** Throws INVALID_ARGUMENT naming `what` (the object) and the rule broken, when `problem` is set. */
export function refuseUntrusted(what: string, problem: string | undefined): void {
  if (problem) untrusted(what, problem);
}

/** A stored connection's connection_info as drivers take it, once its shape is checked: a type name and a data object. */
export function storedConnectionInfo(what: string, value: Record<string, unknown>): ConnectionInfo {
  const { driver_volume_type: type, data } = value;
  if (typeof type === 'string' && isRecord(data)) return { driver_volume_type: type, data };
  return untrusted(what, 'connection_info must be {driver_volume_type, data}');
}

/** A stored device, once its path passes devicePathProblem. */
export function storedDevice(what: string, device: Record<string, unknown> | null): { type: 'block'; path: string } | null {
  if (!device) return null;
  const path = device.path;
  const problem = devicePathProblem(path);
  if (problem || typeof path !== 'string') return untrusted(what, problem ?? 'device.path must be a string');
  return { type: 'block', path };
}

/** A stored connector, once it meets the connector rules, typed as drivers take it. */
export function storedConnector(what: string, connector: Record<string, unknown>): Connector {
  const parsed = connectorSchema.safeParse(connector);
  return parsed.success ? parsed.data : untrusted(what, connectorProblem(connector) ?? 'connector is not a connector');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The one refusal of data this server did not write. */
function untrusted(what: string, problem: string): never {
  throw new StorageError(
    'INVALID_ARGUMENT',
    `${what} holds data this server would never have written (${problem}); it is not used. Check where that record came from (a loaded dump, an edited store)`,
  );
}
