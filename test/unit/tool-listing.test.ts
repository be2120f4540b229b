import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TOOLS } from '../../tools/index.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import type { JsonSchemaType } from '@modelcontextprotocol/sdk/validation';
import { SELF_EXPLAINING, renderPrebuiltListing, renderToolListing } from '../../src/mcp/tool-listing.js';

describe('the prebuilt tools/list answer', () => {
  it('equals a fresh rendering of the tool definitions (run npm run build after editing tools/)', () => {
    const built = JSON.parse(readFileSync(new URL('../../dist/tool-listing.json', import.meta.url), 'utf8'));
    expect(built).toEqual(renderPrebuiltListing(TOOLS));
  });

  it('renders schemas every client can read (the MCP Inspector --strict portability rules)', () => {
    const problems: string[] = [];
    const check = (schema: unknown, path: string): void => {
      if (Array.isArray(schema)) return schema.forEach((item, i) => check(item, `${path}[${i}]`));
      if (!schema || typeof schema !== 'object') return;
      const node = schema as Record<string, unknown>;
      if ('$schema' in node) problems.push(`${path}: $schema`);
      if (Array.isArray(node.type)) problems.push(`${path}: type is an array (${node.type.join(', ')}); use anyOf branches`);
      const extra = node.additionalProperties;
      if (extra && typeof extra === 'object' && Object.keys(extra).length === 0) problems.push(`${path}.additionalProperties: {} constrains nothing; say true`);
      for (const [key, value] of Object.entries(node)) check(value, `${path}.${key}`);
    };
    for (const tool of renderToolListing(TOOLS)) {
      expect(tool.inputSchema.type).toBe('object');
      expect(tool.outputSchema.type).toBe('object');
      // Every argument says what it is; output fields and nested keys only where their name does not (tools/schemas.ts).
      for (const [name, property] of Object.entries((tool.inputSchema.properties ?? {}) as Record<string, { description?: string }>)) {
        // Ids say what they are; dry_run and request_id are told once, in the initialize instructions.
        if (SELF_EXPLAINING.has(name)) continue;
        if (!property.description) problems.push(`${tool.name}.inputSchema.properties.${name}: no description`);
      }
      check(tool.inputSchema, `${tool.name}.inputSchema`);
      check(tool.outputSchema, `${tool.name}.outputSchema`);
    }
    expect(problems).toEqual([]);
  });

  it('declares what clients may receive: capacity markers, whole sizes of at least 1 GiB', () => {
    const listing = new Map(renderToolListing(TOOLS).map((tool) => [tool.name, tool.outputSchema]));
    const validator = new AjvJsonSchemaValidator(); // what SDK clients check structuredContent with
    const stats = validator.getValidator(listing.get('get_stats') as JsonSchemaType);
    const withPool = (total: unknown, free: unknown) => ({
      backend: 'b',
      stats: {
        driver_version: '1',
        storage_protocol: 'iSCSI',
        vendor_name: 'v',
        volume_backend_name: 'b',
        pools: [
          {
            pool_name: 'p',
            total_capacity_gb: total,
            free_capacity_gb: free,
            reserved_percentage: 0,
            max_over_subscription_ratio: 20,
            thin_provisioning_support: true,
            thick_provisioning_support: false,
            QoS_support: false,
          },
        ],
      },
    });
    expect(stats(withPool(100, 'unknown')).valid).toBe(true);
    expect(stats(withPool('infinite', 'infinite')).valid).toBe(true);
    expect(stats(withPool(100, 'plenty')).valid).toBe(false);
    const volume = validator.getValidator(listing.get('get_volume') as JsonSchemaType);
    const record = {
      id: 'i',
      name: '',
      description: '',
      status: 'available',
      backend: 'b',
      pool_name: 'p',
      bootable: false,
      created_at: 'now',
      snapshot_id: null,
      source_volume_id: null,
    };
    expect(volume({ ...record, size: 1 }).valid).toBe(true);
    expect(volume({ ...record, size: 0 }).valid).toBe(false);
    expect(volume({ ...record, size: 1.5 }).valid).toBe(false);
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
      CINDERLIB_MCP_TOOLSETS: '${user_config.toolsets}',
    });
  });
});
