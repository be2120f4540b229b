/** Reads tgtd's `show` answers (the text tgtadm prints): targets with their sessions, LUNs, accounts and ACLs; accounts; portals. */

export interface ShownTarget {
  tid: number;
  name: string;
  /** Open connections, as tgt-admin --force closes them: (I_T nexus id, connection id). */
  connections: { sid: bigint; cid: number }[];
  luns: number[];
  /** Incoming and outgoing account names bound to the target. */
  accounts: string[];
  /** initiator-address rules ("ALL", addresses). */
  acls: string[];
}

/** tgt indents with four spaces a level: "Target 1: NAME", "    LUN information:", "        LUN: 1". */
export function parseTargets(show: string): ShownTarget[] {
  const targets: ShownTarget[] = [];
  let target: ShownTarget | undefined;
  let part = '';
  let sid: bigint | undefined;
  for (const line of show.split('\n')) {
    const head = /^Target (\d+): (\S+)$/.exec(line);
    if (head) {
      target = { tid: Number(head[1]), name: head[2], connections: [], luns: [], accounts: [], acls: [] };
      targets.push(target);
      part = '';
      continue;
    }
    if (!target) continue;
    const section = /^ {4}(\S.*) information:$/.exec(line);
    if (section) {
      part = section[1]!;
      continue;
    }
    const entry = line.trim();
    if (!entry) continue;
    if (part === 'I_T nexus') {
      const nexus = /^I_T nexus: (\d+)$/.exec(entry);
      if (nexus) sid = BigInt(nexus[1]);
      const connection = /^Connection: (\d+)$/.exec(entry);
      if (connection && sid !== undefined) target.connections.push({ sid, cid: Number(connection[1]) });
    } else if (part === 'LUN') {
      const lun = /^LUN: (\d+)$/.exec(entry);
      if (lun) target.luns.push(Number(lun[1]));
    } else if (part === 'Account') {
      target.accounts.push(entry.replace(/ \(outgoing\)$/, ''));
    } else if (part === 'ACL') {
      target.acls.push(entry);
    }
  }
  return targets;
}

export function parseAccounts(show: string): string[] {
  return show
    .split('\n')
    .filter((line) => /^ {4}\S/.test(line))
    .map((line) => line.trim());
}

export function parsePortals(show: string): string[] {
  return [...show.matchAll(/^Portal:\s*(\S+),\d+/gm)].map((match) => match[1]);
}
