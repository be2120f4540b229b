import { z } from 'zod';
import { toConnectionView } from '../src/model/connection.js';
import { READS_METADATA_STORE, defineTool } from './define.js';
import { DEFAULT_PAGE_SIZE, backendArgument, connectionSchema, cursorArgument, limitArgument, nextCursorField, volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'list_connections',
  toolset: 'connections',
  title: 'List connections',
  description: 'Connections of volumes to hosts, oldest first.',
  input: z
    .object({
      backend: backendArgument.optional(),
      volume_id: volumeIdArgument.optional(),
      limit: limitArgument.optional(),
      cursor: cursorArgument.optional(),
    })
    .strict(),
  output: z.object({
    connections: z.array(connectionSchema),
    next_cursor: nextCursorField,
  }),
  annotations: READS_METADATA_STORE,
  async handler({ backend, volume_id, limit, cursor }, registry) {
    const page = await registry.listConnections({ backend, volume_id, cursor, limit: limit ?? DEFAULT_PAGE_SIZE });
    return {
      connections: page.connections.map((record) => toConnectionView(record, (value) => registry.mask(value))),
      ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}),
    };
  },
});
