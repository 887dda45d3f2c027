// 6. Channel and user queries through the `pusher` SDK, while visitors are
// present and after all of them have left (no stuck occupancy).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { PRESENCE, joinPresence, newVisitorId, restClient, restGet, subscribe } from './lib/clients.mjs';
import { waitFor } from './lib/wait.mjs';

const PUBLIC = 'lobby-news';
let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

async function expectStatus(promise, status, what) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.status, status, `${what}: expected HTTP ${status}, got ${err.status} ${err.body ?? err.message}`);
    return true;
  });
}

test('channels, channel info and users while occupied and after everyone left', async (t) => {
  const rest = restClient(server);
  const idU = newVisitorId();
  const idV = newVisitorId();
  // U has two connections; V one and also a public subscription.
  const u1 = await joinPresence(t, server, { visitorId: idU });
  const u2 = await joinPresence(t, server, { visitorId: idU });
  const v = await joinPresence(t, server, { visitorId: idV });
  await subscribe(v.client, PUBLIC);
  assert.equal(v.channel.members.count, 2);

  const all = await restGet(rest, '/channels');
  assert.ok(all.channels?.[PRESENCE], `/channels lists ${PRESENCE}: ${JSON.stringify(all)}`);
  assert.ok(all.channels?.[PUBLIC], `/channels lists ${PUBLIC}: ${JSON.stringify(all)}`);

  const presence = await restGet(rest, '/channels', { filter_by_prefix: 'presence-', info: 'user_count' });
  assert.deepEqual(presence, { channels: { [PRESENCE]: { user_count: 2 } } }, 'user_count counts users, not connections');

  // Pusher allows info=user_count only together with a presence- prefix.
  await expectStatus(rest.get({ path: '/channels', params: { info: 'user_count' } }), 400,
    'GET /channels?info=user_count without filter_by_prefix=presence-');

  const info = await restGet(rest, `/channels/${PRESENCE}`, { info: 'user_count' });
  assert.equal(info.occupied, true, JSON.stringify(info));
  assert.equal(info.user_count, 2, JSON.stringify(info));

  const pub = await restGet(rest, `/channels/${PUBLIC}`);
  assert.equal(pub.occupied, true, JSON.stringify(pub));

  const users = await restGet(rest, `/channels/${PRESENCE}/users`);
  assert.deepEqual(users.users.map((x) => x.id).sort(), [idU, idV].sort());

  // The users list exists only for presence channels.
  await expectStatus(rest.get({ path: `/channels/${PUBLIC}/users` }), 400, `GET /channels/${PUBLIC}/users`);

  // Everyone leaves (U closes one connection, then the other).
  u1.client.disconnect();
  await waitFor(async () => (await restGet(rest, `/channels/${PRESENCE}/users`)).users.length === 2,
    { what: 'U still listed while its second connection is open' });
  u2.client.disconnect();
  v.client.disconnect();

  const gone = await waitFor(async () => {
    const r = await restGet(rest, `/channels/${PRESENCE}`, { info: 'user_count' });
    return r.occupied === false ? r : false;
  }, { what: `${PRESENCE} unoccupied after everyone left` });
  assert.equal(gone.user_count ?? 0, 0, JSON.stringify(gone));

  assert.deepEqual(await restGet(rest, `/channels/${PRESENCE}/users`), { users: [] });
  assert.deepEqual(await restGet(rest, '/channels', { filter_by_prefix: 'presence-', info: 'user_count' }), { channels: {} });
  const pubGone = await waitFor(async () => {
    const r = await restGet(rest, `/channels/${PUBLIC}`);
    return r.occupied === false ? r : false;
  }, { what: `${PUBLIC} unoccupied after everyone left` });
  assert.equal(pubGone.occupied, false);
  const allGone = await restGet(rest, '/channels');
  assert.deepEqual(allGone, { channels: {} });
});
