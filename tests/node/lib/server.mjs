// Starts a `whosin serve` child process for one test file (or one test) and
// stops it again. The command line and the single stdout line
// `listening on 127.0.0.1:PORT` are the fixed contract with the server crate.
import { spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const START_DEADLINE_MS = 15_000;
const STOP_DEADLINE_MS = 5_000;
const STDERR_KEEP = 64 * 1024; // keep the tail of the log for error messages

export function whosinBin() {
  return process.env.WHOSIN_BIN || resolve(REPO_ROOT, 'target/debug/whosin');
}

// Children still alive when the test process exits (a crashed test, a missed
// teardown) are killed so that no server outlives its test file.
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/**
 * Start a server with a fresh random app id, key and secret on a free port.
 * @param {object} [opts]
 * @param {number} [opts.maxPresenceMembers] passed as --max-presence-members
 * @param {string[]} [opts.channels] each passed as --channel NAME
 * @param {string[]} [opts.extraArgs] appended verbatim
 * @param {number} [opts.port] a fixed port (to restart a server where it was)
 * @param {{appId:string,key:string,secret:string}} [opts.app] fixed credentials
 * @returns {Promise<WhosinServer>}
 */
export async function startServer(opts = {}) {
  const bin = whosinBin();
  if (!existsSync(bin)) {
    throw new Error(`whosin binary not found at ${bin} (build it, or set WHOSIN_BIN)`);
  }
  const app = opts.app ?? {
    appId: String(randomInt(100_000, 1_000_000)),
    key: randomBytes(10).toString('hex'),
    secret: randomBytes(10).toString('hex'),
  };
  const args = [
    'serve', '--host', '127.0.0.1', '--port', String(opts.port ?? 0),
    '--app-id', app.appId, '--app-key', app.key, '--app-secret', app.secret,
  ];
  if (opts.maxPresenceMembers != null) {
    args.push('--max-presence-members', String(opts.maxPresenceMembers));
  }
  for (const name of opts.channels ?? []) args.push('--channel', name);
  args.push(...(opts.extraArgs ?? []));

  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const server = new WhosinServer(child, app, args);
  try {
    await server.ready;
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

export class WhosinServer {
  constructor(child, app, args) {
    this.child = child;
    this.args = args;
    this.appId = app.appId;
    this.key = app.key;
    this.secret = app.secret;
    this.host = '127.0.0.1';
    this.port = undefined;
    this.stdoutLines = [];
    this._beforeStop = [];
    this._stderr = '';
    this.exited = new Promise((resolve) => {
      const done = (code, signal) => {
        live.delete(child);
        this.exitStatus ??= { code, signal };
        resolve(this.exitStatus);
      };
      child.once('exit', done);
      // A spawn that failed (e.g. not executable) may never emit 'exit'.
      child.once('error', () => { if (child.pid === undefined) done(null, null); });
    });

    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      // WHOSIN_TEST_LOG=1 shows the server log live, for debugging.
      if (process.env.WHOSIN_TEST_LOG) process.stderr.write(chunk);
      this._stderr = (this._stderr + chunk).slice(-STDERR_KEEP);
    });

    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(
          `whosin did not print "listening on 127.0.0.1:PORT" within ${START_DEADLINE_MS} ms` +
          `\ncommand: ${this.commandLine()}\nstderr:\n${this._stderr}`));
      }, START_DEADLINE_MS);
      const lines = createInterface({ input: child.stdout });
      lines.on('line', (line) => {
        this.stdoutLines.push(line);
        const m = /^listening on 127\.0\.0\.1:(\d+)$/.exec(line);
        if (m && this.port === undefined) {
          this.port = Number(m[1]);
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`could not start ${this.commandLine()}: ${err.message}`));
      });
      this.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        // A no-op once resolved; otherwise the server died before serving.
        reject(new Error(
          `whosin exited before listening (code ${code}, signal ${signal})` +
          `\ncommand: ${this.commandLine()}\nstderr:\n${this._stderr}`));
      });
    });
  }

  commandLine() {
    return [whosinBin(), ...this.args].join(' ');
  }

  /** The server's log so far (tail), for assertion messages. */
  stderr() {
    return this._stderr;
  }

  get baseUrl() {
    return `http://${this.host}:${this.port}`;
  }

  get authEndpoint() {
    return `${this.baseUrl}/pusher/auth`;
  }

  /** Run `fn` when stop() begins (e.g. disconnect clients before the kill). */
  onStop(fn) {
    this._beforeStop.push(fn);
  }

  /** SIGTERM, then SIGKILL if it has not exited by the deadline. */
  async stop() {
    for (const fn of this._beforeStop.splice(0)) {
      try { await fn(); } catch { /* teardown goes on */ }
    }
    if (this.exitStatus) return this.exitStatus;
    this.child.kill('SIGTERM');
    let timer;
    const deadline = new Promise((resolve) => {
      timer = setTimeout(() => resolve('deadline'), STOP_DEADLINE_MS);
    });
    const first = await Promise.race([this.exited, deadline]);
    clearTimeout(timer);
    if (first === 'deadline') {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    return this.exitStatus;
  }
}
