// Entry point of the page. In the desktop app (Tauri) presence comes from the
// Rust side as events; in a browser the page joins by itself through the
// server's auth endpoint. Either way the same View shows it.
import { View } from './view.js';
import { PresenceTransport } from './transport.js';
import { clock, historyPath } from './chart.js';

const view = new View();
window.whosinView = view; // for tests and debugging

function visitorId() {
  const KEY = 'whosin.visitor_id';
  let id = localStorage.getItem(KEY);
  if (!id || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
    id = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)).replace(/[^A-Za-z0-9_-]/g, '');
    localStorage.setItem(KEY, id);
  }
  return id;
}

// The token the server gave with the visitor id: without it, the server
// gives a fresh id while this one is present (another tab, a reconnect), so
// nobody can appear as a visitor whose id they read in the list.
const TOKEN_KEY = 'whosin.visitor_token';

function keepIdentity(answer) {
  localStorage.setItem('whosin.visitor_id', answer.visitor_id);
  localStorage.setItem(TOKEN_KEY, answer.visitor_token);
}

async function startWeb() {
  const config = await fetch('whosin.json').then((r) => r.json());
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const params = { visitor_id: visitorId() };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) params.visitor_token = token;
  const name = localStorage.getItem('whosin.name');
  if (name) params.name = name;
  const transport = new PresenceTransport({
    wsUrl: `${scheme}://${location.host}/app/${encodeURIComponent(config.key)}?protocol=7&client=whosin-web&version=1&flash=false`,
    authEndpoint: config.auth_endpoint,
    channel: config.channel,
    params,
    onAuth: keepIdentity,
    onEvent: (e) => view.apply(e),
  });
  window.whosinTransport = transport;
  transport.start();
  startHistory(async () => {
    const r = await fetch(`history.json?channel=${encodeURIComponent(config.channel)}`);
    return r.ok ? r.json() : null;
  }, view);
}

// The 24-hour chart: per-minute history (the server's, or the desktop's own
// database), fetched now and every minute, with the live count drawn to the
// right edge as it changes. `fetchHistory` resolves to {points, peak?} (the
// desktop gives today's peak; the page shows the peak of the 24 hours).
function startHistory(fetchHistory, view) {
  const panel = document.getElementById('history-panel');
  let points = [];
  let today = null;
  const draw = () => {
    const count = Number(document.getElementById('count').textContent) || 0;
    const now = Math.floor(Date.now() / 1000);
    const { d, peak } = historyPath(points, { now, count });
    document.getElementById('history-line').setAttribute('d', d);
    const hour = historyPath(points, { now, count, span: 3600 });
    document.getElementById('history-hour').setAttribute('d', hour.d);
    if (today && count > today.value) today = { value: count, t: now };
    const text = today
      ? `Peak today ${today.value} at ${clock(today.t)}`
      : peak ? `Peak ${peak.value} at ${clock(peak.t)}` : '';
    document.getElementById('history-peak').textContent = text;
  };
  const load = async () => {
    try {
      const h = await fetchHistory();
      if (!h) return;
      points = h.points || [];
      today = h.peak || null;
      panel.hidden = false;
      draw();
    } catch { /* offline: the next minute tries again */ }
  };
  // Between fetches the live count is this minute's point, as the server
  // records it (peak and last of the minute).
  const live = (n) => {
    const t = Math.floor(Date.now() / 60_000) * 60;
    const p = points.find((q) => q.t === t);
    if (p) { p.peak = Math.max(p.peak, n); p.last = n; } else points.push({ t, peak: n, last: n });
    draw();
  };
  load();
  setInterval(load, 60_000);
  window.whosinHistory = load;
  view.onCount = live;
}

async function startDesktop(tauri) {
  const { invoke } = tauri.core;
  const { listen } = tauri.event;
  // Events that arrive before the first snapshot are held and replayed only
  // if they are newer than it (each carries a sequence number).
  let base = null;
  const early = [];
  const onEvent = (e) => (e.event === 'refresh' ? applySnapshot(e.snapshot) : view.apply(e));
  await listen('presence', ({ payload }) => {
    // The sites and their counts: not part of the shown site's sequence.
    if (payload.event === 'sites') return renderSites(payload, invoke);
    if (base === null) early.push(payload);
    else if (payload.seq > base) onEvent(payload);
  });
  const snap = await invoke('snapshot');
  base = snap.seq;
  applySnapshot(snap);
  for (const e of early) if (e.seq > base) onEvent(e);

  const join = document.getElementById('toggle-join');
  const settingsButton = document.getElementById('toggle-settings');
  join.hidden = false;
  settingsButton.hidden = false;
  join.addEventListener('click', async () => {
    const joined = join.dataset.joined === 'true';
    await invoke('set_joined', { joined: !joined }); // a 'refresh' event follows
  });
  settingsButton.addEventListener('click', () => toggleSettings(invoke));
  document.getElementById('settings').addEventListener('submit', (ev) => saveSettings(ev, invoke));
  startHistory(() => invoke('history'), view);
  renderSites(await invoke('sites'), invoke);
  document.getElementById('add-site').addEventListener('submit', (ev) => addSite(ev, invoke));
}

// The sites list: one `li` per site with its count; the shown one marked;
// a click shows another site (the window then gets that site's picture).
function renderSites({ sites }, invoke) {
  const panel = document.getElementById('sites-panel');
  const list = document.getElementById('sites');
  panel.hidden = sites.length < 2;
  list.replaceChildren(...sites.map((s) => {
    const li = document.createElement('li');
    li.dataset.id = s.id;
    li.classList.toggle('shown', s.shown);
    const name = document.createElement('button');
    name.type = 'button';
    name.className = 'site-name';
    name.textContent = s.name;
    name.addEventListener('click', async () => {
      if (s.shown) return;
      await invoke('select_site', { id: s.id });
      if (window.whosinHistory) window.whosinHistory();
    });
    const count = document.createElement('span');
    count.className = 'site-count';
    count.textContent = s.count == null ? '–' : String(s.count);
    li.append(name, count);
    if (sites.length > 1) {
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'site-remove';
      remove.title = `Remove ${s.name}`;
      remove.textContent = '×';
      remove.addEventListener('click', () => invoke('remove_site', { id: s.id }));
      li.append(remove);
    }
    return li;
  }));
  const select = document.querySelector('#settings select[name=tray_site]');
  if (select) {
    const current = sites.find((s) => !s.in_tray) ? (sites.find((s) => s.in_tray) || {}).id : '';
    select.replaceChildren(new Option('all sites', ''), ...sites.map((s) => new Option(s.name, s.id)));
    select.value = current || '';
  }
}

async function addSite(ev, invoke) {
  ev.preventDefault();
  const form = ev.target;
  const err = document.getElementById('add-site-error');
  const url = form.url.value.trim();
  const cluster = form.cluster.value.trim();
  const remote = url || cluster
    ? { url: url || null, cluster: cluster || null, key: form.key.value.trim(), auth_endpoint: form.auth_endpoint.value.trim(), app_id: form.app_id.value.trim() || null, secret: form.secret.value.trim() || null }
    : null;
  const site = { name: form.name.value.trim(), remote, channel: form.channel.value.trim() || null, watch: form.watch.checked };
  try {
    await invoke('add_site', { site });
    err.hidden = true;
    form.reset();
  } catch (e) {
    err.textContent = String(e);
    err.hidden = false;
  }
}

function applySnapshot(snap) {
  view.apply({ event: 'state', ...snap.state });
  view.apply({ event: 'snapshot', me: snap.me, members: snap.members });
  view.apply({ event: 'public_ip', ip: snap.public_ip });
  view.apply({ event: 'address', text: snap.address });
  const join = document.getElementById('toggle-join');
  join.dataset.joined = String(snap.joined);
  join.textContent = snap.joined ? 'Leave' : 'Join';
}

async function toggleSettings(invoke) {
  const panel = document.getElementById('settings-panel');
  panel.hidden = !panel.hidden;
  if (panel.hidden) return;
  const s = await invoke('get_settings');
  const form = document.getElementById('settings');
  form.name.value = s.name || '';
  form.mode.value = s.remote ? 'remote' : 'embedded';
  const r = s.remote || {};
  form.url.value = r.url || '';
  form.cluster.value = r.cluster || '';
  form.key.value = r.key || '';
  form.auth_endpoint.value = r.auth_endpoint || '';
  form.observer_token.value = r.observer_token || '';
  form.app_id.value = r.app_id || '';
  form.secret.value = r.secret || '';
  form.watch.checked = !!s.watch;
  form.channel.value = s.channel || '';
  form.notifications.checked = !!s.notifications;
  form.autostart.checked = !!s.autostart;
  form.alert_at.value = s.alert_at ?? '';
  form.alert_empty.checked = !!s.alert_empty;
}

async function saveSettings(ev, invoke) {
  ev.preventDefault();
  const form = ev.target;
  const err = document.getElementById('settings-error');
  const remote = form.mode.value === 'remote'
    ? { url: form.url.value.trim() || null, cluster: form.cluster.value.trim() || null, key: form.key.value.trim(), auth_endpoint: form.auth_endpoint.value.trim(), observer_token: form.observer_token.value.trim() || null, app_id: form.app_id.value.trim() || null, secret: form.secret.value.trim() || null }
    : null;
  const alertAt = parseInt(form.alert_at.value, 10);
  const settings = {
    name: form.name.value.trim(), channel: form.channel.value.trim() || null,
    notifications: form.notifications.checked, autostart: form.autostart.checked, remote,
    alert_at: Number.isInteger(alertAt) && alertAt > 0 ? alertAt : null, alert_empty: form.alert_empty.checked,
    watch: form.watch.checked,
  };
  try {
    await invoke('save_settings', { settings }); // a 'refresh' event follows
    await invoke('set_tray_site', { id: form.tray_site.value || null });
    err.hidden = true;
    document.getElementById('settings-panel').hidden = true;
  } catch (e) {
    err.textContent = String(e);
    err.hidden = false;
  }
}

const tauri = window.__TAURI__;
(tauri ? startDesktop(tauri) : startWeb()).catch((e) => view.error(`cannot start: ${e.message || e}`));
