import { z } from 'zod';
import { SNAPSHOT_STATUSES } from '../src/model/snapshot.js';
import { VOLUME_STATUSES } from '../src/model/volume.js';
import { CONNECTION_STATUSES } from '../src/model/connection.js';
import { connectorSchema } from '../src/model/untrusted.js';

/** Schemas shared by several tools: the contract's Volume and the common arguments. */
export const volumeSchema = z.object({
  id: z.string().describe('Volume id (UUID); pass it to get_volume, extend_volume or delete_volume.'),
  name: z.string().describe('Display name given at creation (may be empty).'),
  description: z.string().describe('Free text description given at creation (may be empty).'),
  size: z.number().int().min(1).describe('Size in GiB (a whole number, 1 or more).'),
  status: z.enum(VOLUME_STATUSES).describe('creating, available, in-use (connected: see list_connections), extending, deleting or error.'),
  backend: z.string().describe('volume_backend_name of the backend holding the volume.'),
  pool_name: z.string().describe('Pool of the backend holding the volume.'),
  bootable: z.boolean().describe('Whether the volume is marked bootable (metadata only).'),
  created_at: z.string().describe('ISO 8601 creation time.'),
  snapshot_id: z.string().nullable().describe('The snapshot this volume was made from, else null.'),
  source_volume_id: z.string().nullable().describe('The volume this volume was cloned from, else null.'),
  status_reason: z.string().optional().describe('Why the volume is in error, when it is.'),
});

export const backendArgument = z
  .string({ error: 'backend must be a string: a volume_backend_name from list_backends' })
  .min(1, { error: 'backend must not be empty: pass a volume_backend_name from list_backends' })
  .describe('Backend name (volume_backend_name), as listed by list_backends.');

export const volumeIdArgument = z
  .string({ error: 'volume_id must be a string: a volume id from list_volumes or create_volume' })
  .uuid({ error: 'volume_id must be a volume id (a UUID such as 0b5e3f0c-1d2e-4f5a-9b8c-7d6e5f4a3b2c) from list_volumes or create_volume' })
  .describe('Volume id (UUID) from list_volumes or create_volume.');

export const sizeArgument = (name: string) =>
  z
    .number({ error: `${name} must be a whole number of GiB (1 or more)` })
    .int({ error: `${name} must be a whole number of GiB (1 or more)` })
    .min(1, { error: `${name} must be at least 1 GiB` })
    .max(1024 * 1024, { error: `${name} must be at most 1048576 GiB (1 PiB)` });

/** The contract's Snapshot (section 7). */
export const snapshotSchema = z.object({
  id: z.string().describe('Snapshot id (UUID); pass it to get_snapshot, delete_snapshot, or create_volume as snapshot_id.'),
  volume_id: z.string().describe('The volume the snapshot was taken of.'),
  name: z.string().describe('Display name given at creation (may be empty).'),
  description: z.string().describe('Free text given at creation.'),
  volume_size: z.number().int().min(1).describe("GiB: the volume's size when the snapshot was taken (the default size of a volume made from it)."),
  status: z.enum(SNAPSHOT_STATUSES).describe('creating, available, deleting or error.'),
  backend: z.string().describe('volume_backend_name of the backend holding the snapshot.'),
  created_at: z.string().describe('ISO 8601 creation time.'),
  status_reason: z.string().optional().describe('Why the snapshot is in error, when it is.'),
});

export const snapshotIdArgument = z
  .string({ error: 'snapshot_id must be a string: a snapshot id from list_snapshots or create_snapshot' })
  .uuid({ error: 'snapshot_id must be a snapshot id (a UUID) from list_snapshots or create_snapshot' })
  .describe('Snapshot id (UUID) from list_snapshots or create_snapshot.');

export const requestIdArgument = z
  .string({ error: 'request_id must be a string of your choosing, at most 128 characters' })
  .min(1, { error: 'request_id must not be empty' })
  .max(128, { error: 'request_id must be at most 128 characters' })
  .describe(
    'Your own id for this request (at most 128 characters). Repeating the same call with the same request_id within 24 hours answers the object the first call made, in its current state, instead of making another: safe to retry after a time-out. Another call under the same request_id is ALREADY_EXISTS.',
  );

export const nameArgument = z
  .string({ error: 'name must be a string' })
  .max(255, { error: 'name must be at most 255 characters' })
  .describe('Display name (free text, up to 255 characters).');

export const descriptionArgument = z
  .string({ error: 'description must be a string' })
  .max(4096, { error: 'description must be at most 4096 characters' })
  .describe('Free text description.');

/** list_volumes' and list_snapshots' name filter. */
export const nameFilterArgument = z.string({ error: 'name must be a string' }).max(255).optional().describe('Only those whose name contains this text (case-insensitive).');

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export const limitArgument = z
  .number({ error: `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}` })
  .int({ error: `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}` })
  .min(1, { error: `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}` })
  .max(MAX_PAGE_SIZE, { error: `limit must be at most ${MAX_PAGE_SIZE}; page through with cursor for more` })
  .describe(`Page size (default ${DEFAULT_PAGE_SIZE}, at most ${MAX_PAGE_SIZE}).`);

export const cursorArgument = z.string({ error: 'cursor must be the next_cursor string of a previous answer' }).describe('next_cursor from the previous page.');

/** os-brick's connector dict (contract section 8), with the rules every connector meets (src/untrusted.ts). */
export const connectorArgument = connectorSchema.describe(
  "os-brick's connector properties of the host to connect: {host, initiator?, ip?, multipath?, platform?, os_type?, wwpns?, wwnns?}.",
);

export const connectionIdArgument = z
  .string({ error: 'connection_id must be a string: a connection id from list_connections or connect_volume' })
  .uuid({ error: 'connection_id must be a connection id (a UUID) from list_connections, connect_volume or attach_volume' })
  .describe('Connection id (UUID) from list_connections, connect_volume or attach_volume.');

/** The contract's Connection (section 8). */
export const connectionSchema = z.object({
  id: z.string().describe('Connection id (UUID); pass it to disconnect_volume (or detach_volume for an attachment on this host).'),
  volume_id: z.string().describe('The connected volume.'),
  backend: z.string().describe("volume_backend_name of the volume's backend."),
  status: z.enum(CONNECTION_STATUSES).describe('attached, detached (being connected) or error.'),
  attach_mode: z.string().describe('rw.'),
  connector: z.record(z.string(), z.unknown()).describe('The connector the connection was made for.'),
  connection_info: z
    .object({
      driver_volume_type: z.string().describe("iscsi, or local for a file attached on the server's own host."),
      data: z
        .record(z.string(), z.unknown())
        .describe(
          'What the host\'s initiator needs: target_iqn, target_portal, target_lun, auth_method, auth_username, auth_password (always "***": the host\'s administrator reads it with `cinderlib-mcp connection-secret ID`).',
        ),
    })
    .describe("Cinder's initialize_connection answer."),
  device: z
    .object({ type: z.string().describe('block.'), path: z.string().describe('The device node, e.g. /dev/loop3 or /dev/sdc.') })
    .optional()
    .describe("For attach_volume: the block device on the server's own host."),
  created_at: z.string().describe('ISO 8601 creation time.'),
  status_reason: z.string().optional().describe('Why the connection is in error, when it is.'),
});

/** dry_run on every mutating tool (contract section 14). */
export const dryRunArgument = z.boolean({ error: 'dry_run must be true or false' }).optional().describe('Check only: answer what would happen, change nothing.');

/** What a dry run answers. */
export const dryRunSchema = z.object({
  dry_run: z.literal(true).describe('A dry run: nothing was changed.'),
  would: z.record(z.string(), z.unknown()).describe('What the call would do: action and objects.'),
});

/** A mutating tool's answer: its result, or a dry run's. */
export const orDryRun = <T extends z.ZodObject>(schema: T) => z.union([schema, dryRunSchema]);
