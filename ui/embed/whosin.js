// whosin's one-line embed (/whosin.js): a page on any site adds
//   <script src="https://HOST/whosin.js" data-key="KEY" async></script>
// and shows who is on it: the count in [data-whosin-count], the list
// (name — IP) in [data-whosin-list], else a badge. One classic script with
// no imports, so no page needs a bundler (ui/transport.js is a module and
// does more than a count needs); it writes text only and no inline script
// or style, so it runs under a strict Content-Security-Policy.
(() => {
  const script = document.currentScript
    || [...document.querySelectorAll('script[src]')].find((s) => /\/whosin\.js([?#].*)?$/.test(s.src));
  const key = script && script.dataset.key;
  if (!key) return console.warn('whosin: add data-key="APP_KEY" to the whosin.js script tag');
  const server = new URL(script.src);
  const origin = server.origin;
  const channel = script.dataset.channel || 'presence-whosin';
  const name = script.dataset.name;
  const wsUrl = `${server.protocol === 'https:' ? 'wss' : 'ws'}://${server.host}/app/${encodeURIComponent(key)}`
    + '?protocol=7&client=whosin-embed&version=1';
  const ID = 'whosin.visitor_id';
  const TOKEN = 'whosin.visitor_token';
  // Storage can be off (sandboxed frames): then each view is a new visitor.
  const load = (k) => { try { return localStorage.getItem(k); } catch { return null; } };
  const keep = (k, v) => { try { localStorage.setItem(k, v); } catch { /* off */ } };

  const members = new Map(); // user_id -> user_info
  let ws = null;
  let openedAt = 0;
  let attempt = 0;
  let activityMs = 120e3;
  let aliveTimer;
  let badge = null;

  const label = (id, i) => {
    const n = i && typeof i.name === 'string' && i.name ? i.name : id;
    return i && typeof i.ip === 'string' && i.ip ? `${n} — ${i.ip}` : n;
  };

  // Looked up on each change, so elements added later are filled too.
  function render() {
    const rows = [...members].map(([id, i]) => label(id, i)).sort((a, b) => a.localeCompare(b));
    const counts = document.querySelectorAll('[data-whosin-count]');
    const lists = document.querySelectorAll('[data-whosin-list]');
    for (const el of counts) el.textContent = String(members.size);
    for (const el of lists) {
      const tag = /^[OU]L$/.test(el.tagName) ? 'li' : 'div';
      el.replaceChildren(...rows.map((text) => {
        const row = document.createElement(tag);
        row.textContent = text;
        return row;
      }));
    }
    if (counts.length || lists.length) return badge && badge.remove();
    if (!badge) {
      // First in <head>, so the page's own .whosin-badge rules win.
      const css = document.createElement('link');
      css.rel = 'stylesheet';
      css.href = `${origin}/whosin-embed.css`;
      (document.head || document.documentElement).prepend(css);
      badge = document.createElement('div');
      badge.className = 'whosin-badge';
      badge.setAttribute('role', 'status');
    }
    badge.textContent = `${members.size} online`;
    if (!badge.isConnected && document.body) document.body.append(badge);
  }

  const send = (event, data) => ws && ws.readyState === 1 && ws.send(JSON.stringify({ event, data }));

  // Silent for the activity timeout: ping; no pong in 30 s: a dead link.
  function alive() {
    clearTimeout(aliveTimer);
    aliveTimer = setTimeout(() => {
      send('pusher:ping', {});
      aliveTimer = setTimeout(() => ws && ws.close(4201, 'no pong'), 30e3);
    }, activityMs);
  }

  function connect() {
    const sock = new WebSocket(wsUrl);
    ws = sock;
    openedAt = Date.now();
    sock.onmessage = (m) => sock === ws && onFrame(m.data);
    sock.onclose = (c) => sock === ws && onClose(c.code);
  }

  function onFrame(text) {
    let f;
    try { f = JSON.parse(text); } catch { return; }
    if (!f || typeof f !== 'object') return;
    let d = f.data;
    if (typeof d === 'string') { try { d = JSON.parse(d); } catch { /* plain */ } }
    d = d || {};
    alive();
    const ours = f.channel === channel;
    switch (f.event) {
      case 'pusher:connection_established':
        activityMs = Math.min(120, d.activity_timeout || 120) * 1000;
        subscribe(d.socket_id, ws);
        break;
      case 'pusher:ping':
        send('pusher:pong', {});
        break;
      case 'pusher_internal:subscription_succeeded':
        if (!ours) break;
        attempt = 0;
        members.clear();
        for (const [id, i] of Object.entries((d.presence && d.presence.hash) || {})) members.set(id, i);
        render();
        break;
      case 'pusher_internal:member_added':
        if (ours) { members.set(String(d.user_id), d.user_info); render(); }
        break;
      case 'pusher_internal:member_removed':
        if (ours) { members.delete(String(d.user_id)); render(); }
        break;
      case 'pusher:subscription_error':
        console.warn(`whosin: ${channel} refused: ${d.error || d.status}`);
        break;
      default:
    }
  }

  // The id is sent with its token: with it the id stays this visitor's in
  // every tab; without it the server gives a fresh id while the old one is
  // present, so nobody can pose as a listed visitor.
  async function subscribe(socketId, sock) {
    const form = { socket_id: socketId, channel_name: channel, app_key: key };
    const id = load(ID);
    const token = load(TOKEN);
    if (id) form.visitor_id = id;
    if (id && token) form.visitor_token = token;
    if (name) form.name = name;
    let a;
    try {
      // A urlencoded POST without credentials: no CORS preflight.
      const r = await fetch(`${origin}/pusher/auth`, { method: 'POST', body: new URLSearchParams(form), credentials: 'omit' });
      a = await r.json();
      if (!r.ok) throw new Error(a.error || `HTTP ${r.status}`);
    } catch (e) {
      console.warn(`whosin: ${origin}/pusher/auth did not sign ${channel}: ${e.message}`);
      if (sock === ws) sock.close(4100, 'not signed'); // retried with backoff
      return;
    }
    if (sock !== ws) return;
    if (typeof a.visitor_id === 'string' && typeof a.visitor_token === 'string') {
      keep(ID, a.visitor_id);
      keep(TOKEN, a.visitor_token);
    }
    send('pusher:subscribe', { channel, auth: a.auth, channel_data: a.channel_data });
  }

  // As pusher-js: 4000-4099 stay away, 4200-4299 come back at once (unless
  // the link died young), else after a jittered 1-30 s backoff.
  function onClose(code) {
    clearTimeout(aliveTimer);
    ws = null;
    if (code >= 4000 && code < 4100) return console.warn(`whosin: closed for good (${code})`);
    let delay = 0;
    if (!(code >= 4200 && code < 4300 && Date.now() - openedAt > 1000)) {
      const exp = Math.min(30e3, 1000 * 2 ** Math.min(attempt++, 10));
      delay = exp / 2 + (Math.random() * exp) / 2;
    }
    setTimeout(connect, delay);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', connect);
  else connect();
})();
