/**
 * For arrays that give a volume to a host through an object standing for the host (a K2 host, an
 * XtremIO initiator group): find or create that object for a connector's initiators, map the
 * volume to it, unmap it, and remove the object once its last mapping is gone. The routine is
 * here; every array call is the driver's, passed as a callback, so the requests stay the array's.
 */
export interface HostMapping<Host, Mapped> {
  /** The connector's host object on the array, undefined when there is none yet. */
  findHost(): Promise<Host | undefined>;
  /** Creates it (with its initiators). May find one another connect made meanwhile. */
  createHost(): Promise<Host>;
  /** The volume's mapping to the host when it has one already; without it, createMapping alone decides. */
  findMapping?(host: Host): Promise<Mapped | undefined>;
  createMapping(host: Host): Promise<Mapped>;
  /** Removes a host object this very call created, when mapping to it failed; without it, the object stays. */
  undoHost?(host: Host): Promise<void>;
}

export interface MappedVolume<Host, Mapped> {
  host: Host;
  mapping: Mapped;
  hostCreated: boolean;
}

export async function mapVolumeToHost<Host, Mapped>(steps: HostMapping<Host, Mapped>): Promise<MappedVolume<Host, Mapped>> {
  const found = await steps.findHost();
  const host = found ?? (await steps.createHost());
  const hostCreated = found === undefined;
  try {
    const mapping = (await steps.findMapping?.(host)) ?? (await steps.createMapping(host));
    return { host, mapping, hostCreated };
  } catch (error) {
    // The first failure is the one to report; undoHost logs its own.
    if (hostCreated && steps.undoHost) await steps.undoHost(host);
    throw error;
  }
}

export interface HostUnmapping<Host> {
  /** The host objects the connector's initiators are in; none when nothing can be mapped to them. */
  findHosts(): Promise<Host[]>;
  /** Removes the volume's mapping to one of them; a mapping already gone is not an error. */
  unmap(host: Host): Promise<void>;
  /** When given, each host object whose last mapping went is removed, once every unmap is done. */
  removeUnused?: {
    isUnused(host: Host): Promise<boolean>;
    removeHost(host: Host): Promise<void>;
    /** When given, a failed removal is reported here rather than thrown: the volume is unmapped either way. */
    onFailure?(host: Host, error: unknown): void;
  };
}

/** Unmaps the volume from the connector's host objects; answers the hosts it found. */
export async function unmapVolumeFromHosts<Host>(steps: HostUnmapping<Host>): Promise<Host[]> {
  const hosts = await steps.findHosts();
  for (const host of hosts) await steps.unmap(host);
  const cleanup = steps.removeUnused;
  if (!cleanup) return hosts;
  for (const host of hosts) {
    try {
      if (await cleanup.isUnused(host)) await cleanup.removeHost(host);
    } catch (error) {
      if (!cleanup.onFailure) throw error;
      cleanup.onFailure(host, error);
    }
  }
  return hosts;
}
