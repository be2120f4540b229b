import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TOOLS } from '../../tools/index.js';
import { renderToolListing } from '../../src/tool-listing.js';

describe('the prebuilt tools/list answer', () => {
  it('equals a fresh rendering of the tool definitions (run npm run build after editing tools/)', () => {
    const built = JSON.parse(readFileSync(new URL('../../dist/tool-listing.json', import.meta.url), 'utf8'));
    expect(built).toEqual(renderToolListing(TOOLS));
  });

  it('matches the bundle manifest and the package version', () => {
    const manifest = JSON.parse(readFileSync(new URL('../../manifest.json', import.meta.url), 'utf8'));
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    expect(manifest.tools.map((t: { name: string }) => t.name)).toEqual(TOOLS.map((t) => t.name));
    expect(manifest.version).toBe(pkg.version);
    expect(manifest.user_config.read_only).toMatchObject({ type: 'boolean', default: true });
    expect(manifest.server.mcp_config.env).toEqual({
      CINDERLIB_MCP_CONFIG: '${user_config.config_path}',
      CINDERLIB_MCP_READ_ONLY: '${user_config.read_only}',
    });
  });
});
