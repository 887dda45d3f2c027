// 8. The auth endpoint /pusher/auth: the POST form pusher-js's ajax transport
// sends, and the GET JSONP form (evaluated with node:vm as a browser would
// run it), its refusals (hostile callback 400, unconfigured channel 403) and
// the --channel option.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import vm from 'node:vm';
import { startServer } from './lib/server.mjs';
import {
  PRESENCE, connected, getAuthJsonp, hmacHex, joinPresence, newClient, newVisitorId, postAuth, subscribe,
} from './lib/clients.mjs';

const CALLBACK = "Pusher.auth_callbacks['3']"; // what pusher-js's JSONP transport sends
let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

const fakeSocketId = () => `${randomInt(1, 1e9)}.${randomInt(1, 1e9)}`;

// Check an auth answer against the protocol: signature over
// socket_id:channel:channel_data with this server's secret.
function checkPresenceAuth(srv, answer, socketId, channel) {
  assert.equal(typeof answer.auth, 'string', JSON.stringify(answer));
  assert.equal(typeof answer.channel_data, 'string', 'channel_data is a JSON string');
  const expected = `${srv.key}:${hmacHex(srv.secret, `${socketId}:${channel}:${answer.channel_data}`)}`;
  assert.equal(answer.auth, expected, 'auth = key:HMAC-SHA256(secret, socket_id:channel:channel_data)');
  const data = JSON.parse(answer.channel_data);
  assert.equal(typeof data.user_id, 'string');
  assert.ok(data.user_id.length > 0 && data.user_id.length <= 128, `user_id length: ${data.user_id}`);
  assert.equal(typeof data.user_info?.name, 'string');
  assert.ok(data.user_info.name.trim().length > 0, 'name is not empty');
  assert.equal(data.user_info.ip, '127.0.0.1');
  return data;
}

async function postPresence(form) {
  const socketId = form.socket_id ?? fakeSocketId();
  const res = await postAuth(server, { socket_id: socketId, channel_name: PRESENCE, ...form });
  assert.equal(res.status, 200, `POST /pusher/auth ${JSON.stringify(form)}: ${res.status} ${res.text}`);
  assert.match(res.headers.get('content-type') ?? '', /json/);
  return checkPresenceAuth(server, JSON.parse(res.text), socketId, PRESENCE);
}

// Build the JSONP URL the way pusher-js does (encodeURIComponent, which
// leaves the quotes in ['3'] unescaped) and run the answer in a sandbox
// that defines the callback. Resolves with { status, text, result }.
async function jsonp(srv, { socketId, channel = PRESENCE, visitorId, callback = CALLBACK }) {
  const query = { callback, socket_id: socketId, channel_name: channel };
  if (visitorId !== undefined) query.visitor_id = visitorId;
  const qs = Object.entries(query).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
  const res = await fetch(`${srv.authEndpoint}?${qs}`, { signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  if (res.status !== 200) return { status: res.status, text };
  assert.match(res.headers.get('content-type') ?? '', /javascript/, 'JSONP is served as JavaScript');
  assert.ok(text.trimStart().startsWith(`${callback}(`), `JSONP body calls the callback: ${text}`);
  if (callback !== CALLBACK) return { status: 200, text }; // sandbox defines only pusher-js's name
  const calls = [];
  const sandbox = vm.createContext({ Pusher: { auth_callbacks: { 3: (data) => calls.push(data) } } });
  vm.runInContext(text, sandbox, { timeout: 1000 });
  assert.equal(calls.length, 1, `the callback was called once by: ${text}`);
  // Re-create the object in this realm so deepEqual/prototype checks work.
  return { status: 200, text, result: JSON.parse(JSON.stringify(calls[0])) };
}

test('POST: signed presence auth with the visitor id, a name and the peer ip', async () => {
  const visitorId = newVisitorId();
  const data = await postPresence({ visitor_id: visitorId });
  assert.equal(data.user_id, visitorId);
});

test('POST: the name is stable per visitor_id, `name` overrides it, bad ids are replaced', async () => {
  const visitorId = newVisitorId();
  const first = await postPresence({ visitor_id: visitorId });
  const again = await postPresence({ visitor_id: visitorId });
  assert.equal(again.user_info.name, first.user_info.name, 'same visitor, same random name');

  const named = await postPresence({ visitor_id: visitorId, name: 'Grace Hopper' });
  assert.equal(named.user_id, visitorId);
  assert.equal(named.user_info.name, 'Grace Hopper');

  // No visitor_id: a fresh id per request.
  const anon1 = await postPresence({});
  const anon2 = await postPresence({});
  assert.notEqual(anon1.user_id, anon2.user_id);

  for (const bad of ['<script>alert(1)</script>', 'x'.repeat(300), '', 'a b"c']) {
    const data = await postPresence({ visitor_id: bad });
    assert.notEqual(data.user_id, bad, `invalid visitor_id ${JSON.stringify(bad.slice(0, 40))} used as user_id`);
  }
});

test('pusher-js ajax transport: subscribe through the endpoint', async (t) => {
  const visitorId = newVisitorId();
  const { channel } = await joinPresence(t, server, { visitorId, name: 'Ajax Visitor' });
  assert.equal(channel.members.me.id, visitorId);
  assert.equal(channel.members.me.info.name, 'Ajax Visitor');
  assert.equal(channel.members.me.info.ip, '127.0.0.1');
});

test('pusher-js: a present visitor id asked for without its token is signed as someone else', async (t) => {
  const visitorId = newVisitorId();
  // A new id, sent bare (an older page): kept, and answered with its token.
  const socketId = fakeSocketId();
  const first = await postAuth(server, { socket_id: socketId, channel_name: PRESENCE, visitor_id: visitorId });
  assert.equal(first.status, 200);
  const answer = JSON.parse(first.text);
  assert.equal(answer.visitor_id, visitorId);
  assert.match(answer.visitor_token, /^[0-9a-f]{64}$/);
  const { channel } = await joinPresence(t, server, { visitorId, bare: true });
  assert.equal(channel.members.me.id, visitorId, 'a new bare id is kept');

  // Someone who read the id in the roster, without the token: another id.
  const { channel: thief } = await joinPresence(t, server, { visitorId, bare: true });
  assert.notEqual(thief.members.me.id, visitorId);
  assert.equal(thief.members.count, 2);
  // The visitor's second tab, with the token it was given: the same person.
  const { channel: tab } = await joinPresence(t, server, { visitorId });
  assert.equal(tab.members.me.id, visitorId);
  assert.equal(tab.members.count, 2);
});

test('JSONP: the answer evaluates to an auth pusher-js subscribes with', async (t) => {
  const socketId = fakeSocketId();
  const visitorId = newVisitorId();
  const direct = await jsonp(server, { socketId, visitorId });
  assert.equal(direct.status, 200, direct.text);
  assert.equal(checkPresenceAuth(server, direct.result, socketId, PRESENCE).user_id, visitorId);

  // Now for a real connection: a customHandler fetches the JSONP for its
  // socket id and hands the evaluated result to pusher-js.
  const realVisitor = newVisitorId();
  const client = newClient(t, server, {
    customHandler: ({ socketId: sock, channelName }, callback) => {
      jsonp(server, { socketId: sock, channel: channelName, visitorId: realVisitor }).then(
        (r) => (r.status === 200 ? callback(null, r.result) : callback(new Error(`JSONP ${r.status}: ${r.text}`), null)),
        (err) => callback(err, null));
    },
  });
  await connected(client);
  const channel = await subscribe(client, PRESENCE);
  assert.equal(channel.members.me.id, realVisitor);
  assert.equal(channel.members.me.info.ip, '127.0.0.1');
});

test('JSONP: a callback that is not a plain identifier path gets 400', async () => {
  const hostile = [
    'alert(1);x',
    'x<script>',
    'a b',
    'a"b',
    'foo()',
    "Pusher.auth_callbacks['3'];alert(1)",
    "Pusher.auth_callbacks['3'](1)//",
    'Pusher.auth_callbacks[alert(1)]',
  ];
  for (const callback of hostile) {
    const r = await jsonp(server, { socketId: fakeSocketId(), visitorId: newVisitorId(), callback });
    assert.equal(r.status, 400, `callback ${JSON.stringify(callback)}: got ${r.status} ${r.text}`);
  }
  // Control: plain identifier paths are fine.
  for (const callback of ['cb', 'window.myAuth_1', CALLBACK]) {
    const r = await jsonp(server, { socketId: fakeSocketId(), callback });
    assert.equal(r.status, 200, `callback ${JSON.stringify(callback)}: got ${r.status} ${r.text}`);
  }
});

test('a channel that is not configured gets 403 (POST and JSONP)', async () => {
  for (const channel of ['presence-elsewhere', 'private-whosin', 'whosin']) {
    const post = await postAuth(server, { socket_id: fakeSocketId(), channel_name: channel, visitor_id: newVisitorId() });
    assert.equal(post.status, 403, `POST for ${channel}: ${post.status} ${post.text}`);
    const get = await getAuthJsonp(server, { callback: CALLBACK, socket_id: fakeSocketId(), channel_name: channel });
    assert.equal(get.status, 403, `JSONP for ${channel}: ${get.status} ${get.text}`);
  }
});

test('--channel sets the channels the endpoint authorizes', async (t) => {
  const lobby = await startServer({ channels: ['presence-lobby'] });
  t.after(() => lobby.stop());
  const socketId = fakeSocketId();
  const ok = await postAuth(lobby, { socket_id: socketId, channel_name: 'presence-lobby', visitor_id: newVisitorId() });
  assert.equal(ok.status, 200, `POST for presence-lobby: ${ok.status} ${ok.text}`);
  checkPresenceAuth(lobby, JSON.parse(ok.text), socketId, 'presence-lobby');

  const refused = await postAuth(lobby, { socket_id: fakeSocketId(), channel_name: 'presence-other', visitor_id: newVisitorId() });
  assert.equal(refused.status, 403, `POST for presence-other: ${refused.status} ${refused.text}`);

  const visitorId = newVisitorId();
  const { channel } = await joinPresence(t, lobby, { visitorId }, 'presence-lobby');
  assert.equal(channel.members.me.id, visitorId);
});
