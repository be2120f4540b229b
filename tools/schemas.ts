import { z } from 'zod';
import { SNAPSHOT_STATUSES } from '../src/model/snapshot.js';
import { VOLUME_STATUSES } from '../src/model/volume.js';
import { CONNECTION_STATUSES } from '../src/model/connection.js';
import { connectorSchema } from '../src/model/untrusted.js';

/**
 * Schemas shared by several tools: the contract's Volume, Snapshot and Connection and the common
 * arguments. Output fields carry a description only where the name does not say it all: every
 * description is in every conversation's context.
 */
export const volumeSchema = z.object({
  id: z.string(),
  name: z.string(),
  description: z.string(),
  size: z.number().int().min(1).describe('GiB.'),
  status: z.enum(VOLUME_STATUSES),
  backend: z.string(),
  pool_name: z.string(),
  bootable: z.boolean(),
  created_at: z.string(),
  snapshot_id: z.string().nullable(),
  source_volume_id: z.string().nullable(),
  status_reason: z.string().optional(),
});

export const backendArgument = z
  .string({ error: 'backend must be a string: a volume_backend_name from list_backends' })
  .min(1, { error: 'backend must not be empty: pass a volume_backend_name from list_backends' })
  .describe('From list_backends.');

export const volumeIdArgument = z
  .string({ error: 'volume_id must be a string: a volume id from list_volumes or create_volume' })
  .uuid({ error: 'volume_id must be a volume id (a UUID such as 0b5e3f0c-1d2e-4f5a-9b8c-7d6e5f4a3b2c) from list_volumes or create_volume' })
  .describe('Volume id.');

export const sizeArgument = (name: string) =>
  z
    .number({ error: `${name} must be a whole number of GiB (1 or more)` })
    .int({ error: `${name} must be a whole number of GiB (1 or more)` })
    .min(1, { error: `${name} must be at least 1 GiB` })
    .max(1024 * 1024, { error: `${name} must be at most 1048576 GiB (1 PiB)` });

/** The contract's Snapshot (section 7). */
export const snapshotSchema = z.object({
  id: z.string(),
  volume_id: z.string(),
  name: z.string(),
  description: z.string(),
  volume_size: z.number().int().min(1).describe('GiB.'),
  status: z.enum(SNAPSHOT_STATUSES),
  backend: z.string(),
  created_at: z.string(),
  status_reason: z.string().optional(),
});

export const snapshotIdArgument = z
  .string({ error: 'snapshot_id must be a string: a snapshot id from list_snapshots or create_snapshot' })
  .uuid({ error: 'snapshot_id must be a snapshot id (a UUID) from list_snapshots or create_snapshot' })
  .describe('Snapshot id.');

export const requestIdArgument = z
  .string({ error: 'request_id must be a string of your choosing, at most 128 characters' })
  .min(1, { error: 'request_id must not be empty' })
  .max(128, { error: 'request_id must be at most 128 characters' })
  .describe("Retry key: a repeat within 24 h answers the first call's object.");

export const nameArgument = z.string({ error: 'name must be a string' }).max(255, { error: 'name must be at most 255 characters' }).describe('Display name.');

export const descriptionArgument = z.string({ error: 'description must be a string' }).max(4096, { error: 'description must be at most 4096 characters' }).describe('Free text.');

/** list_volumes' and list_snapshots' name filter. */
export const nameFilterArgument = z.string({ error: 'name must be a string' }).max(255).optional().describe('Name contains this (any case).');

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export const limitArgument = z
  .number({ error: `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}` })
  .int({ error: `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}` })
  .min(1, { error: `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}` })
  .max(MAX_PAGE_SIZE, { error: `limit must be at most ${MAX_PAGE_SIZE}; page through with cursor for more` })
  .describe(`Page size (default ${DEFAULT_PAGE_SIZE}).`);

export const cursorArgument = z.string({ error: 'cursor must be the next_cursor string of a previous answer' }).describe('next_cursor of the previous page (same filters).');

/** What a paged answer adds to its items. */
export const nextCursorField = z.string().optional().describe('Absent on the last page.');

/** os-brick's connector dict (contract section 8), with the rules every connector meets (src/untrusted.ts). */
export const connectorArgument = connectorSchema.describe("The host's os-brick connector properties.");

export const connectionIdArgument = z
  .string({ error: 'connection_id must be a string: a connection id from list_connections or connect_volume' })
  .uuid({ error: 'connection_id must be a connection id (a UUID) from list_connections, connect_volume or attach_volume' })
  .describe('Connection id.');

/** The contract's Connection (section 8). */
export const connectionSchema = z.object({
  id: z.string(),
  volume_id: z.string(),
  backend: z.string(),
  status: z.enum(CONNECTION_STATUSES),
  attach_mode: z.string(),
  connector: z.record(z.string(), z.unknown()),
  connection_info: z.object({
    driver_volume_type: z.string(),
    data: z.record(z.string(), z.unknown()).describe('iSCSI: target_iqn, target_portal, target_lun, auth_method, auth_username, auth_password.'),
  }),
  device: z.object({ type: z.string(), path: z.string() }).optional().describe('attach_volume: the device here.'),
  created_at: z.string(),
  status_reason: z.string().optional(),
});

/** dry_run on every mutating tool (contract section 14). */
export const dryRunArgument = z.boolean({ error: 'dry_run must be true or false' }).optional().describe('Check only; change nothing.');

/** What a dry run answers. */
export const dryRunSchema = z.object({
  dry_run: z.literal(true).describe('A dry run: nothing was changed.'),
  would: z.record(z.string(), z.unknown()).describe('What the call would do: action and objects.'),
});

/** A mutating tool's answer: its result, or a dry run's. */
export const orDryRun = <T extends z.ZodObject>(schema: T) => z.union([schema, dryRunSchema]);

/**
 * Shapes several tools take or answer with, each listed in full once, by its home tool (a read
 * tool, so it is offered whenever its toolset is, read-only or not); the others list it by
 * reference: its name, the home tool, and the `keep` fields alone (src/mcp/tool-listing.ts).
 * What the server accepts and answers is the full shape either way.
 */
export interface SharedShape {
  name: string;
  home: string;
  keep: string[];
}

export const SHARED_SHAPES = new Map<z.ZodType, SharedShape>([
  [volumeSchema, { name: 'Volume', home: 'get_volume', keep: [] }],
  [snapshotSchema, { name: 'Snapshot', home: 'get_snapshot', keep: [] }],
  [connectionSchema, { name: 'Connection', home: 'list_connections', keep: [] }],
  [connectorArgument, { name: 'connector', home: 'validate_connector', keep: ['host', 'initiator'] }],
  // Mutating tools only answer dry runs: read-only sessions never need the shape.
  [dryRunSchema, { name: 'DryRun', home: 'create_volume', keep: [] }],
]);
