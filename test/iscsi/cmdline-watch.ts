import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * What any local user sees: a child process that reads every /proc/<pid>/cmdline every
 * couple of milliseconds and keeps each distinct command line, as an unprivileged spy would.
 * A child, so the scans go on while the test process waits on the server.
 */
const WATCHER = `
const { readdirSync, readFileSync, writeFileSync } = require('node:fs');
const seen = new Set();
let scans = 0;
function scan() {
  for (const pid of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(pid)) continue;
    try {
      const line = readFileSync('/proc/' + pid + '/cmdline', 'latin1');
      if (line) seen.add(line.split('\\0').join(' ').trim());
    } catch {}
  }
  scans++;
}
function loop() { scan(); setTimeout(loop, 2); }
process.on('SIGTERM', () => {
  writeFileSync(process.argv[1], JSON.stringify({ scans, lines: [...seen] }));
  process.exit(0);
});
process.stdout.write('ready\\n');
loop();
`;

export interface CommandLineWatch {
  /** Stops the watcher: every distinct command line seen, and how many scans it made. */
  stop(): Promise<{ scans: number; lines: string[] }>;
}

export async function watchCommandLines(): Promise<CommandLineWatch> {
  const dir = mkdtempSync(join(tmpdir(), 'cmdline-watch-'));
  const out = join(dir, 'seen.json');
  const child = spawn(process.execPath, ['-e', WATCHER, out], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', () => resolve());
  });
  return {
    stop: async () => {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      await exited;
      try {
        return JSON.parse(readFileSync(out, 'utf8')) as { scans: number; lines: string[] };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** A short-lived command with a marker in its argv: proof that the watcher sees commands as brief as tgtadm's. */
export function runBriefMarker(marker: string): void {
  spawnSync('sh', ['-c', 'sleep 0.02', marker]);
}
