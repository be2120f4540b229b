import { z } from 'zod';
import { toConnectionView } from '../src/model/connection.js';
import { READS_METADATA_STORE, defineTool } from './define.js';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, backendArgument, connectionSchema, cursorArgument, limitArgument, volumeIdArgument } from './schemas.js';

export default defineTool({
  name: 'list_connections',
  toolset: 'connections',
  title: 'List connections',
  description: `Lists the connections of volumes to hosts made through this server (from its metadata store), oldest first, at most "limit" per call (default ${DEFAULT_PAGE_SIZE}, at most ${MAX_PAGE_SIZE}). Filter by backend and/or volume_id. CHAP passwords read "***". When next_cursor is present, call again with cursor set to it (and the same filters).`,
  input: z
    .object({
      backend: backendArgument.optional(),
      volume_id: volumeIdArgument.optional().describe('Only connections of this volume.'),
      limit: limitArgument.optional(),
      cursor: cursorArgument.optional(),
    })
    .strict(),
  output: z.object({
    connections: z.array(connectionSchema).describe('At most "limit" connections, oldest first.'),
    next_cursor: z.string().optional().describe('Pass as cursor to get the next page; absent on the last page.'),
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
