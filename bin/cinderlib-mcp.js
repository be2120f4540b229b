#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { URL } from 'node:url';

// The bundle `npm run build` writes (src/cli/build-bundle.ts) starts faster; the unbundled build is the fallback.
const bundled = new URL('../dist/bundle/cli/main.js', import.meta.url);
const { main } = await import(existsSync(bundled) ? bundled.href : '../dist/src/cli/main.js');

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`cinderlib-mcp: ${error && error.message ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
