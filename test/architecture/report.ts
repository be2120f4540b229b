import { resolve } from 'node:path';
import { createSnapshotCallPath } from './call-path.js';
import { checkLayers, lineCount } from './layers.js';

/** `npm run check:layers`: the architecture's figures, and exit 1 on a forbidden import or a cycle. */
const verbose = process.argv.includes('--verbose');
const root = resolve(process.argv.slice(2).find((arg) => !arg.startsWith('--')) ?? '.');
const report = checkLayers(root);
const lines = (file: string) => lineCount(root, file);
const loose = report.files.filter((file) => /^src\/[^/]+\.ts$/.test(file));
const longest = [...report.files].sort((a, b) => lines(b) - lines(a)).slice(0, 3);
const driverFiles = report.files.filter((file) => file.startsWith('drivers/'));
const longestDriver = [...driverFiles].sort((a, b) => lines(b) - lines(a))[0];
const fromDriversOutsideKit = report.imports.filter(
  (edge) => edge.from.startsWith('drivers/') && !edge.from.startsWith('drivers/kit/') && edge.from !== 'drivers/catalog.ts' && !edge.to.startsWith('drivers/'),
);
const coreToDrivers = report.imports.filter(
  (edge) => !edge.from.startsWith('drivers/') && edge.to.startsWith('drivers/') && !edge.to.startsWith('drivers/kit/') && edge.to !== 'drivers/catalog.ts',
);
const engines = ['src/store/sqlite.ts', 'src/store/postgres.ts', 'src/store/memory.ts'].filter((file) => report.files.includes(file));

const callPath = await createSnapshotCallPath();

const figures = {
  'product files': report.files.length,
  'loose files in src/': loose.length,
  'longest files': longest.map((file) => `${file} (${lines(file)})`).join(', '),
  'longest file under drivers/': `${longestDriver} (${lines(longestDriver)})`,
  'driver imports from outside the kit and their own folder': fromDriversOutsideKit.length,
  'core imports of a driver but through the catalog': coreToDrivers.length,
  'lines per store engine': engines.map((file) => `${file.split('/').pop()} ${lines(file)}`).join(', '),
  'forbidden imports': report.violations.length,
  'import cycles': report.cycles.length,
  'product files one create_snapshot runs through (measured, file backend)': callPath.length,
};
for (const [name, value] of Object.entries(figures)) console.log(`${name}: ${value}`);
if (verbose) for (const file of callPath) console.log(`  create_snapshot: ${file}`);
for (const text of report.violations) console.log(`  forbidden: ${text}`);
for (const cycle of report.cycles) console.log(`  cycle: ${cycle.join(' -> ')}`);
process.exitCode = report.violations.length + report.cycles.length > 0 ? 1 : 0;
