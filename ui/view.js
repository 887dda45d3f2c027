// The page's view: applies presence events to the DOM incrementally (one
// element per visitor, kept in a Map), so a channel of thousands stays cheap
// and the list never flickers. Shared by the desktop window and the browser.

const $ = (id) => document.getElementById(id);

export class View {
  constructor() {
    this.items = new Map(); // id -> <li>
    this.meId = null;
    this.countdown = null;
  }

  label(member) {
    const info = member.info || {};
    const name = typeof info.name === 'string' && info.name ? info.name : member.id;
    return { name, ip: typeof info.ip === 'string' ? info.ip : '' };
  }

  item(member) {
    const li = document.createElement('li');
    li.dataset.id = member.id;
    const { name, ip } = this.label(member);
    const n = document.createElement('span');
    n.className = 'name';
    n.textContent = name;
    li.append(n);
    if (ip) {
      const i = document.createElement('span');
      i.className = 'ip';
      i.textContent = ` — ${ip}`;
      li.append(i);
    }
    if (member.id === this.meId) li.classList.add('you');
    return li;
  }

  setCount() {
    const n = this.items.size;
    $('count').textContent = String(n);
    document.title = `${n} online — whosin`;
    // "Nobody else is here yet" while the list holds no one but you.
    $('empty').hidden = [...this.items.keys()].some((id) => id !== this.meId);
    if (this.onCount) this.onCount(n);
  }

  snapshot(me, members) {
    this.meId = me ? me.id : this.meId;
    const list = $('visitors');
    const frag = document.createDocumentFragment();
    this.items.clear();
    // You first, then everyone else by name.
    const sorted = [...members].sort((a, b) => {
      if (a.id === this.meId) return -1;
      if (b.id === this.meId) return 1;
      return this.label(a).name.localeCompare(this.label(b).name);
    });
    for (const m of sorted) {
      const li = this.item(m);
      this.items.set(m.id, li);
      frag.append(li);
    }
    list.replaceChildren(frag);
    if (me) this.showMe(me);
    this.setCount();
  }

  added(member) {
    if (this.items.has(member.id)) return;
    const li = this.item(member);
    this.items.set(member.id, li);
    $('visitors').append(li);
    this.setCount();
  }

  removed(member) {
    const li = this.items.get(member.id);
    if (!li) return;
    li.remove();
    this.items.delete(member.id);
    this.setCount();
  }

  showMe(me) {
    const { name, ip } = this.label(me);
    $('me').textContent = ip ? `${name} — ${ip}` : name;
  }

  publicIp(ip) {
    const p = $('public-ip');
    p.hidden = !ip;
    p.textContent = ip ? `Your public IP: ${ip}` : '';
  }

  address(text) {
    const p = $('address');
    p.hidden = !text;
    p.textContent = text || '';
  }

  state(e) {
    const el = $('state');
    clearInterval(this.countdown);
    el.className = `state ${e.state}`;
    switch (e.state) {
      case 'connecting': el.textContent = 'connecting…'; break;
      case 'connected': el.textContent = 'online'; break;
      case 'reconnecting': {
        const until = Date.now() + (e.delay_ms || 0);
        const tick = () => {
          const s = Math.max(0, Math.ceil((until - Date.now()) / 1000));
          el.textContent = s > 0 ? `reconnecting in ${s} s` : 'reconnecting…';
          el.title = e.reason || '';
        };
        tick();
        this.countdown = setInterval(tick, 500);
        break;
      }
      case 'disconnected': el.textContent = `offline${e.reason ? `: ${e.reason}` : ''}`; break;
      case 'left': el.textContent = 'not joined (you left the channel)'; break;
      default: el.textContent = e.state;
    }
  }

  error(message) {
    const el = $('state');
    el.className = 'state disconnected';
    el.textContent = message;
  }

  // One entry point for every event, from either transport.
  apply(e) {
    switch (e.event) {
      case 'state': this.state(e); break;
      case 'snapshot': this.snapshot(e.me, e.members); break;
      case 'member_added': this.added(e.member); break;
      case 'member_removed': this.removed(e.member); break;
      case 'public_ip': this.publicIp(e.ip); break;
      case 'address': this.address(e.text); break;
      case 'subscription_error': this.error(`cannot join: ${e.message}`); break;
      default: break;
    }
  }
}
