// The desktop app seen from outside, as the system sees it: its processes
// (the app and WebKit's children, from /proc) and its window (closed as a
// window manager closes it, with x11_close.py). Used by the end-to-end test
// and by scripts/bench-desktop.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLOSE = join(dirname(fileURLToPath(import.meta.url)), 'x11_close.py');

/** The window's title (tauri.conf.json), by which it is found on X. */
export const TITLE = 'whosin';
/** `comm` of WebKit's processes (the kernel keeps 15 characters). */
export const WEB_PROCESS = 'WebKitWebProces';
export const NETWORK_PROCESS = 'WebKitNetworkPr';

function read(path) {
  try { return readFileSync(path, 'utf8'); } catch { return null; }
}

/** The live children of a process: [{pid, comm}] (none once it is gone). */
export function children(pid) {
  let tasks;
  try { tasks = readdirSync(`/proc/${pid}/task`); } catch { return []; }
  const pids = tasks.flatMap((t) => (read(`/proc/${pid}/task/${t}/children`) ?? '').trim().split(' ').filter(Boolean).map(Number));
  return pids.map((p) => ({ pid: p, comm: read(`/proc/${p}/comm`)?.trim() })).filter((c) => c.comm);
}

/** The first process named `comm` among the descendants of `pid`, or null. */
export function descendant(pid, comm) {
  for (const child of children(pid)) {
    if (child.comm === comm) return child.pid;
    const deeper = descendant(child.pid, comm);
    if (deeper) return deeper;
  }
  return null;
}

/** The app's core (`whosin-desktop --core`) for the settings folder
 *  `configDir` (its WHOSIN_CONFIG_DIR), or null. The core outlives the
 *  window process that started it, so it is found by what it is, not by
 *  whose child it is. */
export function findCore(configDir) {
  return findCores(configDir)[0] ?? null;
}

/** Every live core for the settings folder `configDir` (one, or none). */
export function findCores(configDir) {
  const found = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const argv = (read(`/proc/${p}/cmdline`) ?? '').split('\0');
    if (!argv[0]?.endsWith('whosin-desktop') || !argv.includes('--core')) continue;
    const env = (read(`/proc/${p}/environ`) ?? '').split('\0');
    if (env.includes(`WHOSIN_CONFIG_DIR=${configDir}`) && alive(Number(p))) found.push(Number(p));
  }
  return found;
}

/** Whether a process is still there (and not a zombie). */
export function alive(pid) {
  const stat = read(`/proc/${pid}/stat`);
  return stat !== null && !/^\d+ \(.*\) Z/.test(stat);
}

/** A process's memory in kB (null once it is gone): `pss`, its
 *  proportional set size (pages shared with N processes count 1/N), and
 *  `private`, the pages only it maps. */
export function memoryKb(pid) {
  const rollup = read(`/proc/${pid}/smaps_rollup`) ?? '';
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? NaN);
  const pss = field('Pss');
  return Number.isNaN(pss) ? null : { pss, private: field('Private_Clean') + field('Private_Dirty') };
}

/** The given processes and all their descendants, each once: [{pid, comm}].
 *  The app is its core, the window process (when the window is shown) and
 *  WebKit's processes under it. */
export function tree(pids) {
  const out = new Map();
  const add = (pid, comm) => {
    if (out.has(pid) || !alive(pid)) return;
    out.set(pid, { pid, comm: comm ?? read(`/proc/${pid}/comm`)?.trim() });
    for (const c of children(pid)) add(c.pid, c.comm);
  };
  for (const pid of pids) if (pid) add(pid);
  return [...out.values()].filter((p) => p.comm);
}

/** The processes of `tree(pids)` with their memory: [{pid, comm, pss, private}]. */
export function footprint(pids) {
  return tree(pids).map((p) => ({ ...p, ...memoryKb(p.pid) })).filter((p) => p.pss !== undefined);
}

/** Context switches (voluntary and not) of every thread of `tree(pids)`,
 *  keyed "pid/tid": {name: "process/thread", n}. Each is a wake-up: a
 *  thread that slept and was woken, or was preempted. */
export function threadSwitches(pids) {
  const out = new Map();
  for (const p of tree(pids)) {
    let tasks = [];
    try { tasks = readdirSync(`/proc/${p.pid}/task`); } catch { continue; }
    for (const t of tasks) {
      const s = read(`/proc/${p.pid}/task/${t}/status`);
      if (!s) continue;
      const n = Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(s)?.[1] ?? 0) + Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(s)?.[1] ?? 0);
      out.set(`${p.pid}/${t}`, { name: `${p.comm}/${/^Name:\s+(.*)$/m.exec(s)?.[1]}`, n });
    }
  }
  return out;
}

/** CPU time of a process (user + system) in clock ticks (1/100 s). */
export function cpuTicks(pid) {
  const stat = read(`/proc/${pid}/stat`);
  if (!stat) return null;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** Asks the app's window to close, as the window manager does when its close
 *  button is clicked (WM_DELETE_WINDOW); resolves to the number of windows
 *  asked (0 when the app has none). */
export function closeWindow(appPid) {
  return new Promise((resolve, reject) => {
    execFile('/usr/bin/python3', [CLOSE, String(appPid), TITLE], (err, stdout, stderr) => {
      const n = Number(stdout.trim());
      if (err && !(err.code === 1 && n === 0)) reject(new Error(`x11_close.py: ${stderr.trim() || err.message}`));
      else resolve(n);
    });
  });
}
