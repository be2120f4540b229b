import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { END_MARKER, START_MARKER, renderConfigReference } from '../../src/cli/config-reference.js';

describe('README', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

  it('starts with the two commands a newcomer needs', () => {
    const firstLines = readme.split('\n').slice(0, 6).join('\n');
    expect(firstLines).toMatch(/npm install -g \. && cinderlib-mcp/);
    expect(firstLines).not.toMatch(/npx cinderlib-mcp/);
    expect(firstLines).toMatch(/npm test/);
  });

  it('carries the config reference rendered from the driver schemas (npm run docs)', async () => {
    const between = readme.slice(readme.indexOf(START_MARKER) + START_MARKER.length, readme.indexOf(END_MARKER)).trim();
    expect(between).toBe((await renderConfigReference()).trim());
  });

  it('is what .ci/run runs', () => {
    const ci = readFileSync(new URL('../../.ci/run', import.meta.url), 'utf8');
    expect(ci).toMatch(/^npm test( |$)/m);
  });
});
