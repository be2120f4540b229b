/**
 * Who the server says it is in `initialize`, kept apart from the SDK so the answers given before
 * the SDK has loaded (src/startup-answers.ts) and the SDK server's own are built from one source.
 */

import { VERSION } from '../base/version.js';

export const SERVER_INFO = { name: 'cinderlib-mcp', title: 'cinderlib-mcp block storage', version: VERSION };

export const SERVER_CAPABILITIES = { tools: { listChanged: false }, resources: { subscribe: false, listChanged: false } };

export const SERVER_INSTRUCTIONS =
  'Block storage through Cinder-compatible drivers. Start with list_backends; get_stats shows capacity in GiB; ' +
  'list_volumes pages through volumes created here; create_volume, extend_volume and delete_volume change them. ' +
  'create_snapshot takes a restore point of a volume; create_volume with snapshot_id or source_volume_id copies one; pass request_id to make a retry safe. ' +
  "connect_volume exports a volume to a host (validate_connector first), attach_volume attaches it on this server's host; disconnect_volume and detach_volume undo them. " +
  'Every backend, volume, snapshot and connection is also a resource (cinderlib://volumes/{id}, ...) holding its cinderlib JSON. ' +
  'Errors start with a code (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, OUT_OF_CAPACITY, BACKEND_UNAVAILABLE, BACKEND_BUSY, READ_ONLY, IN_USE, UNSUPPORTED, INTERNAL).';
