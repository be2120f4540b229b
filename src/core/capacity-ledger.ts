/**
 * What a capacity decision must add to a pool's stats: GiB promised to operations under way, and
 * GiB of operations that finished after those stats were taken (a stats answer can predate
 * creates that completed while it was in flight, and callers joining that flight still use it).
 *
 * Entries are kept per capacity domain: the space a pool really draws on. Two backends whose
 * pools share one filesystem or volume group share a domain, and so share the ledger, and each
 * sees what the others have provisioned.
 */
export interface Reservation {
  /** The operation finished: its GiB now count as done, until stats taken after it arrive. */
  commit(): void;
  /** The operation failed: its GiB were never used. */
  release(): void;
}

export class CapacityLedger {
  private seq = 0;
  private readonly pending = new Map<string, number>();
  /** Per domain, finished operations in order (and who made them), until every member's stats postdate them. */
  private readonly committed = new Map<string, Array<{ seq: number; gb: number; member: string }>>();
  /** Per domain, per member (a backend's pool): the provisioned GiB of its latest stats, and their stamp. */
  private readonly members = new Map<string, Map<string, { provisionedGb: number; seq: number }>>();

  /** A position to stamp on a stats snapshot as it is taken. */
  mark(): number {
    return this.seq;
  }

  reserve(domain: string, member: string, gb: number): Reservation {
    this.pending.set(domain, (this.pending.get(domain) ?? 0) + gb);
    let settled = false;
    const settle = (done: boolean) => {
      if (settled) return;
      settled = true;
      this.pending.set(domain, (this.pending.get(domain) ?? 0) - gb);
      if (!done) return;
      let entries = this.committed.get(domain);
      if (!entries) this.committed.set(domain, (entries = []));
      entries.push({ seq: ++this.seq, gb, member });
    };
    return { commit: () => settle(true), release: () => settle(false) };
  }

  /**
   * What a decision on `member`'s stats stamped `snapshotSeq` must add to them:
   * - provisionedGb: GiB under way, plus finished operations that the provisioned figure relied on
   *   does not show (each member's own figure shows its operations up to its own stamp);
   * - allocatedGb: GiB under way, plus finished operations after the stamp of this member's free
   *   space figure (any member's operations take from the same free space);
   * - sharedProvisionedGb: what the other members of the domain have provisioned.
   */
  claims(domain: string, member: string, snapshotSeq: number): { provisionedGb: number; allocatedGb: number; sharedProvisionedGb: number } {
    const members = this.members.get(domain);
    let sharedProvisionedGb = 0;
    for (const [name, snapshot] of members ?? []) if (name !== member) sharedProvisionedGb += snapshot.provisionedGb;
    const pending = this.pending.get(domain) ?? 0;
    let provisionedGb = pending;
    let allocatedGb = pending;
    for (const entry of this.committed.get(domain) ?? []) {
      const seenBy = entry.member === member ? snapshotSeq : (members?.get(entry.member)?.seq ?? -1);
      if (entry.seq > seenBy) provisionedGb += entry.gb;
      if (entry.seq > snapshotSeq) allocatedGb += entry.gb;
    }
    return { provisionedGb, allocatedGb, sharedProvisionedGb };
  }

  /** Records a member's fresh stats, and forgets finished operations every member has now seen. */
  recordSnapshot(domain: string, member: string, provisionedGb: number, snapshotSeq: number): void {
    let byMember = this.members.get(domain);
    if (!byMember) this.members.set(domain, (byMember = new Map<string, { provisionedGb: number; seq: number }>()));
    byMember.set(member, { provisionedGb, seq: snapshotSeq });
    const entries = this.committed.get(domain);
    if (!entries?.length) return;
    const oldestSeen = Math.min(...[...byMember.values()].map((snapshot) => snapshot.seq));
    const keepFrom = entries.findIndex((entry) => entry.seq > oldestSeen);
    if (keepFrom !== 0) entries.splice(0, keepFrom < 0 ? entries.length : keepFrom);
  }

  /** The other members of a domain: backends whose pools draw on the same space. */
  sharers(domain: string, member: string): string[] {
    return [...(this.members.get(domain)?.keys() ?? [])].filter((name) => name !== member);
  }
}
