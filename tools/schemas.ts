import { z } from 'zod';
import { VOLUME_STATUSES } from '../src/volume.js';

/** Schemas shared by several tools: the contract's Volume and the common arguments. */
export const volumeSchema = z.object({
  id: z.string().describe('Volume id (UUID); pass it to get_volume, extend_volume or delete_volume.'),
  name: z.string().describe('Display name given at creation (may be empty).'),
  description: z.string().describe('Free text description given at creation (may be empty).'),
  size: z.number().int().min(1).describe('Size in GiB (a whole number, 1 or more).'),
  status: z.enum(VOLUME_STATUSES).describe('creating, available, extending, deleting or error.'),
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
