// The desktop app end to end, as a user would see it: the real binary in a
// real window (run this under `xvfb-run -a dbus-run-session`), driven through
// tauri-driver and WebKitWebDriver with plain WebDriver HTTP calls. The tray
// is read over DBus as a tray host would (tray.mjs, sni_watcher.py).
//
//   DESKTOP_BIN   the app (default target/debug/whosin-desktop)
//   WHOSIN_BIN    the CLI, for a second visitor (default target/debug/whosin)
//   SCREENSHOT    where to save the window's picture (default docs/desktop.png)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, whosinBin } from '../lib/server.mjs';
import { startTrayWatcher } from './tray.mjs';
import { WEB_PROCESS, alive, children, closeWindow, descendant, findCore, findCores } from './app.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const DESKTOP = process.env.DESKTOP_BIN || join(ROOT, 'target/debug/whosin-desktop');
const SCREENSHOT = process.env.SCREENSHOT || join(ROOT, 'docs/desktop.png');
const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

function freePort() {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
  });
}

async function waitFor(what, fn, timeout = 15_000) {
  const until = Date.now() + timeout;
  let last;
  for (;;) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

class WebDriver {
  constructor(port) { this.base = `http://127.0.0.1:${port}`; }
  async req(method, path, body) {
    const r = await fetch(this.base + path, { method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body) });
    const json = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(`${method} ${path}: HTTP ${r.status} ${JSON.stringify(json.value ?? json)}`);
    return json.value;
  }
  async start(application) {
    const v = await this.req('POST', '/session', { capabilities: { alwaysMatch: { 'tauri:options': { application } } } });
    this.session = `/session/${v.sessionId}`;
  }
  async find(css) {
    const v = await this.req('POST', `${this.session}/element`, { using: 'css selector', value: css });
    return v[ELEMENT];
  }
  async text(css) { return this.req('GET', `${this.session}/element/${await this.find(css)}/text`); }
  async texts(css) {
    const els = await this.req('POST', `${this.session}/elements`, { using: 'css selector', value: css });
    return Promise.all(els.map((e) => this.req('GET', `${this.session}/element/${e[ELEMENT]}/text`)));
  }
  async invoke(cmd, args = {}) {
    return this.req('POST', `${this.session}/execute/async`, {
      script: 'const done = arguments[arguments.length - 1]; window.__TAURI__.core.invoke(arguments[0], arguments[1]).then(done, (e) => done({ error: String(e) }));',
      args: [cmd, args],
    });
  }
  async execute(script) { return this.req('POST', `${this.session}/execute/sync`, { script, args: [] }); }
  async screenshot() { return Buffer.from(await this.req('GET', `${this.session}/screenshot`), 'base64'); }
  async rect() { return this.req('GET', `${this.session}/window/rect`); }
  async setRect(rect) { return this.req('POST', `${this.session}/window/rect`, rect); }
  /** The app's webviews as WebDriver sees them (none while the window is closed). */
  async handles() { return this.req('GET', `${this.session}/window/handles`); }
  async switchTo(handle) { return this.req('POST', `${this.session}/window`, { handle }); }
  async stop() { if (this.session) await this.req('DELETE', this.session).catch(() => {}); }
}

test('the desktop app joins its embedded server and shows who comes and goes', { timeout: 120_000 }, async (t) => {
  const config = mkdtempSync(join(tmpdir(), 'whosin-desktop-e2e-'));
  // Everything the test starts is ended by one hook, last started first,
  // each step on its own (one that throws does not skip the rest): the
  // app is quit before the driver goes, the folder removed last.
  const cleanup = [() => rmSync(config, { recursive: true, force: true })];
  t.after(async () => {
    for (const step of cleanup.reverse()) {
      try { await step(); } catch (e) { t.diagnostic(`cleanup: ${e.message}`); }
    }
  });
  const later = { after: (step) => cleanup.push(step) };
  const appPort = await freePort();
  const driverPort = await freePort();
  // A port of its own for WebKitWebDriver too: one left behind by an
  // earlier, interrupted run must not take this run's default (4445).
  const nativePort = await freePort();
  // The tray's icon files go under XDG_RUNTIME_DIR (else a folder in /tmp
  // that every run on the machine shares): one of this run's own.
  const runtime = join(config, 'run');
  mkdirSync(runtime, { mode: 0o700 });
  const env = { ...process.env, WHOSIN_CONFIG_DIR: config, WHOSIN_DESKTOP_PORT: String(appPort), WHOSIN_IP_LOOKUP: 'none', XDG_RUNTIME_DIR: runtime };
  // The desktop prefers dark: the real settings portal (xdg-desktop-portal
  // with its GTK backend, started by the session bus) reads it from
  // GSettings, kept for this run in a folder of its own. First, before
  // anything on the bus starts dconf.
  const desktopSettings = darkDesktop(config);
  // Before the app, so that its tray registers as soon as it is made.
  const watcher = await startTrayWatcher(later);
  // The driver's output goes nowhere: a pipe would be inherited by the app
  // and keep this process waiting after the test.
  const driver = spawn('tauri-driver', ['--port', String(driverPort), '--native-port', String(nativePort), '--native-driver', '/usr/bin/WebKitWebDriver'], { env, stdio: 'ignore' });
  // SIGTERM: tauri-driver ends WebKitWebDriver with itself on it (not on SIGKILL).
  cleanup.push(async () => {
    driver.kill('SIGTERM');
    await waitFor('tauri-driver to end', () => driver.exitCode !== null || driver.signalCode !== null, 5_000)
      .catch(() => driver.kill('SIGKILL'));
  });
  const wd = new WebDriver(driverPort);
  await waitFor('tauri-driver /status', async () => (await fetch(`${wd.base}/status`)).ok);
  await wd.start(DESKTOP);
  // Closing the window leaves the app in the tray: quit it for real, and
  // should that not reach it, end its core.
  cleanup.push(async () => {
    const core = findCore(config);
    await wd.invoke('quit').catch(() => {});
    await wd.stop();
    if (core) {
      await waitFor('the core to quit', () => !alive(core), 5_000).catch(() => {
        t.diagnostic('the core did not quit: killing it');
        process.kill(core, 'SIGKILL');
      });
    }
  });

  // On the embedded default, alone: 1.
  await waitFor('#count = 1', async () => (await wd.text('#count')) === '1');
  await waitFor('#state online', async () => (await wd.text('#state')) === 'online');
  const me = await wd.text('#me');
  assert.match(me, / — 127\.0\.0\.1$/);
  assert.equal((await wd.invoke('tray_state')).icon_text, '1');
  const myName = me.replace(/ — 127\.0\.0\.1$/, '');
  const alone = await trayShows(wd, watcher, 1, [myName]);
  // The window follows the desktop's dark preference, at start and when it
  // changes.
  await waitFor('the page in dark mode', () => wd.execute("return matchMedia('(prefers-color-scheme: dark)').matches"));
  desktopSettings.set('prefer-light');
  // (Light from here on, as the screenshot in the README.)
  await waitFor('the page back in light mode', async () => !(await wd.execute("return matchMedia('(prefers-color-scheme: dark)').matches")));
  assert.ok(alone.IconName.startsWith(runtime), alone.IconName);
  t.diagnostic(`StatusNotifierItem properties: ${Object.keys(alone).filter((k) => /^[A-Z]/.test(k)).join(', ')}`);

  // One instance at a time: a second start hands over to the first and exits.
  const second = spawn(DESKTOP, [], { env, stdio: 'ignore' });
  const secondExit = await waitFor('the second instance to exit', () => (second.exitCode !== null ? { code: second.exitCode } : null), 20_000)
    .finally(() => { if (second.exitCode === null) second.kill('SIGKILL'); });
  assert.equal(secondExit.code, 0);
  assert.equal(await wd.text('#count'), '1', 'the first instance carries on');

  // A visitor from the terminal, through the embedded server's auth endpoint.
  const visitor = spawn(whosinBin(), ['join', '--url', `ws://127.0.0.1:${appPort}`, '--key', 'whosin',
    '--auth-endpoint', `http://127.0.0.1:${appPort}/pusher/auth`, '--name', 'Terminal & Visitor_1', '--ip-lookup', 'none'],
  { stdio: 'ignore' });
  cleanup.push(() => visitor.kill('SIGKILL'));
  await waitFor('#count = 2', async () => (await wd.text('#count')) === '2');
  const names = await wd.texts('#visitors li');
  assert.equal(names.length, 2);
  assert.ok(names.includes('Terminal & Visitor_1 — 127.0.0.1'), JSON.stringify(names));
  const tray = await wd.invoke('tray_state');
  assert.equal(tray.icon_text, '2');
  assert.ok(tray.menu.includes('Terminal & Visitor_1'), JSON.stringify(tray.menu));
  const two = await trayShows(wd, watcher, 2, [myName, 'Terminal & Visitor_1']);
  assert.notEqual(two.IconName, alone.IconName, 'a new icon file for the new count');
  assert.ok(!two.png.equals(alone.png), 'the icon for 2 differs from the icon for 1');

  // The visitor leaves: 1 again, in the window and the tray.
  visitor.kill('SIGTERM');
  await waitFor('#count = 1 again', async () => (await wd.text('#count')) === '1');
  assert.equal((await wd.invoke('tray_state')).icon_text, '1');
  const left = await wd.texts('#visitors li');
  assert.equal(left.length, 1);
  assert.ok(left[0].startsWith(me), JSON.stringify(left));
  const again = await trayShows(wd, watcher, 1, [myName]);
  assert.ok(!again.menu.includes('Terminal & Visitor_1'), JSON.stringify(again.menu));
  assert.notEqual(again.IconName, two.IconName, 'a new icon file for the new count');
  assert.ok(again.png.equals(alone.png), 'the icon for 1 is drawn as before');

  // A second site: a whosin server elsewhere (here another port), joined
  // through its auth endpoint, with a visitor of its own.
  const shop = await startServer();
  cleanup.push(() => shop.stop());
  const added = await wd.invoke('add_site', { site: {
    name: 'Shop', channel: null,
    remote: { url: `ws://127.0.0.1:${shop.port}`, key: shop.key, auth_endpoint: shop.authEndpoint },
  } });
  assert.ok(!added.error, JSON.stringify(added));
  const shopper = spawn(whosinBin(), ['join', '--url', `ws://127.0.0.1:${shop.port}`, '--key', shop.key,
    '--auth-endpoint', shop.authEndpoint, '--name', 'Shopper', '--ip-lookup', 'none'], { stdio: 'ignore' });
  cleanup.push(() => shopper.kill('SIGKILL'));
  await waitFor('#sites lists both with their counts', async () => {
    const rows = await wd.texts('#sites li');
    return rows.length === 2 && rows[0].startsWith('This computer') && rows[0].includes('1')
      && rows[1].startsWith('Shop') && rows[1].includes('2');
  });
  // The tray: the total of both, a line per site.
  await trayShows(wd, watcher, 3, ['This computer: 1 online', 'Shop: 2 online']);
  assert.equal(await wd.text('#count'), '1', 'the window still shows this computer');
  // The window shows the shop: its count, its visitors.
  await wd.invoke('select_site', { id: 'site-1' });
  await waitFor('#count = 2 for the shop', async () => (await wd.text('#count')) === '2');
  // The shown site's row follows its count too (it comes with the shown
  // site's own events, not the background sites').
  await waitFor('#sites with the shop at 2', async () => {
    const counts = await wd.texts('#sites li .site-count');
    return counts.length === 2 && counts[1] === '2';
  });
  await waitFor('the shopper listed', async () => (await wd.texts('#visitors li')).some((v) => v.startsWith('Shopper')));
  await waitFor('the chart drawn', async () => (await wd.text('#history-peak')).startsWith('Peak today'));
  writeFileSync(SCREENSHOT, await wd.screenshot());

  // The app is two processes: the window, which WebDriver started, and the
  // core it started, which holds the tray and never loads a page.
  const win = descendant(driver.pid, 'whosin-desktop');
  assert.ok(win, 'the window process runs under the driver');
  const core = findCore(config);
  assert.ok(core && core !== win, 'the core runs beside it');
  const web = descendant(win, WEB_PROCESS);
  assert.ok(web, 'the window has its web process');
  assert.equal(descendant(core, WEB_PROCESS), null, 'the core has no web process');

  // Closing the window ends its process, and WebKit's with it; the core
  // stays in the tray and keeps it up to date; Show window in the tray menu
  // makes the window again where it was.
  const place = { x: 40, y: 30, width: 460, height: 600 };
  await wd.setRect(place);
  await waitFor('the window moved', async () => JSON.stringify(await wd.rect()) === JSON.stringify(place));
  assert.equal(await closeWindow(win), 1, 'one window to close');
  await waitFor('the window process gone', () => !alive(win));
  await waitFor('the web process gone', () => !alive(web));
  assert.ok(alive(core), 'the core lives on in the tray');
  // A visitor on this computer while the window is closed: 2 here, 2 at the
  // shop, 4 in all beside the icon.
  const late = spawn(whosinBin(), ['join', '--url', `ws://127.0.0.1:${appPort}`, '--key', 'whosin',
    '--auth-endpoint', `http://127.0.0.1:${appPort}/pusher/auth`, '--name', 'Late Visitor', '--ip-lookup', 'none'],
  { stdio: 'ignore' });
  cleanup.push(() => late.kill('SIGKILL'));
  await trayLabel(watcher, '4 online');
  assert.ok(!descendant(core, 'whosin-desktop'), 'no window while closed');
  await watcher.click('Show window');
  const shown = await waitFor('a window process made by Show', () => descendant(core, 'whosin-desktop'));
  await waitFor('its web process', () => descendant(shown, WEB_PROCESS));
  // It does not inherit what the core set for itself or what WebDriver gave
  // the process that started the core.
  const shownEnv = readFileSync(`/proc/${shown}/environ`, 'utf8').split('\0').map((kv) => kv.split('=')[0]);
  for (const name of ['GDK_GL', 'NO_AT_BRIDGE', 'WEBKIT_INSPECTOR_SERVER', 'TAURI_WEBVIEW_AUTOMATION']) {
    assert.ok(!shownEnv.includes(name), `the window made by Show has ${name} in its environment`);
  }
  // Show window again while it is shown brings that one forward: no second
  // window process, not even one that starts and leaves (watched for 2 s).
  await watcher.click('Show window');
  const seen = new Set();
  const watchUntil = Date.now() + 2_000;
  while (Date.now() < watchUntil) {
    for (const c of children(core)) if (c.comm === 'whosin-desktop') seen.add(c.pid);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.deepEqual([...seen], [shown], 'one window process for two clicks on Show window');
  // It opened where the first one closed; close it there.
  await waitFor('the window made by Show on screen', async () => (await closeWindow(shown)) === 1);
  await waitFor('that window process gone', () => !alive(shown));
  const extra = descendant(core, 'whosin-desktop');
  assert.ok(!extra || !alive(extra), 'Show made one window');

  // Starting the app again (here: a new WebDriver session) opens the window
  // where it was, with the current counts, the shop still selected.
  await wd.stop();
  await wd.start(DESKTOP);
  await waitFor('#count = 2 for the shop, still shown', async () => (await wd.text('#count')) === '2');
  await waitFor('#sites with this computer at 2', async () => {
    const rows = await wd.texts('#sites li');
    return rows.length === 2 && rows[0].startsWith('This computer') && rows[0].includes('2');
  });
  assert.deepEqual(await wd.rect(), place, 'the window opens where it was closed');
  assert.equal((await wd.handles()).length, 1, 'one window');
  await wd.invoke('select_site', { id: 'default' });
  await waitFor('the late visitor listed', async () => (await wd.texts('#visitors li')).includes('Late Visitor — 127.0.0.1'));
  assert.equal(await wd.text('#count'), '2');
  assert.equal(findCore(config), core, 'the same core all along');
});

// Starts at login (`--hidden`) start only the core; two at the same moment
// leave one (the lock beside the socket decides). A window of another
// version (the package upgraded under a running core) makes the core give
// way: it answers "restart", ends, and removes its socket.
test('two starts at once leave one core, which gives way to another version', { timeout: 60_000 }, async (t) => {
  const config = mkdtempSync(join(tmpdir(), 'whosin-desktop-core-'));
  const runtime = join(config, 'run');
  mkdirSync(runtime, { mode: 0o700 });
  t.after(() => {
    for (const pid of findCores(config)) process.kill(pid, 'SIGKILL');
    rmSync(config, { recursive: true, force: true });
  });
  const env = { ...process.env, WHOSIN_CONFIG_DIR: config, WHOSIN_DESKTOP_PORT: String(await freePort()), WHOSIN_IP_LOOKUP: 'none', XDG_RUNTIME_DIR: runtime };
  const start = () => new Promise((resolve) => {
    const p = spawn(DESKTOP, ['--hidden'], { env, stdio: 'ignore' });
    p.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const exits = await Promise.all([start(), start()]);
  assert.deepEqual(exits, [{ code: 0, signal: null }, { code: 0, signal: null }], 'both starts return at once, content');
  // A start returns as soon as a core answers; the core a losing start
  // began may still be on its way out then.
  const cores = await waitFor('one core left', () => { const c = findCores(config); return c.length === 1 && c; }, 10_000);
  assert.equal(descendant(cores[0], 'whosin-desktop'), null, 'no window at a start at login');
  const socket = join(config, 'desktop.sock');
  assert.ok(existsSync(socket));

  const answer = await new Promise((resolve, reject) => {
    const c = createConnection(socket);
    let got = '';
    c.on('data', (d) => { got += d; if (got.includes('\n')) { c.end(); resolve(JSON.parse(got.split('\n')[0])); } });
    c.on('error', reject);
    c.write(`${JSON.stringify({ t: 'hello', pid: process.pid, version: '0.0.0-older' })}\n`);
  });
  assert.deepEqual(answer, { t: 'restart' });
  await waitFor('the core to make way', () => !alive(cores[0]), 10_000);
  assert.ok(!existsSync(socket), 'the core removed its socket as it ended');
});

// Makes the session's desktop prefer dark through GSettings, as GNOME's
// style setting does, in a settings folder under `dir`: the bus starts
// dconf and the portal with XDG_CONFIG_HOME pointing there, so the user's
// own settings are never touched. Returns a setter for later changes.
function darkDesktop(dir) {
  // Only on a bus of the test's own (dbus-run-session's, in /tmp): on a
  // desktop's bus this would change the user's environment and theme.
  if (!/^unix:(path|abstract)=\/tmp\/dbus-/.test(process.env.DBUS_SESSION_BUS_ADDRESS ?? '')) {
    throw new Error(`not a private session bus (${process.env.DBUS_SESSION_BUS_ADDRESS}): run this test under dbus-run-session (see scripts/test)`);
  }
  const home = join(dir, 'xdg-config');
  mkdirSync(home, { recursive: true });
  const env = { ...process.env, XDG_CONFIG_HOME: home };
  execFileSync('gdbus', ['call', '--session', '--dest', 'org.freedesktop.DBus', '--object-path', '/org/freedesktop/DBus',
    '--method', 'org.freedesktop.DBus.UpdateActivationEnvironment',
    `{'XDG_CONFIG_HOME': '${home}', 'XDG_CURRENT_DESKTOP': 'GNOME'}`], { env, stdio: 'ignore' });
  const set = (scheme) => execFileSync('gsettings', ['set', 'org.gnome.desktop.interface', 'color-scheme', scheme], { env, stdio: 'ignore' });
  set('prefer-dark');
  return { set };
}

// Waits until the label beside the tray icon, read over DBus, is `label`
// (for when there is no window to ask tray_state through).
async function trayLabel(watcher, label) {
  let last;
  try {
    await waitFor(`the tray on DBus to show ${label}`, async () => {
      const item = await watcher.item();
      last = { XAyatanaLabel: item?.XAyatanaLabel, menu: item?.menu };
      return item?.XAyatanaLabel === label && item.menu[0] === label;
    }, 10_000);
  } catch (e) {
    throw new Error(`${e.message}; last seen: ${JSON.stringify(last)}`);
  }
}

// Waits until the app's tray, read over DBus, shows `n` online: the label
// beside the icon, the menu's first line and the given names in the menu,
// the whole menu as the app's own model (tray_state) has it, and an icon file
// that is a PNG. Returns the item with the icon's bytes as `png`.
async function trayShows(wd, watcher, n, names) {
  const headline = `${n} online`;
  let last;
  try {
    return await waitFor(`the tray on DBus to show ${headline}`, async () => {
      const [item, model] = [await watcher.item(), await wd.invoke('tray_state')];
      last = { XAyatanaLabel: item?.XAyatanaLabel, menu: item?.menu, model: model.menu };
      if (item?.XAyatanaLabel !== headline || item.menu[0] !== headline) return false;
      if (!names.every((name) => item.menu.some((label) => label.startsWith(name)))) return false;
      if (JSON.stringify(item.menu) !== JSON.stringify(model.menu)) return false;
      const png = readFileSync(item.IconName);
      return png.subarray(1, 4).toString() === 'PNG' && { ...item, png };
    }, 10_000);
  } catch (e) {
    throw new Error(`${e.message}; last seen: ${JSON.stringify(last)}`);
  }
}
