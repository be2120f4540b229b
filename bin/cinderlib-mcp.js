#!/usr/bin/env node
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`cinderlib-mcp: ${error && error.message ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
