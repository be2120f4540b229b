import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { withServer } from '../helpers/server.js';
import { getPrompt } from '../../src/mcp/prompts.js';

/**
 * MCP prompts over a real stdio pipe with the SDK client (issue 23, item 7): the three workflows,
 * each naming tools the session offers; fewer prompts, or a step that says so, when tools are not
 * offered; and one-line errors for a wrong prompts/get.
 */
const dir = join(tmpdir(), `cinderlib-mcp-prompts-${process.pid}`);
const config = (global: Record<string, unknown> = {}) => ({
  global: { persistence_config: { storage: 'memory' }, ...global },
  backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: dir }],
});
const UNSET = { CINDERLIB_MCP_TOOLSETS: '' };

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const textOf = (result: { messages: Array<{ role: string; content: { type: string; text?: string } }> }) => {
  expect(result.messages).toHaveLength(1);
  expect(result.messages[0].role).toBe('user');
  return result.messages[0].content.text ?? '';
};
/** The tool names a prompt's text calls ("call X {"), which must all be offered. */
const calledTools = (text: string) => [...text.matchAll(/\bcall (\w+) \{/g)].map((match) => match[1]);

describe('prompts', () => {
  it('offer the three workflows by default, each naming only tools the session offers, and walk through with them', async () => {
    await withServer([config(), { env: UNSET }], async (server) => {
      const { prompts } = await server.client.listPrompts();
      expect(prompts.map((prompt) => prompt.name)).toEqual(['protect_volume', 'give_volume_to_host', 'free_backend_space']);
      for (const prompt of prompts) expect(prompt.description, prompt.name).toMatch(/\(\w+(, \w+)*\)\.$/);
      const offered = new Set((await server.client.listTools()).tools.map((tool) => tool.name));

      const volume = (await server.call('create_volume', { backend: 'files', size: 1, name: 'precious' })).data;
      const protect = textOf(await server.client.getPrompt({ name: 'protect_volume', arguments: { volume_id: volume.id, name: 'before-upgrade' } }));
      expect(protect).toContain(`get_volume {volume_id: "${volume.id}"}`);
      expect(protect).toContain(`create_snapshot {volume_id: "${volume.id}", name: "before-upgrade"`);
      expect(protect).toMatch(/dry_run: true/); // create_snapshot takes it: the prompt offers a dry run first
      for (const tool of calledTools(protect)) expect(offered.has(tool), tool).toBe(true);
      // The steps work as written: snapshot, then verify.
      const snapshot = (await server.call('create_snapshot', { volume_id: volume.id, name: 'before-upgrade', request_id: 'protect-1' })).data;
      expect((await server.call('get_snapshot', { snapshot_id: snapshot.id })).data).toMatchObject({ status: 'available', volume_size: volume.size });
      expect((await server.call('list_snapshots', { volume_id: volume.id })).data.snapshots.map((s: { id: string }) => s.id)).toEqual([snapshot.id]);

      const give = textOf(await server.client.getPrompt({ name: 'give_volume_to_host', arguments: { volume_id: volume.id, host: 'db1', initiator: 'iqn.1993-08.org.debian:01:db1' } }));
      expect(give).toContain('validate_connector {backend: <its backend>, connector: {host: "db1", initiator: "iqn.1993-08.org.debian:01:db1"}}');
      expect(give).toMatch(/connect_volume \{volume_id: ".*", connector: \{host: "db1"/);
      expect(give).toMatch(/iscsiadm -m node -T <target_iqn> -p <target_portal> --login/);
      expect(give).toMatch(/cinderlib-mcp connection-secret <connection id>/);
      for (const tool of calledTools(give)) expect(offered.has(tool), tool).toBe(true);

      const free = textOf(await server.client.getPrompt({ name: 'free_backend_space', arguments: { backend: 'files', older_than_days: '7' } }));
      expect(free).toContain('get_stats {backend: "files", refresh: true}');
      expect(free).toMatch(/created more than 7 days ago/);
      expect(free).toMatch(/delete_volume \{volume_id: <candidate>/);
      expect(free).toMatch(/without the user's confirmation/);
      expect(free).not.toMatch(/list_unmanaged/); // the adoption toolset is off
      for (const tool of calledTools(free)) expect(offered.has(tool), tool).toBe(true);
    });
  });

  it('follow the offer: read-only keeps the one that only reads and says the deletes are not offered', async () => {
    await withServer([config({ read_only: true }), { env: UNSET }], async (server) => {
      const { prompts } = await server.client.listPrompts();
      expect(prompts.map((prompt) => prompt.name)).toEqual(['free_backend_space']);
      const free = textOf(await server.client.getPrompt({ name: 'free_backend_space', arguments: { backend: 'files' } }));
      expect(free).toMatch(/delete_volume is not offered in this session/);
      expect(free).toMatch(/older than 30 days/);
    });
    await withServer([config({ toolsets: ['volumes'] }), { env: UNSET }], async (server) => {
      expect((await server.client.listPrompts()).prompts).toEqual([]);
      await expect(server.client.getPrompt({ name: 'protect_volume', arguments: { volume_id: 'x' } })).rejects.toThrow(
        /there is no prompt "protect_volume" in this session; prompts: none/,
      );
    });
  });

  it('answer a wrong prompts/get with one line saying what is accepted', async () => {
    await withServer([config(), { env: UNSET }], async (server) => {
      await expect(server.client.getPrompt({ name: 'give_volume_to_host', arguments: { volume_id: 'v' } })).rejects.toThrow(/give_volume_to_host: host is required/);
      await expect(server.client.getPrompt({ name: 'protect_volume', arguments: { volume_id: 'v', colour: 'red' } })).rejects.toThrow(
        /unknown argument "colour"; protect_volume takes volume_id, name/,
      );
      await expect(server.client.getPrompt({ name: 'nope' })).rejects.toThrow(/no prompt "nope" in this session; prompts: protect_volume, give_volume_to_host, free_backend_space/);
    });
  });

  it('name a dry run first where the tool takes dry_run, and list_unmanaged where adoption is offered', () => {
    const context = { offered: new Set(['get_stats', 'list_volumes', 'list_snapshots', 'delete_volume', 'list_unmanaged']), dryRun: new Set(['delete_volume']) };
    const text = textOf(getPrompt('free_backend_space', { backend: 'b' }, context));
    expect(text).toMatch(
      /First call delete_volume \{volume_id: <candidate>, cascade: <true if it has snapshots>, dry_run: true\} and show the user what it would do; then call delete_volume/,
    );
    expect(text).toMatch(/list_unmanaged \{backend: "b"\}/);
    expect(
      text
        .split('\n')
        .map((line) => line.match(/^(\d+)\./)?.[1])
        .filter(Boolean),
    ).toEqual(['1', '2', '3', '4', '5', '6']);
  });
});
