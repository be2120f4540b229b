/** Contract section 8's connection statuses. */
export const CONNECTION_STATUSES = ['attached', 'detached', 'error'] as const;
export type ConnectionStatus = (typeof CONNECTION_STATUSES)[number];

/**
 * A volume's export to a host as the metadata store keeps it (cinderlib's Connection, Cinder's
 * VolumeAttachment): what connect_volume made, so that it survives a restart and can be listed
 * and undone. `connector` and `connection_info` are kept as given and returned; secrets inside
 * them (CHAP passwords) are masked on every way out.
 */
export interface ConnectionRecord {
  id: string;
  volume_id: string;
  backend: string;
  status: ConnectionStatus;
  attach_mode: string;
  connector: Record<string, unknown>;
  connection_info: Record<string, unknown>;
  device: Record<string, unknown> | null;
  created_at: string;
  updated_at: string;
  status_reason: string | null;
  /** While a connect or disconnect is under way: the server running it, and until when its claim holds unless renewed. */
  owner?: string | null;
  lease_expires_at?: string | null;
  /** Fields of a cinderlib dump this project does not model, kept as loaded and dumped back. */
  cinderlib_extra?: Record<string, unknown> | null;
}

/** The contract's Connection: the record as answered, secrets (CHAP passwords) masked by `mask`. */
export interface ConnectionView {
  id: string;
  volume_id: string;
  backend: string;
  status: ConnectionStatus;
  attach_mode: string;
  connector: Record<string, unknown>;
  connection_info: { driver_volume_type: string; data: Record<string, unknown> };
  device?: { type: string; path: string };
  created_at: string;
  status_reason?: string;
}

export function toConnectionView(record: ConnectionRecord, mask: <T>(value: T) => T): ConnectionView {
  const info = record.connection_info as { driver_volume_type?: unknown; data?: unknown };
  const view: ConnectionView = {
    id: record.id,
    volume_id: record.volume_id,
    backend: record.backend,
    status: record.status,
    attach_mode: record.attach_mode,
    connector: mask(record.connector),
    connection_info: {
      driver_volume_type: typeof info.driver_volume_type === 'string' ? info.driver_volume_type : '',
      data: mask(info.data && typeof info.data === 'object' ? (info.data as Record<string, unknown>) : {}),
    },
    created_at: record.created_at,
  };
  const device = record.device as { type?: unknown; path?: unknown } | null;
  if (device && typeof device.path === 'string') view.device = { type: typeof device.type === 'string' ? device.type : 'block', path: device.path };
  if (record.status_reason) view.status_reason = record.status_reason;
  return view;
}
