import { z } from 'zod';
import { toConnectionView } from '../src/model/connection.js';
import { defineTool } from './define.js';
import { shown } from '../src/core/dry-run.js';
import { connectionSchema, connectorArgument, dryRunArgument, orDryRun, requestIdArgument, volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'connect_volume',
  title: 'Connect a volume to a host',
  description:
    'Exports a volume to a host (cinderlib\'s vol.connect: create_export + initialize_connection) and returns the connection: connection_info.data holds what the host\'s initiator needs (iSCSI: target_iqn, target_portal, target_lun, auth_method, auth_username; auth_password always reads "***": the host\'s administrator reads it with `cinderlib-mcp connection-secret CONNECTION_ID` on the server\'s host). The volume becomes "in-use". The volume must be "available" or "in-use"; connecting it twice to one initiator is ALREADY_EXISTS. Undo with disconnect_volume. Pass request_id to make a retry safe.',
  input: z.object({ volume_id: volumeIdArgument, connector: connectorArgument, request_id: requestIdArgument.optional(), dry_run: dryRunArgument }).strict(),
  output: orDryRun(connectionSchema),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler(args, registry) {
    const { dry_run, ...request } = args;
    return shown(await registry.connectVolume(args.volume_id, args.connector, args.request_id, request, dry_run), (record) => toConnectionView(record, (value) => registry.mask(value)));
  },
});
