// The real tray as a desktop's tray host sees it: `sni_watcher.py` owns
// org.kde.StatusNotifierWatcher on this process's session bus, the app's
// StatusNotifierItem registers with it (at start if the watcher is already
// there, else when it appears), and each `item()` call reads that item's
// properties and menu over DBus.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'sni_watcher.py');
// Debian's python, which has python3-dbus and python3-gi (another python on
// the PATH may not).
const PYTHON = '/usr/bin/python3';

/** Starts the watcher and waits until it owns the name; stops it after `t`. */
export async function startTrayWatcher(t, timeout = 10_000) {
  if (!process.env.DBUS_SESSION_BUS_ADDRESS) {
    throw new Error('no session bus: run this test under dbus-run-session (see scripts/test)');
  }
  const proc = spawn(PYTHON, [SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] });
  // Closing its stdin is what stops it; the kill is for a watcher that hangs.
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  t.after(async () => {
    proc.stdin.end();
    let timer;
    await Promise.race([exited, new Promise((resolve) => { timer = setTimeout(resolve, 2_000); })]);
    clearTimeout(timer);
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  // One answer line per request, in order.
  const waiting = [];
  let failed;
  const fail = (e) => { failed = e; while (waiting.length) waiting.shift().reject(e); };
  createInterface({ input: proc.stdout }).on('line', (line) => waiting.shift()?.resolve(JSON.parse(line)));
  proc.on('error', fail);
  proc.on('exit', (code, signal) => fail(new Error(`sni_watcher.py exited (${signal ?? code}): ${stderr.trim()}`)));
  const next = (ms) => new Promise((resolve, reject) => {
    if (failed) return reject(failed);
    const timer = setTimeout(() => reject(new Error(`sni_watcher.py did not answer in ${ms} ms: ${stderr.trim()}`)), ms);
    waiting.push({ resolve: (v) => { clearTimeout(timer); resolve(v); }, reject: (e) => { clearTimeout(timer); reject(e); } });
  });
  await next(timeout);
  let busy = Promise.resolve();
  const request = (line) => {
    // Requests one at a time, so each answer meets its request.
    const answer = busy.then(() => { const a = next(timeout); proc.stdin.write(`${line}\n`); return a; });
    busy = answer.catch(() => {});
    return answer;
  };
  const dump = () => request('dump');
  return {
    /** Every registered item: its StatusNotifierItem properties, `menu`
     *  (labels as shown, separators as "-") and `menu_revision`. */
    items: async () => (await dump()).items,
    /** The one registered item, or null while none is; throws if several. */
    async item() {
      const items = (await dump()).items;
      if (items.length > 1) throw new Error(`several tray items: ${JSON.stringify(items.map((i) => i.item))}`);
      if (items[0]?.error) throw new Error(`reading ${items[0].item}: ${items[0].error}`);
      return items[0] ?? null;
    },
    /** Clicks the one item's menu entry shown as `label` (as a tray host
     *  does when the user picks it); throws if there is no such entry. */
    async click(label) {
      const answer = await request(`click ${label}`);
      if (answer.error) throw new Error(`clicking "${label}" in the tray menu: ${answer.error}`);
      return answer.clicked;
    },
  };
}
