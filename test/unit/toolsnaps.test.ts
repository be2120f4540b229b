/**
 * Every tool's schema as tools/list gives it, one committed file per tool under
 * test/__toolsnaps__/ (as github-mcp-server's __toolsnaps__): a schema change is a diff in review.
 * `npm run update:toolsnaps` (UPDATE_TOOLSNAPS=true) rewrites them from the built listing.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readPrebuiltListing, type ListedTool } from '../../src/mcp/startup-answers.js';

const SNAP_DIR = fileURLToPath(new URL('../__toolsnaps__/', import.meta.url));
const SUFFIX = '.snap.json';
const UPDATE = process.env.UPDATE_TOOLSNAPS === 'true';

/** The fields a client sees, in a fixed order, as the file holds them. */
function snapshotText(tool: ListedTool): string {
  const { name, title, description, annotations, inputSchema, outputSchema } = tool;
  return `${JSON.stringify({ name, title, description, annotations, inputSchema, outputSchema }, null, 2)}\n`;
}

describe('tool schema snapshots (test/__toolsnaps__)', () => {
  // The file the server answers tools/list from (src/mcp/tool-listing.ts writes it at build).
  const listing = readPrebuiltListing(new URL('../../dist/tool-listing.json', import.meta.url));

  it('match the tools/list answer, one file per tool', () => {
    expect(listing, 'dist/tool-listing.json is missing: run npm run build').toBeDefined();
    const tools = listing!.tools;
    if (UPDATE) mkdirSync(SNAP_DIR, { recursive: true });
    for (const tool of tools) {
      const file = `${SNAP_DIR}${tool.name}${SUFFIX}`;
      const actual = snapshotText(tool);
      if (UPDATE) {
        if (!existsSync(file) || readFileSync(file, 'utf8') !== actual) writeFileSync(file, actual);
        continue;
      }
      const hint = `(npm run update:toolsnaps rewrites it after an intended change)`;
      expect.soft(existsSync(file), `tool ${tool.name}: no snapshot test/__toolsnaps__/${tool.name}${SUFFIX} ${hint}`).toBe(true);
      if (existsSync(file)) expect.soft(actual, `tool ${tool.name}: schema differs from test/__toolsnaps__/${tool.name}${SUFFIX} ${hint}`).toBe(readFileSync(file, 'utf8'));
    }
    const listed = new Set(tools.map((tool) => `${tool.name}${SUFFIX}`));
    const stale = readdirSync(SNAP_DIR).filter((file) => file.endsWith(SUFFIX) && !listed.has(file));
    if (UPDATE) for (const file of stale) rmSync(`${SNAP_DIR}${file}`);
    else expect.soft(stale, 'snapshots of tools no longer listed (npm run update:toolsnaps removes them)').toEqual([]);
  });
});
