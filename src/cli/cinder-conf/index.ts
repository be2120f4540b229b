import { readRegularFile } from '../../base/regular-file.js';
import { convertCinderConf } from './convert.js';
import { CinderConfError, MAX_CINDER_CONF_BYTES, decodeCinderConf } from './parse.js';

export { convertCinderConf, envNameFor, type CinderConfConversion } from './convert.js';
export { CinderConfError, parseCinderConf } from './parse.js';

export const DEFAULT_CINDER_CONF = '/etc/cinder/cinder.conf';

const USAGE = `usage: cinderlib-mcp import-cinder-conf [FILE]
Reads a Cinder config (default ${DEFAULT_CINDER_CONF}) and writes this project's YAML config to stdout:
every backend of [DEFAULT] enabled_backends whose driver cinderlib-mcp has, with the options that
driver knows. Secrets become \${env:CINDERLIB_<SECTION>_<OPTION>} references, listed on stderr.
Exit status: 0 when at least one backend converted, 1 otherwise.
`;

export interface CommandOutcome {
  code: number;
  stdout: string;
  stderr: string;
}

const PREFIX = 'import-cinder-conf';

/** `cinderlib-mcp import-cinder-conf [FILE]`; `argv` are the arguments after the subcommand. */
export async function runImportCinderConf(argv: string[]): Promise<CommandOutcome> {
  if (argv.includes('-h') || argv.includes('--help')) return { code: 0, stdout: USAGE, stderr: '' };
  const args = argv[0] === '--' ? argv.slice(1) : argv;
  if (args.length > 1 || (args[0]?.startsWith('-') && args[0] !== '-' && argv[0] !== '--')) {
    return { code: 1, stdout: '', stderr: `${PREFIX}: expected at most one FILE argument\n${USAGE}` };
  }
  const path = args[0] ?? DEFAULT_CINDER_CONF;
  const shown = JSON.stringify(path);
  let bytes: Buffer;
  try {
    bytes = await readRegularFile(path, MAX_CINDER_CONF_BYTES);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { code: 1, stdout: '', stderr: `${PREFIX}: cannot read ${shown}: ${reason}\n` };
  }
  let result;
  try {
    result = await convertCinderConf(decodeCinderConf(bytes), path);
  } catch (error) {
    if (!(error instanceof CinderConfError)) throw error;
    return { code: 1, stdout: '', stderr: `${PREFIX}: ${shown} is not a valid cinder.conf: ${error.message}\n` };
  }
  const lines = result.warnings.map((warning) => `${PREFIX}: warning: ${warning}`);
  if (result.envNames.length > 0) {
    lines.push(`${PREFIX}: secrets were not copied; set these environment variables before starting the server: ${result.envNames.join(' ')}`);
  }
  if (result.converted === 0) lines.push(`${PREFIX}: no backend converted from ${shown}`);
  else lines.push(`${PREFIX}: ${result.converted} backend${result.converted === 1 ? '' : 's'} converted from ${shown}`);
  return { code: result.converted > 0 ? 0 : 1, stdout: result.yaml, stderr: lines.join('\n') + '\n' };
}
