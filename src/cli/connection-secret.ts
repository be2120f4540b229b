import { existsSync } from 'node:fs';
import type { LoadedConfig } from '../config/load.js';
import { MASK } from '../base/secrets.js';

/**
 * The keys `cinderlib-mcp connection-secret` prints, in this order, when the connection has them:
 * CHAP credentials, and an RBD connection's cephx keyring (cinderlib's data.keyring, one line as a
 * JSON string since a keyring spans lines).
 */
const SECRET_KEYS = ['auth_username', 'auth_password', 'discovery_auth_username', 'discovery_auth_password', 'keyring'] as const;

/**
 * `cinderlib-mcp connection-secret CONNECTION_ID`: the CHAP credentials of a connection, for the
 * administrator of the server's host to give the connecting host's initiator. Never over MCP.
 * It reads the metadata store read-only, beside a running server (SQLite lets readers in while the
 * server writes); a memory store has no connections a second process could see.
 */
export async function connectionSecret(config: LoadedConfig, connectionId: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const persistence = config.global.persistence;
  if (persistence.storage === 'memory') {
    return { code: 1, stdout: '', stderr: 'the metadata store is "memory": its connections live only in the serving process, and this command cannot read them\n' };
  }
  if (persistence.engine === 'postgresql') {
    const { openVolumeStoreForReading } = await import('../store/index.js');
    const store = await openVolumeStoreForReading(persistence);
    try {
      const connection = await store.connections.get(connectionId);
      if (!connection) return { code: 1, stdout: '', stderr: `connection ${connectionId} does not exist in ${store.description}\n` };
      return chapLines(connectionId, connection.connection_info);
    } finally {
      await store.close();
    }
  }
  if (!existsSync(persistence.path)) return { code: 1, stdout: '', stderr: `no metadata store at ${persistence.path}, so no connection ${connectionId}\n` };
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(persistence.path, { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    const row = db.prepare('SELECT connection_info FROM connections WHERE id = ?').get(connectionId) as { connection_info: string } | undefined;
    if (!row) return { code: 1, stdout: '', stderr: `connection ${connectionId} does not exist in ${persistence.path}\n` };
    return chapLines(connectionId, JSON.parse(row.connection_info) as Record<string, unknown>);
  } finally {
    db.close();
  }
}

function chapLines(connectionId: string, connectionInfo: Record<string, unknown>): { code: number; stdout: string; stderr: string } {
  const data = (connectionInfo as { data?: Record<string, unknown> }).data ?? {};
  const present = SECRET_KEYS.filter((key) => typeof data[key] === 'string' && data[key] !== '');
  const unknown = present.filter((key) => data[key] === MASK);
  if (unknown.length > 0) {
    // Loaded from a dump, which never carries secrets: printing "***" as if it were the password would mislead.
    return {
      code: 1,
      stdout: '',
      stderr: `connection ${connectionId}'s ${unknown.join(' and ')} ${unknown.length > 1 ? 'are' : 'is'} not known here: it was loaded from a dump, and dumps never carry secrets. The target still holds the credentials in force; connect_volume for the same volume keeps a tgt target's credentials, and connection-secret of that new connection prints them\n`,
    };
  }
  const lines = present.map((key) => `${key}: ${key === 'keyring' ? JSON.stringify(data[key]) : String(data[key])}\n`);
  if (lines.length === 0) return { code: 0, stdout: '', stderr: `connection ${connectionId} uses no CHAP credentials or keyring\n` };
  return { code: 0, stdout: lines.join(''), stderr: '' };
}
