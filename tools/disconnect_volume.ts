import { z } from 'zod';
import { defineTool } from './define.js';
import { isDryRun } from '../src/core/dry-run.js';
import { connectionIdArgument, dryRunArgument, orDryRun } from './schemas.js';

export default defineTool({
  name: 'disconnect_volume',
  title: 'Disconnect a volume from a host',
  description:
    'Removes a connection (cinderlib\'s conn.disconnect: terminate_connection, then remove_export once the volume has no connection left): the host loses access to the volume, which is "available" again when no connection is left. Make sure the host no longer uses the volume first. A connection attached on the server\'s own host (attach_volume) is refused with IN_USE: use detach_volume, or force: true. force: true also drops a connection whose array or target calls fail (what may be left is logged). Calling it again answers NOT_FOUND: the connection is gone.',
  input: z
    .object({
      connection_id: connectionIdArgument,
      force: z
        .boolean({ error: 'force must be true or false' })
        .optional()
        .describe('Drop the connection even when the array or target refuses, or when it is attached on this host. Default false.'),
      dry_run: dryRunArgument,
    })
    .strict(),
  output: orDryRun(
    z.object({
      connection_id: z.string().describe("The removed connection's id."),
      disconnected: z.literal(true).describe('Always true: the export for this connection is gone and the connection is forgotten.'),
    }),
  ),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
  async handler({ connection_id, force, dry_run }, registry) {
    const result = await registry.disconnectVolume(connection_id, force ?? false, dry_run);
    if (isDryRun(result)) return result;
    return { connection_id, disconnected: true as const };
  },
});
