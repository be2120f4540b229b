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
}
