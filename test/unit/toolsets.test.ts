import { describe, expect, it } from 'vitest';
import { TOOLS } from '../../tools/index.js';
import { DEFAULT_TOOLSETS, TOOLSETS, TOOLSET_NAMES, resolveToolsets, toolsetOfName } from '../../src/config/toolsets.js';
import { renderPrebuiltListing } from '../../src/mcp/tool-listing.js';
import { offeredTools } from '../../src/mcp/startup-answers.js';

/** The bytes of a tools/list answer as it goes on the wire: the JSON of its result. */
const listBytes = (toolsets: readonly (typeof TOOLSET_NAMES)[number][], readOnly = false) =>
  Buffer.byteLength(JSON.stringify({ tools: offeredTools(renderPrebuiltListing(TOOLS), { toolsets, readOnly }) }));

describe('the toolset registry', () => {
  it('has each tool declare the toolset the contract puts it in', () => {
    for (const tool of TOOLS) expect(toolsetOfName(tool.name), tool.name).toBe(tool.toolset);
  });

  it('expands all and default, always adds backends, keeps table order, refuses unknown names', () => {
    expect(resolveToolsets('all', 'x')).toEqual([...TOOLSET_NAMES]);
    expect(resolveToolsets(['discovery', 'default'], 'x')).toEqual(['backends', 'volumes', 'snapshots', 'connections', 'discovery']);
    expect(resolveToolsets(' Volumes , ', 'x')).toEqual(['backends', 'volumes']);
    expect(resolveToolsets('', 'x')).toEqual([...DEFAULT_TOOLSETS]);
    expect(() => resolveToolsets('volumes,snapshot', 'global option "toolsets"')).toThrow(
      /global option "toolsets": unknown toolset "snapshot"; toolsets are backends, .*, all, default/,
    );
    expect(Object.keys(TOOLSETS)).toEqual([...TOOLSET_NAMES]);
  });
});

describe('the size of tools/list', () => {
  it('is at most 16,384 bytes for the default toolsets and 28,672 for all of them', () => {
    const sizes = { default: listBytes(DEFAULT_TOOLSETS), all: listBytes(TOOLSET_NAMES) };
    expect(sizes.default, JSON.stringify(sizes)).toBeLessThanOrEqual(16_384);
    expect(sizes.all, JSON.stringify(sizes)).toBeLessThanOrEqual(28_672);
  });
});
