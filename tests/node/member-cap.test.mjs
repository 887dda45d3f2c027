// --max-presence-members: a new user over the cap is refused with
// pusher:subscription_error, but another connection of a user who is already
// present is not (a known failure mode of peer servers), and a slot freed by
// a leaving user can be taken.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import {
  PRESENCE, connected, joinPresence, newClient, newVisitorId, restClient, restGet, subscribe, subscribeExpectingError,
} from './lib/clients.mjs';
import { nextEvent } from './lib/wait.mjs';

let server;
before(async () => { server = await startServer({ maxPresenceMembers: 2 }); });
after(async () => { await server?.stop(); });

test('the cap counts users, not connections', async (t) => {
  const idA = newVisitorId();
  const idB = newVisitorId();
  const idC = newVisitorId();
  const a = await joinPresence(t, server, { visitorId: idA });
  // A's count changes on member_added, which may come after B's own success.
  const addedB = nextEvent(a.channel, 'pusher:member_added', { filter: (m) => m.id === idB, what: 'member_added for B at A' });
  const b = await joinPresence(t, server, { visitorId: idB });
  await addedB;
  assert.equal(a.channel.members.count, 2);
  assert.equal(b.channel.members.count, 2);

  // A third user is over the cap.
  const c = newClient(t, server, { visitorId: idC });
  await connected(c);
  const err = await subscribeExpectingError(c, PRESENCE);
  assert.ok(err, 'subscription_error carries data');
  assert.equal(a.channel.members.get(idC), null);

  // A second tab of A is still let in.
  const a2 = await joinPresence(t, server, { visitorId: idA });
  assert.equal(a2.channel.members.count, 2);
  assert.equal(a2.channel.members.me.id, idA);
  assert.equal(a2.channel.members.get(idC), null, 'the refused user is not in the roster');
  const users = await restGet(restClient(server), `/channels/${PRESENCE}/users`);
  assert.deepEqual(users.users.map((u) => u.id).sort(), [idA, idB].sort());

  // B leaves; now C fits (a fresh connection, as a reloading page would do).
  const removed = nextEvent(a.channel, 'pusher:member_removed', { filter: (m) => m.id === idB, what: 'member_removed for B' });
  b.client.disconnect();
  await removed;
  const c2 = newClient(t, server, { visitorId: idC });
  await connected(c2);
  const channel = await subscribe(c2, PRESENCE);
  assert.equal(channel.members.count, 2);
  assert.equal(channel.members.me.id, idC);
});
