import { spawn, type ChildProcess } from 'node:child_process';
import { BIN, REPO_ROOT } from './server.js';

/** A `cinderlib-mcp serve --http` process, as tests run it. */
export interface HttpServerProcess {
  url: string;
  base: string;
  child: ChildProcess;
  stderr(): string;
  stop(): Promise<number | null>;
}

/** Starts `serve --http --port 0` with `env` and waits for the line naming its URL (`bin`: another build's, for benches). */
export async function startHttpServerProcess(configPath: string, env: Record<string, string>, extraArgs: string[] = [], bin = BIN): Promise<HttpServerProcess> {
  const child = spawn(process.execPath, [bin, 'serve', '--http', '--port', '0', '--config', configPath, ...extraArgs], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 30 s; stderr:\n${stderr}`)), 30_000);
    const look = () => {
      const match = /serving MCP over HTTP at (http:\/\/\S+\/mcp)/.exec(stderr);
      if (match) {
        clearTimeout(timer);
        child.stderr.off('data', look);
        resolve(match[1]);
      }
    };
    child.stderr.on('data', look);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before serving; stderr:\n${stderr}`));
    });
  });
  const server: HttpServerProcess = {
    url,
    base: url.replace(/\/mcp$/, ''),
    child,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
  return server;
}
