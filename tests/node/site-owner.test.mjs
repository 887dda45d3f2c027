// Issue 12: what site owners ask presence servers for, checked with the
// official clients: pusher-js 8 for subscription counts, watchlists,
// server-to-user events and cache channels, the pusher SDK for sendToUser
// and triggers; observers (a whosin extension) through pusher-js too. Counts
// and watchlists also on two nodes sharing one real redis-server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import PusherClient from 'pusher-js';
import { startServer } from './lib/server.mjs';
import { startRedis } from './lib/redis.mjs';
import {
  PRESENCE, connected, hmacHex, joinPresence, memberMap, newClient, newVisitorId,
  restClient, restGet, subscribe, subscribeExpectingError,
} from './lib/clients.mjs';
import { nextEvent, record, waitFor } from './lib/wait.mjs';

async function fresh(t, opts) {
  const server = await startServer(opts);
  t.after(() => server.stop());
  return server;
}

/** A pusher-js client that signs in as `user` (with a watchlist) when asked. */
function userClient(t, server, user, watchlist) {
  const client = new PusherClient(server.key, {
    cluster: 'local',
    wsHost: server.host,
    wsPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    enableStats: false,
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        const userData = JSON.stringify(watchlist ? { id: user, watchlist } : { id: user });
        const auth = `${server.key}:${hmacHex(server.secret, `${socketId}::user::${userData}`)}`;
        callback(null, { auth, user_data: userData });
      },
    },
  });
  t.after(() => client.disconnect());
  server.onStop(() => client.disconnect());
  return client;
}

async function signedIn(client) {
  const done = nextEvent(client.connection, 'message', {
    filter: (m) => m.event === 'pusher:signin_success', what: 'pusher:signin_success',
  });
  client.signin();
  await connected(client);
  await done;
}

test('subscription counts reach pusher-js, coalesced, the last value always sent', async (t) => {
  const server = await fresh(t, { extraArgs: ['--subscription-count'] });
  const a = newClient(t, server);
  await connected(a);
  const room = await subscribe(a, 'room-1');
  const counts = record(room, 'pusher:subscription_count');
  const b = newClient(t, server);
  await connected(b);
  await subscribe(b, 'room-1');
  await waitFor(() => room.subscriptionCount === 2, { what: 'count 2' });
  assert.deepEqual(counts.calls.at(-1)[0], { subscription_count: 2 });

  // A burst of 20 more: coalesced into a few frames, ending on 22.
  const before = counts.calls.length;
  const burst = [];
  for (let i = 0; i < 20; i++) {
    const c = newClient(t, server);
    burst.push(c);
    c.subscribe('room-1');
  }
  await waitFor(() => room.subscriptionCount === 22, { timeout: 10_000, what: 'count 22' });
  assert.ok(counts.calls.length - before <= 6, `coalesced: ${counts.calls.length - before} frames for 20 subscribes`);
  for (const c of burst) c.disconnect();
  b.unsubscribe('room-1');
  await waitFor(() => room.subscriptionCount === 1, { timeout: 10_000, what: 'back to 1' });

  // Presence channels are not counted this way (they have a member count).
  const { client: p } = await joinPresence(t, server, { visitorId: newVisitorId() });
  const presenceCounts = record(p.channel(PRESENCE), 'pusher:subscription_count');
  await joinPresence(t, server, { visitorId: newVisitorId() });
  await waitFor(() => p.channel(PRESENCE).members.count === 2);
  assert.equal(presenceCounts.calls.length, 0);
});

test('subscription counts are off unless the app turns them on', async (t) => {
  const server = await fresh(t);
  const a = newClient(t, server);
  await connected(a);
  const room = await subscribe(a, 'room-2');
  const counts = record(room, 'pusher:subscription_count');
  const b = newClient(t, server);
  await connected(b);
  await subscribe(b, 'room-2');
  // Barrier: an event triggered after b's subscribe arrives after any count would.
  const got = nextEvent(room, 'marker');
  await restClient(server).trigger('room-2', 'marker', {});
  await got;
  assert.equal(counts.calls.length, 0);
});

test('watchlists: online and offline of watched users, with those already online first', async (t) => {
  const server = await fresh(t);
  const carol = userClient(t, server, 'carol');
  await signedIn(carol);
  const ann = userClient(t, server, 'ann', ['bob', 'carol', 'dave']);
  const online = [];
  const offline = [];
  ann.user.watchlist.bind('online', (e) => online.push(e.user_ids));
  ann.user.watchlist.bind('offline', (e) => offline.push(e.user_ids));
  await signedIn(ann);
  await waitFor(() => online.length === 1, { what: 'initial online event' });
  assert.deepEqual(online[0], ['carol']);

  const bob = userClient(t, server, 'bob');
  await signedIn(bob);
  await waitFor(() => online.length === 2, { what: 'bob online' });
  assert.deepEqual(online[1], ['bob']);
  // A second connection of bob is not news; its close is not offline.
  const bob2 = userClient(t, server, 'bob');
  await signedIn(bob2);
  bob2.disconnect();
  bob.disconnect();
  await waitFor(() => offline.length === 1, { what: 'bob offline' });
  assert.deepEqual(offline[0], ['bob']);
  assert.equal(online.length, 2, 'one online event for bob');
  // Someone not watched comes and goes unnoticed.
  const eve = userClient(t, server, 'eve');
  await signedIn(eve);
  eve.disconnect();
  carol.disconnect();
  await waitFor(() => offline.length === 2, { what: 'carol offline' });
  assert.deepEqual(offline[1], ['carol']);
});

test('sendToUser from the pusher SDK reaches every connection signed in as that user, and no one else', async (t) => {
  const server = await fresh(t);
  const bob = userClient(t, server, 'bob');
  const bob2 = userClient(t, server, 'bob');
  const ann = userClient(t, server, 'ann');
  for (const c of [bob, bob2, ann]) await signedIn(c);
  const annGot = record(ann.user, 'hello');
  const got = [nextEvent(bob.user, 'hello'), nextEvent(bob2.user, 'hello')];
  const res = await restClient(server).sendToUser('bob', 'hello', { text: 'hi bob' });
  assert.equal(res.status, 200);
  for (const [data] of await Promise.all(got)) assert.deepEqual(data, { text: 'hi bob' });
  // Barrier for ann: a user event to her after bob's.
  const barrier = nextEvent(ann.user, 'barrier');
  await restClient(server).sendToUser('ann', 'barrier', {});
  await barrier;
  assert.equal(annGot.calls.length, 0);
  // (That a connection cannot subscribe to someone else's user channel is
  // checked in crates/cli/tests/site_owner.rs: pusher-js will not even try.)
});

test('cache channels replay the last event to a new subscriber, or say cache_miss', async (t) => {
  const server = await fresh(t);
  const rest = restClient(server);
  await rest.trigger('cache-news', 'headline', { n: 1 });
  await rest.trigger('cache-news', 'headline', { n: 2 });
  const a = newClient(t, server);
  await connected(a);
  const channel = a.subscribe('cache-news');
  const [data] = await nextEvent(channel, 'headline');
  assert.deepEqual(data, { n: 2 });

  const b = newClient(t, server);
  await connected(b);
  const empty = b.subscribe('cache-empty');
  await nextEvent(empty, 'pusher:cache_miss');
  // An ordinary channel replays nothing.
  await rest.trigger('plain', 'headline', { n: 3 });
  const plain = await subscribe(b, 'plain');
  const seen = record(plain, 'headline');
  const barrier = nextEvent(plain, 'marker');
  await rest.trigger('plain', 'marker', {});
  await barrier;
  assert.equal(seen.calls.length, 0);
});

test('an observer sees the roster and every change but is never a member', async (t) => {
  const token = 'owner-token-7c1f';
  const server = await fresh(t, { extraArgs: ['--observer-token', token] });
  const visitor = await joinPresence(t, server, { visitorId: 'v-1' });
  const observer = newClient(t, server, { visitorId: 'owner', params: { observer_token: token } });
  await connected(observer);
  const watched = await subscribe(observer, PRESENCE);
  assert.deepEqual(Object.keys(memberMap(watched)), ['v-1']);
  assert.equal(watched.members.count, 1);
  assert.equal(watched.members.me, null, 'the observer is not in the roster');
  const added = nextEvent(watched, 'pusher:member_added');
  const second = await joinPresence(t, server, { visitorId: 'v-2' });
  assert.equal((await added)[0].id, 'v-2');
  assert.equal(second.channel.members.count, 2, 'visitors do not see the observer');
  assert.ok(!('owner' in memberMap(second.channel)));
  const users = await restGet(restClient(server), `/channels/${PRESENCE}/users`);
  assert.deepEqual(users.users.map((u) => u.id).sort(), ['v-1', 'v-2']);
  const info = await restGet(restClient(server), `/channels/${PRESENCE}`, { info: 'user_count' });
  assert.equal(info.user_count, 2);
  const removed = nextEvent(watched, 'pusher:member_removed');
  visitor.client.disconnect();
  assert.equal((await removed)[0].id, 'v-1');

  // A wrong token, or none configured, signs no observer.
  const wrong = newClient(t, server, { visitorId: 'x', params: { observer_token: 'guess' } });
  await connected(wrong);
  await subscribeExpectingError(wrong, PRESENCE);
  const plainServer = await fresh(t);
  const nope = newClient(t, plainServer, { visitorId: 'y', params: { observer_token: token } });
  await connected(nope);
  await subscribeExpectingError(nope, PRESENCE);
});

test('two nodes, one Redis: counts and watchlists are cluster-wide', async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const one = await fresh(t, { extraArgs: ['--subscription-count', '--redis-url', redis.url, '--node-id', 'n1'] });
  const app = { appId: one.appId, key: one.key, secret: one.secret };
  const two = await fresh(t, { app, extraArgs: ['--subscription-count', '--redis-url', redis.url, '--node-id', 'n2'] });

  const a = newClient(t, one);
  await connected(a);
  const room = await subscribe(a, 'room-c');
  const b = newClient(t, two);
  await connected(b);
  await subscribe(b, 'room-c');
  await waitFor(() => room.subscriptionCount === 2, { timeout: 10_000, what: 'count 2 across nodes' });
  const bRoom = b.channel('room-c');
  await waitFor(() => bRoom.subscriptionCount === 2, { timeout: 10_000, what: 'node 2 sees 2' });
  b.unsubscribe('room-c');
  await waitFor(() => room.subscriptionCount === 1, { timeout: 10_000, what: 'count 1 across nodes' });

  const ann = userClient(t, one, 'ann', ['bob']);
  const online = [];
  const offline = [];
  ann.user.watchlist.bind('online', (e) => online.push(e.user_ids));
  ann.user.watchlist.bind('offline', (e) => offline.push(e.user_ids));
  await signedIn(ann);
  const bob = userClient(t, two, 'bob');
  await signedIn(bob);
  await waitFor(() => online.length === 1, { timeout: 10_000, what: 'bob online on the other node' });
  assert.deepEqual(online[0], ['bob']);
  bob.disconnect();
  await waitFor(() => offline.length === 1, { timeout: 10_000, what: 'bob offline on the other node' });
  assert.deepEqual(offline[0], ['bob']);
});

test('count history: the signed REST path and the page\'s history.json', async (t) => {
  const server = await fresh(t);
  const rest = restClient(server);
  const a = await joinPresence(t, server, { visitorId: 'h-1' });
  const b = await joinPresence(t, server, { visitorId: 'h-2' });
  await waitFor(() => a.channel.members.count === 2, { what: 'b seen' });
  b.client.disconnect();
  await waitFor(() => a.channel.members.count === 1, { what: 'b gone' });
  const body = await restGet(rest, `/channels/${PRESENCE}/history`);
  assert.equal(body.channel, PRESENCE);
  assert.equal(body.resolution_s, 60);
  assert.equal(body.count, 1);
  const minute = Math.floor(Date.now() / 60_000) * 60;
  const last = body.points.at(-1);
  assert.ok(Math.abs(last.t - minute) <= 60, JSON.stringify(body));
  assert.equal(last.peak, 2);
  assert.equal(last.last, 1);
  // The page's unsigned copy serves the signed channel only.
  const page = await fetch(`${server.baseUrl}/history.json?channel=${PRESENCE}`).then((r) => r.json());
  assert.deepEqual(page.points, body.points);
  assert.equal((await fetch(`${server.baseUrl}/history.json?channel=presence-secret`)).status, 404);
  // Unsigned REST is refused like every REST path; non-presence is a 400.
  assert.equal((await fetch(`${server.baseUrl}/apps/${server.appId}/channels/${PRESENCE}/history`)).status, 401);
  await assert.rejects(rest.get({ path: '/channels/public-x/history' }), (e) => e.status === 400);
});

test('two nodes, one Redis: a node started later serves the history it missed', async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const one = await fresh(t, { extraArgs: ['--redis-url', redis.url, '--node-id', 'h1'] });
  const app = { appId: one.appId, key: one.key, secret: one.secret };
  const a = await joinPresence(t, one, { visitorId: 'h-a' });
  await joinPresence(t, one, { visitorId: 'h-b' });
  const c = await joinPresence(t, one, { visitorId: 'h-c' });
  await waitFor(() => a.channel.members.count === 3);
  c.client.disconnect();
  await waitFor(() => a.channel.members.count === 2);
  // The late node's own mirror will only ever see 2: a peak of 3 can come
  // from Redis alone.
  // The leader saves the newest minutes a couple of seconds after a change.
  const late = await fresh(t, { app, extraArgs: ['--redis-url', redis.url, '--node-id', 'h9'] });
  await waitFor(async () => {
    const body = await restGet(restClient(late), `/channels/${PRESENCE}/history`);
    return body.count === 2 && body.points.some((p) => p.peak === 3);
  }, { timeout: 10_000, what: 'history from Redis on the late node' });
});

test('a client event on a private cache channel is replayed like a REST event', async (t) => {
  const server = await fresh(t, { extraArgs: ['--enable-client-events', '--channel', 'private-cache-room'] });
  const a = newClient(t, server);
  await connected(a);
  const room = await subscribe(a, 'private-cache-room');
  const b = newClient(t, server);
  await connected(b);
  const seen = nextEvent(await subscribe(b, 'private-cache-room'), 'client-note');
  room.trigger('client-note', { n: 7 });
  await seen;
  const late = newClient(t, server);
  await connected(late);
  const [data] = await nextEvent(late.subscribe('private-cache-room'), 'client-note');
  assert.deepEqual(data, { n: 7 });
});
