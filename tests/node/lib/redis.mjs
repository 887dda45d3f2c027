// A real redis-server for cluster tests, started on a free port and
// stopped again; no data is written to disk.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { waitFor } from './wait.mjs';

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts redis-server; resolves with { url, stop() } once it accepts. */
export async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  await waitFor(() => out.includes('Ready to accept connections') || child.exitCode !== null, {
    timeout: 10_000, what: 'redis-server ready',
  });
  if (child.exitCode !== null) throw new Error(`redis-server exited: ${out}`);
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}
