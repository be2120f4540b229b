import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/server.js';
import { checkLayers, layerOf, violation } from './layers.js';

/** The folder tree is the architecture (issue 18): these fail on the first import that crosses it. */
describe('layers', () => {
  const report = checkLayers(REPO_ROOT);

  it('every product module sits in a layer folder, and no import goes up a layer or past the kit', () => {
    expect(report.files.filter((file) => layerOf(file) === 'loose')).toEqual([]);
    expect(report.violations).toEqual([]);
  });

  it('has no import cycle', () => {
    expect(report.cycles).toEqual([]);
  });

  it('names the rule an import would break', () => {
    expect(violation({ from: 'src/core/lifecycle.ts', to: 'src/mcp/server.ts', typeOnly: false })).toMatch(/from a lower layer to a higher one/);
    expect(violation({ from: 'drivers/lvm/index.ts', to: 'src/base/errors.ts', typeOnly: false })).toMatch(/imports only the kit and its own folder/);
    expect(violation({ from: 'drivers/lvm/index.ts', to: 'drivers/file/index.ts', typeOnly: false })).toMatch(/imports only the kit and its own folder/);
    expect(violation({ from: 'src/core/backend.ts', to: 'drivers/lvm/index.ts', typeOnly: false })).toMatch(/only through drivers\/catalog\.ts/);
    expect(violation({ from: 'drivers/kit/types.ts', to: 'src/model/volume.ts', typeOnly: true })).toMatch(/the kit stands on base alone/);
    expect(violation({ from: 'src/mcp/server.ts', to: 'src/core/registry.ts', typeOnly: false })).toBeUndefined();
  });
});
