// A small Pusher protocol 7 client for the browser page: connect, keep alive,
// join one presence channel through the server's auth endpoint, reconnect as
// pusher-js does, and report presence as the same events the desktop app and
// `whosin join --json` use: state, snapshot, member_added, member_removed.
// After a reconnect only real changes are reported (the roster is reconciled).
// tests/golden/presence-events.json pins those events: the Rust client and
// this file are both checked against it.

const byId = (a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

const DEFAULT_ACTIVITY_S = 120;
const PONG_TIMEOUT_MS = 30_000;
const BACKOFF_BASE_MS = 1_000;
const BACKOFF_CAP_MS = 30_000;

export class PresenceTransport {
  /**
   * @param {object} o
   * @param {string} o.wsUrl   e.g. ws://host:6001/app/KEY?protocol=7&client=whosin-web&version=1
   * @param {string} o.authEndpoint  e.g. /pusher/auth
   * @param {string} o.channel presence channel
   * @param {Record<string,string>} o.params extra auth form parameters (visitor_id, visitor_token, name)
   * @param {(answer: object) => void} [o.onAuth] told each auth answer: a whosin server's
   *   carries visitor_id and visitor_token, which the caller keeps and sends again
   * @param {(e: object) => void} o.onEvent
   */
  constructor(o) {
    Object.assign(this, o);
    this.members = new Map(); // id -> info, last known
    this.seenSnapshot = false;
    this.attempt = 0;
    this.stopped = false;
    this.meId = null;
  }

  start() {
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.aliveTimer);
    if (this.ws) this.ws.close(1000, 'bye');
  }

  emit(e) {
    try { this.onEvent(e); } catch (err) { console.error(err); }
  }

  open() {
    if (this.attempt === 0 && !this.seenSnapshot) this.emit({ event: 'state', state: 'connecting' });
    const ws = new WebSocket(this.wsUrl);
    this.ws = ws;
    this.openedAt = Date.now();
    ws.onmessage = (m) => this.onFrame(m.data);
    ws.onclose = (c) => this.onClose(c.code, c.reason);
    ws.onerror = () => {}; // onclose follows with the details
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  // Any frame from the server proves the link is alive; silence for the
  // activity timeout gets a ping, and no answer within the pong timeout means
  // the link is dead even if the socket looks open (a half-open link).
  alive() {
    clearTimeout(this.aliveTimer);
    this.aliveTimer = setTimeout(() => {
      this.send({ event: 'pusher:ping', data: {} });
      this.aliveTimer = setTimeout(() => this.ws && this.ws.close(4000 + 201, 'no pong'), PONG_TIMEOUT_MS);
    }, this.activityMs);
  }

  onFrame(text) {
    let f;
    try { f = JSON.parse(text); } catch { return; }
    let data = f.data;
    if (typeof data === 'string') { try { data = JSON.parse(data); } catch { /* plain string */ } }
    this.alive();
    switch (f.event) {
      case 'pusher:connection_established':
        this.socketId = data.socket_id;
        this.activityMs = Math.min(DEFAULT_ACTIVITY_S, data.activity_timeout || DEFAULT_ACTIVITY_S) * 1000;
        this.attempt = 0;
        this.emit({ event: 'state', state: 'connected', socket_id: this.socketId });
        this.subscribe().catch((err) => this.emit({ event: 'subscription_error', status: err.status, message: err.message }));
        this.alive();
        break;
      case 'pusher:ping':
        this.send({ event: 'pusher:pong', data: {} });
        break;
      case 'pusher_internal:subscription_succeeded':
        if (f.channel === this.channel) this.onSnapshot(data.presence || { hash: {} });
        break;
      case 'pusher_internal:member_added':
        if (f.channel === this.channel && !this.members.has(String(data.user_id))) {
          const member = { id: String(data.user_id), info: data.user_info };
          this.members.set(member.id, member.info);
          this.emit({ event: 'member_added', channel: this.channel, member, count: this.members.size });
        }
        break;
      case 'pusher_internal:member_removed':
        if (f.channel === this.channel && this.members.has(String(data.user_id))) {
          const id = String(data.user_id);
          const info = this.members.get(id);
          this.members.delete(id);
          this.emit({ event: 'member_removed', channel: this.channel, member: { id, info }, count: this.members.size });
        }
        break;
      case 'pusher:subscription_error':
        this.emit({ event: 'subscription_error', status: data.status, message: data.error || 'refused' });
        break;
      default:
        break;
    }
  }

  async subscribe() {
    const body = new URLSearchParams({ socket_id: this.socketId, channel_name: this.channel, ...this.params });
    const resp = await fetch(this.authEndpoint, { method: 'POST', body });
    const answer = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const err = new Error(answer.error || `auth endpoint answered HTTP ${resp.status}`);
      err.status = resp.status;
      throw err;
    }
    const cd = JSON.parse(answer.channel_data);
    this.meId = String(cd.user_id);
    if (typeof answer.visitor_id === 'string' && typeof answer.visitor_token === 'string') {
      // Sent again on reconnect: with its token the id stays ours even while
      // the old connection is still present.
      this.params = { ...this.params, visitor_id: answer.visitor_id, visitor_token: answer.visitor_token };
      if (this.onAuth) {
        try { this.onAuth(answer); } catch (err) { console.error(err); }
      }
    }
    this.send({ event: 'pusher:subscribe', data: { channel: this.channel, auth: answer.auth, channel_data: answer.channel_data } });
  }

  onSnapshot(presence) {
    const fresh = new Map(Object.entries(presence.hash || {}).map(([id, info]) => [String(id), info]));
    const old = this.members;
    this.members = fresh;
    if (!this.seenSnapshot) {
      this.seenSnapshot = true;
      const members = [...fresh].sort(byId).map(([id, info]) => ({ id, info }));
      const me = this.meId && fresh.has(this.meId) ? { id: this.meId, info: fresh.get(this.meId) } : null;
      this.emit({ event: 'snapshot', channel: this.channel, count: fresh.size, me, members });
      return;
    }
    // Reconnected: report only what changed while we were away, removals
    // first, each in id order.
    let count = old.size;
    for (const [id, info] of [...old].sort(byId)) {
      if (!fresh.has(id)) this.emit({ event: 'member_removed', channel: this.channel, member: { id, info }, count: --count });
    }
    for (const [id, info] of [...fresh].sort(byId)) {
      if (!old.has(id)) this.emit({ event: 'member_added', channel: this.channel, member: { id, info }, count: ++count });
    }
  }

  onClose(code, reason) {
    clearTimeout(this.aliveTimer);
    this.ws = null;
    if (this.stopped) return;
    if (code >= 4000 && code < 4100) {
      this.emit({ event: 'state', state: 'disconnected', reason: `${reason || 'refused'} (${code})` });
      return;
    }
    const lived = Date.now() - this.openedAt;
    let delay;
    if (code >= 4200 && code < 4300 && lived > 1000) {
      delay = 0;
    } else {
      const exp = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(this.attempt, 10));
      delay = Math.round(exp / 2 + Math.random() * exp / 2);
      this.attempt += 1;
    }
    const why = code === 1006 ? 'connection lost' : `${reason || 'closed'} (${code})`;
    this.emit({ event: 'state', state: 'reconnecting', delay_ms: delay, reason: why });
    this.retryTimer = setTimeout(() => this.open(), delay);
  }
}
