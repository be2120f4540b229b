/**
 * Who the server says it is in `initialize`, kept apart from the SDK so the answers given before
 * the SDK has loaded (src/mcp/startup-answers.ts) and the SDK server's own are built from one
 * source. The instructions depend on the session's offer: src/mcp/offer.ts writes them.
 */

import { VERSION } from '../base/version.js';

export const SERVER_INFO = { name: 'cinderlib-mcp', title: 'cinderlib-mcp block storage', version: VERSION };

export const SERVER_CAPABILITIES = { tools: { listChanged: false }, resources: { subscribe: false, listChanged: false }, prompts: { listChanged: false } };
