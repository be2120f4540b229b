import { z } from 'zod';
import { toConnectionView } from '../src/model/connection.js';
import { defineTool } from './define.js';
import { shown } from '../src/core/dry-run.js';
import { connectionSchema, connectorArgument, dryRunArgument, orDryRun, requestIdArgument, volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'connect_volume',
  toolset: 'connections',
  title: 'Connect a volume to a host',
  description:
    'Exports a volume to a host; it becomes "in-use". connection_info.data is what the host\'s initiator needs; auth_password reads "***" (on this server: cinderlib-mcp connection-secret ID).',
  input: z.object({ volume_id: volumeIdArgument, connector: connectorArgument, request_id: requestIdArgument.optional(), dry_run: dryRunArgument }).strict(),
  output: orDryRun(connectionSchema),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler(args, registry) {
    const { dry_run, ...request } = args;
    return shown(await registry.connectVolume(args.volume_id, args.connector, args.request_id, request, dry_run), (record) => toConnectionView(record, (value) => registry.mask(value)));
  },
});
