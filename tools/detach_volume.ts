import { z } from 'zod';
import { defineTool } from './define.js';
import { isDryRun } from '../src/core/dry-run.js';
import { connectionIdArgument, dryRunArgument, orDryRun } from './schemas.js';

export default defineTool({
  name: 'detach_volume',
  title: "Detach a volume from the server's host",
  description:
    "Detaches a volume attached on this server's host by attach_volume (cinderlib's vol.detach): the device goes away (make sure nothing has it open or mounted), then the connection is removed as disconnect_volume does. Connections to other hosts are INVALID_ARGUMENT: use disconnect_volume for them. Calling it again answers NOT_FOUND.",
  input: z.object({ connection_id: connectionIdArgument, dry_run: dryRunArgument }).strict(),
  output: orDryRun(
    z.object({
      connection_id: z.string().describe("The removed connection's id."),
      detached: z.literal(true).describe('Always true: the device is gone from this host and the connection is forgotten.'),
    }),
  ),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
  async handler({ connection_id, dry_run }, registry) {
    const result = await registry.detachVolume(connection_id, dry_run);
    if (isDryRun(result)) return result;
    return { connection_id, detached: true as const };
  },
});
