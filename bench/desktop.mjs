// The desktop app on the machine: time from start to the count in the tray,
// memory (PSS of the app and WebKit's processes) with the window shown and
// after it is closed, memory over a churning channel, and wake-ups while
// nothing changes and the window is closed. Run by scripts/bench-desktop
// under `xvfb-run -a dbus-run-session` (docs/benchmarks.md); everything
// talks to 127.0.0.1 only and everything started is stopped.
//
// Environment (defaults in brackets):
//   DESKTOP_BIN     the app [target/debug/whosin-desktop]
//   WHOSIN_BIN      the CLI, for the churning visitors [target/debug/whosin]
//   STARTS          starts timed to the count in the tray [5]
//   SETTLE_SECONDS  wait before a memory sample [5]
//   IDLE_SETTLE_SECONDS  wait after closing the window before counting [30]
//   IDLE_SECONDS    wake-ups counted over this long, window closed [60]
//   CHURN_SECONDS   the churning channel's length, window closed [600]
//   CHURN_SHOWN_SECONDS  then with the window shown [120]
//   CHURN_RATE      joins plus leaves a second [6]
//   SAMPLE_SECONDS  a memory sample this often during the churn [60]
// Prints progress on stderr and one JSON object with every figure on stdout
// (or into the file BENCH_RESULT names: under dbus-run-session, daemons the
// bus starts write to the same stdout).
// Gives up (stopping everything) after the time all of that should take
// plus two minutes.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTrayWatcher } from '../tests/node/desktop/tray.mjs';
import { NETWORK_PROCESS, WEB_PROCESS, alive, closeWindow, cpuTicks, findCore, footprint, threadSwitches, tree } from '../tests/node/desktop/app.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DESKTOP = process.env.DESKTOP_BIN || join(ROOT, 'target/debug/whosin-desktop');
const WHOSIN = process.env.WHOSIN_BIN || join(ROOT, 'target/debug/whosin');
const num = (name, dflt) => (process.env[name] === undefined ? dflt : Number(process.env[name]));
const STARTS = num('STARTS', 5);
const SETTLE = num('SETTLE_SECONDS', 5) * 1000;
const IDLE_SETTLE = num('IDLE_SETTLE_SECONDS', 30) * 1000;
const IDLE = num('IDLE_SECONDS', 60) * 1000;
const CHURN = num('CHURN_SECONDS', 600) * 1000;
const CHURN_SHOWN = num('CHURN_SHOWN_SECONDS', 120) * 1000;
const RATE = num('CHURN_RATE', 6);
const SAMPLE = num('SAMPLE_SECONDS', 60) * 1000;
// Visitors in the channel during the churn, besides the app itself.
const FEWEST = 5;
const MOST = 25;

const log = (...a) => console.error('bench-desktop:', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mb = (kb) => Math.round(kb / 102.4) / 10;

async function waitFor(what, fn, timeout = 15_000, every = 100) {
  const until = Date.now() + timeout;
  let last;
  for (;;) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await sleep(every);
  }
}

function freePort() {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
  });
}

// Every child process still running when this script ends is killed.
const started = new Set();
function track(proc) {
  started.add(proc);
  proc.once('exit', () => started.delete(proc));
  return proc;
}
process.on('exit', () => { for (const p of started) { try { p.kill('SIGKILL'); } catch { /* gone */ } } });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(1));

// The whole run's deadline: a hung step must not keep visitors running.
const BUDGET = STARTS * 20_000 + 6 * SETTLE + IDLE_SETTLE + IDLE + CHURN + CHURN_SHOWN + 120_000;
setTimeout(() => { log(`gave up after ${BUDGET / 1000} s`); process.exit(1); }, BUDGET).unref();

const scratch = mkdtempSync(join(tmpdir(), 'whosin-bench-desktop-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

/** Starts the app on the embedded default in a config folder of its own:
 *  `proc` is the window process started here; `core` (once known) the core
 *  it starts, which outlives it. */
async function startApp(name) {
  const config = join(scratch, name);
  const runtime = join(config, 'run');
  mkdirSync(runtime, { recursive: true, mode: 0o700 });
  const port = await freePort();
  const env = { ...process.env, WHOSIN_CONFIG_DIR: config, WHOSIN_DESKTOP_PORT: String(port), WHOSIN_IP_LOOKUP: 'none', XDG_RUNTIME_DIR: runtime };
  const stderr = openSync(join(config, 'app.log'), 'w');
  const t0 = performance.now();
  const proc = track(spawn(DESKTOP, [], { env, stdio: ['ignore', 'ignore', stderr] }));
  return { proc, pid: proc.pid, config, runtime, port, t0 };
}

/** The label beside the tray icon, once exactly one item is registered. */
async function trayLabel(watcher) {
  return (await watcher.item())?.XAyatanaLabel;
}

/** The app's processes: the core, the window process this script started
 *  (while it runs), and whatever runs under them (a window made by Show,
 *  WebKit's processes). */
const pids = (app) => [app.core, app.proc.exitCode === null && app.proc.signalCode === null ? app.pid : null];

/** Quits through the tray menu (the app's own Quit) and waits for the exit
 *  of the core and of the window process. */
async function quit(watcher, app) {
  const gone = () => app.proc.exitCode !== null || app.proc.signalCode !== null;
  const ended = () => gone() && (!app.core || !alive(app.core));
  // A click can miss: the app replaces its menu when the count changes, and
  // an item id read just before that names nothing. Click again then.
  for (let click = 1; click <= 3 && !ended(); click += 1) {
    // The app may end before it answers the click: an error here is no news.
    await watcher.click('Quit').catch(() => {});
    const done = await waitFor('the app to quit', ended, 3_000).then(() => true, () => false);
    if (!done && click < 3) log(`Quit click ${click} had no effect; clicking again`);
  }
  if (!ended()) {
    const left = [!gone() && `the window process ${app.pid}`, app.core && alive(app.core) && `the core ${app.core}`].filter(Boolean);
    log(`the app did not quit after three clicks (${left.join(' and ')} still running): killing it`);
    app.proc.kill('SIGKILL');
    if (app.core && alive(app.core)) process.kill(app.core, 'SIGKILL');
    await waitFor('the app killed', ended, 5_000);
  }
  await waitFor('no tray item left', async () => (await watcher.items()).length === 0, 5_000);
}

/** Waits for the core of an app just started. */
async function core(app) {
  app.core = await waitFor('the core', () => findCore(app.config), 20_000, 10);
  process.on('exit', () => { try { if (alive(app.core)) process.kill(app.core, 'SIGKILL'); } catch { /* gone */ } });
}

const webProcess = (app) => tree(pids(app)).find((c) => c.comm === WEB_PROCESS)?.pid;

function sample(app, what) {
  const procs = footprint(pids(app));
  const total = procs.reduce((s, p) => s + p.pss, 0);
  const parts = procs.map((p) => `${p.comm} ${mb(p.pss)}`).join(', ');
  log(`${what}: ${mb(total)} MB PSS in all (${parts})`);
  return { what, total_mb: mb(total), processes: procs.map((p) => ({ comm: p.comm, pss_mb: mb(p.pss), private_mb: mb(p.private) })) };
}

/** Other processes of WebKit or of this app share library pages with ours
 *  and so lower our PSS: the figures hold only without them. */
function others(app) {
  const ours = new Set(tree(pids(app)).map((c) => c.pid));
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((pid) => {
    if (ours.has(pid)) return false;
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      // A zombie (an ended process not yet reaped) maps nothing.
      return alive(pid) && (comm === 'whosin-desktop' || comm.startsWith('WebKit'));
    } catch { return false; }
  });
}

/** Wake-ups of the app and its children over `ms`, counted per 10 s. */
async function idle(app, ms) {
  const procs = tree(pids(app)).map((c) => c.pid);
  const cpu0 = procs.map(cpuTicks);
  const first = threadSwitches(pids(app));
  let before = first;
  const buckets = [];
  for (let left = ms; left > 0; left -= 10_000) {
    await sleep(Math.min(10_000, left));
    const now = threadSwitches(pids(app));
    let n = 0;
    for (const [k, v] of now) n += v.n - (before.get(k)?.n ?? 0);
    buckets.push(n);
    before = now;
  }
  const cpu1 = procs.map(cpuTicks);
  const byThread = {};
  let total = 0;
  for (const [k, v] of before) {
    const d = v.n - (first.get(k)?.n ?? 0);
    if (d > 0) byThread[v.name] = (byThread[v.name] ?? 0) + d;
    total += d;
  }
  const cpu = cpu1.reduce((s, c, i) => s + ((c ?? 0) - (cpu0[i] ?? 0)), 0) / 100;
  const perSecond = Math.round((total / (ms / 1000)) * 100) / 100;
  log(`idle ${ms / 1000} s, window closed: ${total} wake-ups (${perSecond}/s; per 10 s: ${buckets.join(' ')}), CPU ${cpu} s; by thread: ${JSON.stringify(byThread)}`);
  return { seconds: ms / 1000, wakeups: total, per_second: perSecond, per_10s: buckets, cpu_seconds: cpu, by_thread: byThread };
}

function secretOf(config) {
  // Wherever the settings keep it.
  const find = (v) => {
    if (v && typeof v === 'object') {
      if (typeof v.embedded_secret === 'string') return v.embedded_secret;
      for (const x of Object.values(v)) { const s = find(x); if (s) return s; }
    }
    return null;
  };
  const secret = find(JSON.parse(readFileSync(join(config, 'settings.json'), 'utf8')));
  if (!secret) throw new Error('no embedded_secret in settings.json');
  return secret;
}

function historyRows(config) {
  const db = join(config, 'history.sqlite3');
  try {
    const rows = execFileSync('/usr/bin/python3', ['-c',
      'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from counts").fetchone()[0])', db]);
    const size = (f) => { try { return statSync(f).size; } catch { return 0; } };
    return { rows: Number(String(rows).trim()), bytes: size(db) + size(`${db}-wal`) };
  } catch (e) {
    return { error: String(e.message).split('\n')[0] };
  }
}

/** Visitors joining and leaving `rate` times a second for `ms`, between
 *  FEWEST and MOST at once, through `whosin join` signing with the embedded
 *  server's secret; a memory sample every SAMPLE. */
async function churn(app, watcher, ms, rate, label) {
  const secret = secretOf(app.config);
  const pool = [];
  let joins = 0;
  let leaves = 0;
  let n = 0;
  const join1 = () => {
    n += 1;
    const v = track(spawn(WHOSIN, ['join', '--url', `ws://127.0.0.1:${app.port}`, '--key', 'whosin', '--secret', secret,
      '--ip', '127.0.0.1', '--ip-lookup', 'none', '--name', `Churn ${n}`, '--visitor-id', `churn-${n}`], { stdio: 'ignore' }));
    pool.push(v);
    joins += 1;
  };
  const leave1 = () => {
    const v = pool.splice(Math.floor(Math.random() * pool.length), 1)[0];
    v.kill('SIGTERM');
    leaves += 1;
  };
  while (pool.length < FEWEST) join1();
  await waitFor(`${FEWEST + 1} online in the tray`, async () => (await trayLabel(watcher)) === `${FEWEST + 1} online`);
  const samples = [sample(app, `${label}, 0 s`)];
  const t0 = Date.now();
  let nextSample = t0 + SAMPLE;
  const tick = setInterval(() => {
    if (pool.length <= FEWEST) join1();
    else if (pool.length >= MOST) leave1();
    else if (Math.random() < 0.5) join1();
    else leave1();
  }, 1000 / rate);
  while (Date.now() - t0 < ms) {
    await sleep(Math.min(1000, t0 + ms - Date.now()));
    if (Date.now() >= nextSample) {
      samples.push(sample(app, `${label}, ${Math.round((Date.now() - t0) / 1000)} s`));
      nextSample += SAMPLE;
    }
  }
  clearInterval(tick);
  const seconds = (Date.now() - t0) / 1000;
  for (const v of pool.splice(0)) v.kill('SIGTERM');
  await waitFor('1 online in the tray after the churn', async () => (await trayLabel(watcher)) === '1 online', 30_000);
  const changes = joins + leaves;
  if (samples.at(-1).what !== `${label}, ${Math.round(seconds)} s`) samples.push(sample(app, `${label}, ${Math.round(seconds)} s`));
  log(`${label}: ${joins} joins, ${leaves} leaves in ${seconds} s (${Math.round((changes / seconds) * 10) / 10}/s)`);
  return { seconds, joins, leaves, per_second: Math.round((changes / seconds) * 10) / 10, samples };
}

async function main() {
  log(`app ${DESKTOP}`);
  // The watcher ends when its stdin closes, that is when this script does.
  const watcher = await startTrayWatcher({ after: () => {} });
  const result = { app: DESKTOP, starts: [], memory: [] };

  // (a) Start to "1 online" beside the tray icon, on the embedded default.
  for (let i = 0; i < STARTS; i += 1) {
    const app = await startApp(`start-${i}`);
    await waitFor('the count in the tray', async () => (await trayLabel(watcher)) === '1 online', 20_000, 10);
    const ms = Math.round(performance.now() - app.t0);
    await core(app);
    log(`start ${i + 1}: count in the tray after ${ms} ms`);
    result.starts.push(ms);
    await quit(watcher, app);
  }

  // (b) Memory with the window shown, then closed (released).
  const app = await startApp('run');
  await waitFor('the count in the tray', async () => (await trayLabel(watcher)) === '1 online', 20_000);
  await core(app);
  await waitFor('the web process', () => webProcess(app));
  await sleep(SETTLE);
  const shared = others(app);
  if (shared.length) log(`warning: other WebKit or whosin-desktop processes run (${shared.join(' ')}): they share pages with ours and lower its PSS`);
  result.other_webkit_processes = shared.length;
  result.memory.push(sample(app, 'window shown'));
  const web = webProcess(app);
  if ((await closeWindow(app.pid)) !== 1) throw new Error('no window to close');
  await waitFor('the web process to end', () => !alive(web));
  await waitFor('the window process to end', () => !alive(app.pid));
  await sleep(SETTLE);
  result.memory.push(sample(app, 'window closed'));

  // (d) Wake-ups while nothing changes and the window is closed: after the
  // timers that closing the window leaves (WebKit's, GTK's) have run out.
  if (IDLE > 0) {
    await sleep(IDLE_SETTLE);
    result.idle = await idle(app, IDLE);
  }

  // (c) A churning channel, the window closed (the app in the tray all day),
  // then shown.
  result.churn = [];
  if (CHURN > 0) result.churn.push(await churn(app, watcher, CHURN, RATE, 'churn (window closed)'));
  await sleep(SETTLE);
  result.memory.push(sample(app, 'after the churn, window closed'));
  result.tray_icon_files = readdirSync(join(app.runtime, 'tray-icon')).length;

  // The window again, from the tray menu, after the run.
  await watcher.click('Show window');
  await waitFor('the web process again', () => webProcess(app));
  await sleep(SETTLE);
  result.memory.push(sample(app, 'window shown again'));
  if (CHURN_SHOWN > 0) {
    result.churn.push(await churn(app, watcher, CHURN_SHOWN, RATE, 'churn (window shown)'));
    await sleep(SETTLE);
    result.memory.push(sample(app, 'after the churn, window shown'));
  }
  result.history = historyRows(app.config);
  log(`history: ${JSON.stringify(result.history)}`);
  result.network_process = tree(pids(app)).some((c) => c.comm === NETWORK_PROCESS);
  await quit(watcher, app);
  // Quit ends the core, which removes its socket as it exits.
  result.core_removed_its_socket = !existsSync(join(app.config, 'desktop.sock'));
  const out = `${JSON.stringify(result)}\n`;
  if (process.env.BENCH_RESULT) writeFileSync(process.env.BENCH_RESULT, out);
  else process.stdout.write(out);
}

main().then(() => process.exit(0), (e) => { log(`failed: ${e.stack || e}`); process.exit(1); });
