/**
 * MCP resources (contract section 9): every backend, volume, snapshot and connection as
 * `cinderlib://<kind>/<id>`, each read as the object's cinderlib JSON, the same as its entry in
 * `cinderlib-mcp dump` (a backend's with at most its first 100 volumes: list_volumes pages the
 * rest). resources/list pages through all of them, backends first, 100 per page.
 */

import { pythonJson } from '../serialization/python-json.js';
import { StorageError } from '../base/errors.js';
import { decodeCursor, encodeCursor } from '../model/cursor.js';
import type { VolumeStore } from '../store/store.js';
import { connectionDump, dumpVolume, snapshotDump, writeBackendDump, type DumpedBackend, type Dumper, type SerializationSource } from '../serialization/dump.js';
import type { SecretRegistry } from '../base/secrets.js';

export const RESOURCE_PAGE_SIZE = 100;
export const BACKEND_RESOURCE_VOLUMES = 100;
const MIME = 'application/json';
const KINDS = ['backends', 'volumes', 'snapshots', 'connections'] as const;
type Kind = (typeof KINDS)[number];

export const RESOURCE_TEMPLATES = [
  {
    uriTemplate: 'cinderlib://backends/{id}',
    name: 'backend',
    title: 'Backend',
    description: "A backend (volume_backend_name) as cinderlib's JSON: its config (secrets masked) and its first 100 volumes.",
    mimeType: MIME,
  },
  {
    uriTemplate: 'cinderlib://volumes/{id}',
    name: 'volume',
    title: 'Volume',
    description: "A volume as cinderlib's JSON (Cinder's Volume object), with its snapshots and connections.",
    mimeType: MIME,
  },
  { uriTemplate: 'cinderlib://snapshots/{id}', name: 'snapshot', title: 'Snapshot', description: "A snapshot as cinderlib's JSON (Cinder's Snapshot object).", mimeType: MIME },
  {
    uriTemplate: 'cinderlib://connections/{id}',
    name: 'connection',
    title: 'Connection',
    description: 'A connection as cinderlib\'s JSON (Cinder\'s VolumeAttachment object); CHAP passwords read "***".',
    mimeType: MIME,
  },
];

export interface ResourceEntry {
  uri: string;
  name: string;
  title: string;
  mimeType: string;
}

export class ResourceNotFound extends Error {}

export class ResourceCatalog {
  private readonly store: VolumeStore;
  private readonly backends: () => DumpedBackend[];
  private readonly dumper: Dumper;
  private readonly secrets: SecretRegistry;

  constructor(source: SerializationSource) {
    ({ store: this.store, backends: this.backends, dumper: this.dumper, secrets: this.secrets } = source);
  }

  /** One page of every resource: backends, then volumes, snapshots, connections, each in creation order. */
  async list(cursor: string | undefined): Promise<{ resources: ResourceEntry[]; nextCursor?: string }> {
    let kindIndex = 0;
    let after: number | undefined;
    if (cursor) {
      const kind = KINDS.find((candidate) => {
        try {
          after = decodeCursor(cursor, `resources/${candidate}`, {});
          return true;
        } catch {
          return false;
        }
      });
      if (!kind) throw new StorageError('INVALID_ARGUMENT', 'cursor is not one this server issued for resources/list; pass nextCursor unchanged, or omit it to start over');
      kindIndex = KINDS.indexOf(kind);
    }
    const resources: ResourceEntry[] = [];
    for (; kindIndex < KINDS.length; kindIndex++, after = undefined) {
      const kind = KINDS[kindIndex];
      const room = RESOURCE_PAGE_SIZE - resources.length;
      const page = await this.page(kind, after, room);
      resources.push(...page.entries);
      if (page.nextAfter !== undefined) return { resources, nextCursor: encodeCursor(`resources/${kind}`, page.nextAfter, {}) };
      if (resources.length === RESOURCE_PAGE_SIZE && kindIndex + 1 < KINDS.length) {
        // The page is full at a kind's end: the next page starts with the next kind.
        return { resources, nextCursor: encodeCursor(`resources/${KINDS[kindIndex + 1]}`, 0, {}) };
      }
    }
    return { resources };
  }

  /** The cinderlib JSON of one resource, as text. */
  async read(uri: string): Promise<string> {
    const match = /^cinderlib:\/\/(backends|volumes|snapshots|connections)\/([^/?#]+)$/.exec(uri);
    if (!match) throw new ResourceNotFound(`no resource ${uri}: resources are cinderlib://backends/{id}, volumes/{id}, snapshots/{id} and connections/{id}`);
    const kind = match[1] as Kind;
    let id: string;
    try {
      id = decodeURIComponent(match[2]);
    } catch {
      throw new ResourceNotFound(`no resource ${uri}: its id is not valid percent-encoding`);
    }
    const missing = () => new ResourceNotFound(`no ${kind.slice(0, -1)} ${id}; resources/list lists the resources there are`);
    switch (kind) {
      case 'backends': {
        const backend = this.backends().find((candidate) => candidate.id === id);
        if (!backend) throw missing();
        let text = '';
        await writeBackendDump(this.dumper, backend, (piece) => void (text += piece), { limit: BACKEND_RESOURCE_VOLUMES });
        return text;
      }
      case 'volumes': {
        const volume = await this.store.volumes.get(id);
        if (!volume) throw missing();
        return pythonJson(await dumpVolume(this.dumper, volume));
      }
      case 'snapshots': {
        const snapshot = await this.store.snapshots.get(id);
        if (!snapshot) throw missing();
        return pythonJson(snapshotDump(this.dumper, snapshot));
      }
      case 'connections': {
        const connection = await this.store.connections.get(id);
        if (!connection) throw missing();
        return pythonJson(connectionDump(this.dumper, connection));
      }
    }
  }

  private async page(kind: Kind, after: number | undefined, limit: number): Promise<{ entries: ResourceEntry[]; nextAfter?: number }> {
    if (limit <= 0) return { entries: [], nextAfter: after ?? 0 };
    const entry = (id: string, label: string, title: string): ResourceEntry => ({
      uri: `cinderlib://${kind}/${encodeURIComponent(id)}`,
      name: this.secrets.redact(label),
      title,
      mimeType: MIME,
    });
    switch (kind) {
      case 'backends': {
        const all = this.backends();
        const start = after ?? 0;
        const slice = all.slice(start, start + limit);
        return { entries: slice.map((b) => entry(b.id, `backend ${b.id}`, 'Backend')), nextAfter: start + limit < all.length ? start + limit : undefined };
      }
      case 'volumes': {
        const page = await this.store.volumes.list({ after, limit });
        return { entries: page.records.map((v) => entry(v.id, `volume ${v.name || v.id} (${v.size} GiB, ${v.status}, ${v.backend})`, 'Volume')), nextAfter: page.nextAfter };
      }
      case 'snapshots': {
        const page = await this.store.snapshots.list({ after, limit });
        return { entries: page.records.map((s) => entry(s.id, `snapshot ${s.name || s.id} of volume ${s.volume_id}`, 'Snapshot')), nextAfter: page.nextAfter };
      }
      case 'connections': {
        const page = await this.store.connections.list({ after, limit });
        return {
          entries: page.records.map((c) => entry(c.id, `connection of volume ${c.volume_id} to ${typeof c.connector.host === 'string' ? c.connector.host : 'a host'}`, 'Connection')),
          nextAfter: page.nextAfter,
        };
      }
    }
  }
}
