import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { LOOP_ATTACH_HERE, defineBackendScenarios, folderState } from '../helpers/scenarios.js';

const root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-file-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

defineBackendScenarios({
  label: 'file driver',
  backend: 'files',
  makeConfig: () => ({
    global: { persistence_config: { storage: 'db', connection: `sqlite:///${join(root, 'meta.sqlite')}` } },
    backends: [{ volume_backend_name: 'files', volume_driver: 'file', volumes_dir: join(root, 'volumes') }],
  }),
  // Without target_helper the file driver exports nothing; it attaches here through a loop device (test/iscsi exports it through tgt).
  connections: { connect: 'unsupported', attach: LOOP_ATTACH_HERE },
  arrayState: () => folderState(join(root, 'volumes')),
  foreign: {
    make: (name, sizeGb) => {
      closeSync(openSync(join(root, 'volumes', name), 'wx'));
      truncateSync(join(root, 'volumes', name), sizeGb * 1024 ** 3);
    },
    ...(process.getuid?.() === 0
      ? {
          inUse: (name: string, sizeGb: number) => {
            const path = join(root, 'volumes', name);
            closeSync(openSync(path, 'wx'));
            truncateSync(path, sizeGb * 1024 ** 3);
            const loop = execFileSync('losetup', ['--find', '--show', path], { encoding: 'utf8' }).trim();
            return () => {
              execFileSync('losetup', ['-d', loop]);
              rmSync(path);
            };
          },
        }
      : {}),
  },
  data: {
    write: (id, text) => {
      const fd = openSync(join(root, 'volumes', `volume-${id}`), 'r+');
      writeSync(fd, text.padEnd(32, '\0'), 0);
      closeSync(fd);
    },
    read: (id) => {
      const fd = openSync(join(root, 'volumes', `volume-${id}`), 'r');
      const buffer = Buffer.alloc(32);
      readSync(fd, buffer, 0, 32, 0);
      closeSync(fd);
      return buffer.toString('utf8').replace(/\0+$/, '');
    },
  },
});
