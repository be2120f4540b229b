/**
 * MCP prompts (prompts/list, prompts/get) for the workflows agents are asked for most: each a short
 * template naming the tools it uses. A prompt is listed when the tools it needs are offered; a
 * step that needs a tool not offered (a toolset off, read-only mode) says so instead, and a dry run
 * is named where the tool takes `dry_run`. Plain data: answered before the SDK loads.
 */

export interface PromptArgument {
  name: string;
  description: string;
  required: boolean;
}

/** What a prompt knows of the session: the tools offered, and those that take dry_run. */
export interface PromptContext {
  offered: ReadonlySet<string>;
  dryRun: ReadonlySet<string>;
}

interface PromptDefinition {
  name: string;
  title: string;
  description: string;
  arguments: PromptArgument[];
  /** Tools without which the prompt is not listed. */
  needs: string[];
  render(args: Record<string, string>, context: PromptContext): string;
}

/** A step that calls a mutating tool: with a dry run first where it has one, or a note when it is not offered. */
function mutating(tool: string, args: string, context: PromptContext, what: string): string {
  if (!context.offered.has(tool)) return `${what}: ${tool} is not offered in this session (read-only or its toolset is off), so stop here and tell the user what you would do.`;
  const dryRun = context.dryRun.has(tool) ? ` First call ${tool} ${withDryRun(args)} and show the user what it would do; then` : '';
  return `${what}:${dryRun} call ${tool} ${args}.`;
}

function withDryRun(args: string): string {
  return args.replace(/}$/, ', dry_run: true}');
}

const PROMPTS: PromptDefinition[] = [
  {
    name: 'protect_volume',
    title: 'Protect a volume',
    description: 'Snapshot a volume, then verify the snapshot is usable (get_volume, create_snapshot, get_snapshot, list_snapshots).',
    arguments: [
      { name: 'volume_id', description: 'The volume to protect (id from list_volumes).', required: true },
      { name: 'name', description: 'A name for the snapshot (default: protect-<date>).', required: false },
    ],
    needs: ['get_volume', 'create_snapshot', 'get_snapshot', 'list_snapshots'],
    render({ volume_id, name }, context) {
      const snapshotName = name || `protect-${new Date().toISOString().slice(0, 10)}`;
      return [
        `Protect volume ${volume_id} with a snapshot, then verify it.`,
        `1. Call get_volume {volume_id: "${volume_id}"}. A snapshot needs status "available"; if it is "in-use", tell the user the host should be disconnected (or its filesystem frozen) first and stop.`,
        `2. ${mutating('create_snapshot', `{volume_id: "${volume_id}", name: "${snapshotName}", request_id: "<a new unique id>"}`, context, 'Snapshot it')} On a time-out, repeat the call with the same request_id.`,
        '3. Verify: call get_snapshot {snapshot_id} until its status is "available" ("error" means it failed: report status_reason), and check volume_size equals the volume\'s size.',
        `4. Call list_snapshots {volume_id: "${volume_id}"} and report the new snapshot's id with the volume's other restore points.`,
        context.offered.has('revert_to_snapshot')
          ? 'Tell the user how to restore: revert_to_snapshot {volume_id, snapshot_id} puts the volume back; create_volume {snapshot_id} makes a copy.'
          : "Tell the user how to restore: create_volume {snapshot_id} makes a new volume holding the snapshot's data.",
      ].join('\n');
    },
  },
  {
    name: 'give_volume_to_host',
    title: 'Give a volume to a host',
    description: 'Validate the host connector, connect the volume, and return what the host runs to use it (get_volume, validate_connector, connect_volume).',
    arguments: [
      { name: 'volume_id', description: 'The volume to give (id from list_volumes).', required: true },
      { name: 'host', description: 'The host name.', required: true },
      { name: 'initiator', description: "The host's iSCSI initiator name (cat /etc/iscsi/initiatorname.iscsi on the host).", required: false },
    ],
    needs: ['get_volume', 'validate_connector', 'connect_volume'],
    render({ volume_id, host, initiator }, context) {
      const connector = `{host: "${host}"${initiator ? `, initiator: "${initiator}"` : ''}}`;
      return [
        `Give volume ${volume_id} to host ${host}.`,
        `1. Call get_volume {volume_id: "${volume_id}"}: it must be "available" or "in-use"; note its backend.`,
        `2. Call validate_connector {backend: <its backend>, connector: ${connector}}. If it names missing keys (an iSCSI backend needs initiator), ask the user for them (on the host: cat /etc/iscsi/initiatorname.iscsi) and call it again.`,
        `3. ${mutating('connect_volume', `{volume_id: "${volume_id}", connector: ${connector}, request_id: "<a new unique id>"}`, context, 'Connect it')}`,
        "4. From the connection's connection_info.data, give the host's administrator the commands to run there. iSCSI: iscsiadm -m discovery -t sendtargets -p <target_portal>; with auth_method CHAP, iscsiadm -m node -T <target_iqn> -p <target_portal> --op update -n node.session.auth.authmethod -v CHAP (and auth.username, auth.password); then iscsiadm -m node -T <target_iqn> -p <target_portal> --login; the disk appears as /dev/disk/by-path/ip-<target_portal>-iscsi-<target_iqn>-lun-<target_lun>.",
        '5. auth_password reads "***": the administrator reads it on the server\'s host with `cinderlib-mcp connection-secret <connection id>`. Never ask for it. Report the connection id: disconnect_volume {connection_id} undoes this.',
      ].join('\n');
    },
  },
  {
    name: 'free_backend_space',
    title: 'Free space on a backend',
    description:
      'List what is old, unused or unmanaged on a backend, with a dry run of the deletes, for the user to choose (get_stats, list_volumes, list_snapshots, list_connections, list_unmanaged, delete_volume).',
    arguments: [
      { name: 'backend', description: 'The backend (volume_backend_name from list_backends).', required: true },
      { name: 'older_than_days', description: 'Count a volume or snapshot as old after this many days (default 30).', required: false },
    ],
    needs: ['get_stats', 'list_volumes', 'list_snapshots'],
    render({ backend, older_than_days }, context) {
      const days = older_than_days && /^\d+$/.test(older_than_days) ? older_than_days : '30';
      const steps = [
        `Find what could be deleted on backend ${backend} to free space. Delete nothing without the user's confirmation.`,
        `1. Call get_stats {backend: "${backend}", refresh: true} and note each pool's free_capacity_gb and total_capacity_gb.`,
        `2. Call list_volumes {backend: "${backend}"} (follow next_cursor to the end). Candidates: volumes in status "error", and "available" volumes created more than ${days} days ago.` +
          (context.offered.has('list_connections') ? ' Call list_connections {volume_id} for each: a connected volume is in use, never a candidate.' : ''),
        `3. Call list_snapshots {backend: "${backend}"} (all pages): snapshots in "error" and snapshots older than ${days} days are candidates; a volume with snapshots needs cascade to be deleted.`,
      ];
      if (context.offered.has('list_unmanaged')) {
        steps.push(
          `${steps.length}. Call list_unmanaged {backend: "${backend}"}: objects on the array that no record knows take space too. Report them; adopting one (manage_volume) lets it be deleted later. Never touch one whose safe_to_manage is false.`,
        );
      }
      steps.push(
        `${steps.length}. ${mutating('delete_volume', '{volume_id: <candidate>, cascade: <true if it has snapshots>}', context, 'For each candidate volume')} Only after the user confirms, delete for real; snapshots alone go with delete_snapshot {snapshot_id}.`,
        `${steps.length + 1}. Present a table: id, name, size (GiB), status, created_at, snapshots, and the GiB each deletion frees; end with the total and the pool's free space now.`,
      );
      return steps.join('\n');
    },
  },
];

/** The prompts a session lists: those whose tools are all offered. */
export function offeredPrompts(context: PromptContext): Array<{ name: string; title: string; description: string; arguments: PromptArgument[] }> {
  return PROMPTS.filter((prompt) => prompt.needs.every((tool) => context.offered.has(tool))).map(({ name, title, description, arguments: args }) => ({
    name,
    title,
    description,
    arguments: args,
  }));
}

/** Thrown for a prompts/get the server cannot answer: the message says what is accepted. */
export class PromptError extends Error {}

/** prompts/get: the filled template as one user message. */
export function getPrompt(
  name: unknown,
  rawArguments: unknown,
  context: PromptContext,
): { description: string; messages: Array<{ role: 'user'; content: { type: 'text'; text: string } }> } {
  const listed = offeredPrompts(context).map((prompt) => prompt.name);
  const prompt = PROMPTS.find((candidate) => candidate.name === name && listed.includes(candidate.name));
  if (typeof name !== 'string' || !prompt) {
    throw new PromptError(`prompts/get: there is no prompt ${JSON.stringify(name)} in this session; prompts: ${listed.join(', ') || 'none'}`);
  }
  const given = rawArguments === undefined || rawArguments === null ? {} : rawArguments;
  if (typeof given !== 'object' || Array.isArray(given)) throw new PromptError(`prompts/get ${name}: arguments must be an object of strings`);
  const args: Record<string, string> = {};
  for (const [key, value] of Object.entries(given)) {
    const known = prompt.arguments.find((argument) => argument.name === key);
    if (!known) throw new PromptError(`prompts/get ${name}: unknown argument "${key}"; ${name} takes ${prompt.arguments.map((a) => a.name).join(', ')}`);
    if (typeof value !== 'string') throw new PromptError(`prompts/get ${name}: ${key} must be a string`);
    if (value.length > 1024) throw new PromptError(`prompts/get ${name}: ${key} must be at most 1024 characters`);
    args[key] = value.replace(/[\r\n"]/g, ' ').trim();
  }
  const missing = prompt.arguments.filter((argument) => argument.required && !args[argument.name]).map((argument) => argument.name);
  if (missing.length > 0) throw new PromptError(`prompts/get ${name}: ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} required`);
  return { description: prompt.description, messages: [{ role: 'user', content: { type: 'text', text: prompt.render(args, context) } }] };
}
