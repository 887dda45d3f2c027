// 7. Bad signatures are refused: REST requests signed with the wrong secret,
// stale or with a body that does not match body_md5; WebSocket subscriptions
// with forged or replayed auth strings. Each refusal has a passing control.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startServer } from './lib/server.mjs';
import {
  PRESENCE, connected, hmacHex, joinPresence, newClient, newVisitorId, restClient, restGet,
  subscribe, subscribeExpectingError,
} from './lib/clients.mjs';
import { nextEvent } from './lib/wait.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

async function expectStatus(promise, status, what) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.name, 'PusherRequestError', `${what}: ${err}`);
    assert.equal(err.status, status, `${what}: expected HTTP ${status}, got ${err.status} ${err.body ?? err.message}`);
    return true;
  });
}

test('REST: a wrong secret gets 401, the right one works', async () => {
  const good = restClient(server);
  const bad = restClient(server, { secret: randomBytes(10).toString('hex') });
  assert.ok((await restGet(good, '/channels')).channels, 'control: correctly signed GET works');
  assert.equal((await good.trigger('sig-test', 'ev', {})).status, 200, 'control: correctly signed POST works');

  await expectStatus(bad.get({ path: '/channels' }), 401, 'GET /channels with a wrong secret');
  await expectStatus(bad.trigger('sig-test', 'ev', {}), 401, 'POST /events with a wrong secret');
  await expectStatus(bad.triggerBatch([{ channel: 'sig-test', name: 'ev', data: {} }]), 401, 'POST /batch_events with a wrong secret');
  await expectStatus(bad.get({ path: `/channels/${PRESENCE}/users` }), 401, 'GET users with a wrong secret');
});

test('REST: a timestamp more than 600 s old gets 401', async () => {
  const rest = restClient(server);
  // The SDK stamps auth_timestamp from Date.now() synchronously when the
  // request is built; shift it back 700 s for that one call.
  const realNow = Date.now;
  Date.now = () => realNow() - 700_000;
  let pending;
  try {
    pending = rest.get({ path: '/channels' });
  } finally {
    Date.now = realNow;
  }
  await expectStatus(pending, 401, 'GET /channels with auth_timestamp 700 s old');
});

test('REST: a body that does not match the signed body_md5 gets 401', async () => {
  const rest = restClient(server);
  const path = `/apps/${server.appId}/events`;
  const signedBody = JSON.stringify({ name: 'ev', channels: ['sig-test'], data: '{"a":1}' });
  const otherBody = JSON.stringify({ name: 'ev', channels: ['sig-test'], data: '{"a":2}' });
  const query = rest.createSignedQueryString({ method: 'POST', path, body: signedBody });
  const post = (body) => fetch(`${server.baseUrl}${path}?${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(5000),
  });
  assert.equal((await post(signedBody)).status, 200, 'control: the signed body is accepted');
  const res = await post(otherBody);
  assert.equal(res.status, 401, `tampered body: got ${res.status} ${await res.text()}`);
});

// A pusher-js authorizer that answers with whatever `make(socketId, channel)` returns.
const handlerFrom = (make) => ({ socketId, channelName }, callback) => {
  try { callback(null, make(socketId, channelName)); } catch (err) { callback(err, null); }
};

function presenceAuth(secret, socketId, channel, userId) {
  const channelData = JSON.stringify({ user_id: userId, user_info: { name: 'Mallory', ip: '203.0.113.9' } });
  return { auth: `${server.key}:${hmacHex(secret, `${socketId}:${channel}:${channelData}`)}`, channel_data: channelData };
}

test('WebSocket: forged or replayed presence auth gives pusher:subscription_error', async (t) => {
  const rest = restClient(server);
  const obs = await joinPresence(t, server, { visitorId: newVisitorId() });
  const forgedIds = [];

  // Signed with a secret that is not the app's.
  const idWrong = newVisitorId();
  forgedIds.push(idWrong);
  const wrongSecret = newClient(t, server, {
    customHandler: handlerFrom((sock, ch) => presenceAuth(randomBytes(10).toString('hex'), sock, ch, idWrong)),
  });
  await connected(wrongSecret);
  const err1 = await subscribeExpectingError(wrongSecret, PRESENCE);
  assert.ok(err1, 'subscription_error carries data');
  assert.equal(wrongSecret.channel(PRESENCE).subscribed, false);

  // Correctly signed, but for another socket id (a replayed auth).
  const idReplay = newVisitorId();
  forgedIds.push(idReplay);
  const replay = newClient(t, server, {
    customHandler: handlerFrom((_sock, ch) => presenceAuth(server.secret, obs.client.connection.socket_id, ch, idReplay)),
  });
  await connected(replay);
  await subscribeExpectingError(replay, PRESENCE);

  // Correct signature over other channel_data than the one sent.
  const idSwap = newVisitorId();
  forgedIds.push(idSwap);
  const swapped = newClient(t, server, {
    customHandler: handlerFrom((sock, ch) => {
      const signed = presenceAuth(server.secret, sock, ch, newVisitorId());
      return { auth: signed.auth, channel_data: JSON.stringify({ user_id: idSwap, user_info: { name: 'Mallory' } }) };
    }),
  });
  await connected(swapped);
  await subscribeExpectingError(swapped, PRESENCE);

  // Control: the same construction with the right secret and socket succeeds,
  // and acts as a barrier for the roster checks below.
  const idOk = newVisitorId();
  const addedOk = nextEvent(obs.channel, 'pusher:member_added', { filter: (m) => m.id === idOk, what: 'member_added for the correctly signed user' });
  const good = newClient(t, server, {
    customHandler: handlerFrom((sock, ch) => presenceAuth(server.secret, sock, ch, idOk)),
  });
  await connected(good);
  await subscribe(good, PRESENCE);
  await addedOk;

  // None of the forged users got into the roster.
  const ids = Object.keys(obs.channel.members.members);
  for (const id of forgedIds) assert.ok(!ids.includes(id), `forged user ${id} is in the observer's roster`);
  const users = (await restGet(rest, `/channels/${PRESENCE}/users`)).users.map((u) => u.id);
  for (const id of forgedIds) assert.ok(!users.includes(id), `forged user ${id} is listed by the REST API`);
});

test('WebSocket: forged private-channel auth gives pusher:subscription_error', async (t) => {
  const channel = 'private-sig-test';
  const forged = newClient(t, server, {
    customHandler: handlerFrom((sock, ch) => ({ auth: `${server.key}:${'0'.repeat(64)}` })),
  });
  await connected(forged);
  await subscribeExpectingError(forged, channel);

  // Signed for the right socket but another channel.
  const other = newClient(t, server, {
    customHandler: handlerFrom((sock) => ({ auth: `${server.key}:${hmacHex(server.secret, `${sock}:private-elsewhere`)}` })),
  });
  await connected(other);
  await subscribeExpectingError(other, channel);

  // Control: signed with the app secret through the SDK's own signer.
  const rest = restClient(server);
  const ok = newClient(t, server, { customHandler: handlerFrom((sock, ch) => rest.authorizeChannel(sock, ch)) });
  await connected(ok);
  await subscribe(ok, channel);
});
