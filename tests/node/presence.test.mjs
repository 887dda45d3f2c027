// 2. and 3. Presence as pusher-js sees it: join/leave on both sides, and one
// user with several connections counted once. Each test gets its own server
// so that member counts are not disturbed by the previous test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startServer } from './lib/server.mjs';
import { PRESENCE, joinPresence, memberMap, newVisitorId, restClient, restGet } from './lib/clients.mjs';
import { nextEvent, record, waitFor, withTimeout } from './lib/wait.mjs';

async function freshServer(t) {
  const server = await startServer();
  t.after(() => server.stop());
  return server;
}

// Makes `observer` see a user join and leave, and waits for both events.
// Used as a barrier: events the server queued for the observer before it
// processed this join/leave have arrived by the time this returns.
async function sentinelRoundTrip(t, server, observer) {
  const id = newVisitorId();
  const added = nextEvent(observer, 'pusher:member_added', { filter: (m) => m.id === id, what: 'sentinel member_added' });
  const sentinel = await joinPresence(t, server, { visitorId: id });
  await added;
  const removed = nextEvent(observer, 'pusher:member_removed', { filter: (m) => m.id === id, what: 'sentinel member_removed' });
  sentinel.client.disconnect();
  await removed;
}

function assertMe(channel, id, name) {
  const me = channel.members.me;
  assert.ok(me, 'members.me is set: the joiner is in its own subscription_succeeded roster');
  assert.equal(me.id, id);
  assert.equal(typeof me.info?.name, 'string', `info.name is a string: ${JSON.stringify(me.info)}`);
  assert.ok(me.info.name.trim().length > 0, 'info.name is not empty');
  if (name !== undefined) assert.equal(me.info.name, name);
  assert.equal(me.info.ip, '127.0.0.1');
}

test('presence join and leave are seen by both sides', async (t) => {
  const server = await freshServer(t);
  const idA = newVisitorId();
  const idB = newVisitorId();

  const a = await joinPresence(t, server, { visitorId: idA, name: 'Ada Interop' });
  assert.equal(a.channel.members.count, 1);
  assertMe(a.channel, idA, 'Ada Interop');

  const addedAtA = nextEvent(a.channel, 'pusher:member_added', { filter: (m) => m.id === idB, what: 'member_added for B at A' });
  const b = await joinPresence(t, server, { visitorId: idB }); // server picks B's name
  const [addedB] = await addedAtA;

  assertMe(b.channel, idB);
  assert.equal(a.channel.members.count, 2);
  assert.equal(b.channel.members.count, 2);
  // Both see the same roster, with the info the server gave each user.
  assert.deepEqual(addedB.info, b.channel.members.me.info);
  assert.deepEqual(memberMap(b.channel)[idA], a.channel.members.me.info);
  assert.deepEqual(memberMap(a.channel), memberMap(b.channel));

  const removedAtA = nextEvent(a.channel, 'pusher:member_removed', { filter: (m) => m.id === idB, what: 'member_removed for B at A' });
  b.client.disconnect();
  const [removedB] = await removedAtA;
  assert.equal(removedB.id, idB);
  assert.equal(a.channel.members.count, 1);
  assert.equal(a.channel.members.get(idB), null);
});

test('leaving by unsubscribe (connection kept) removes the member', async (t) => {
  const server = await freshServer(t);
  const idA = newVisitorId();
  const idB = newVisitorId();
  const a = await joinPresence(t, server, { visitorId: idA });
  const addedAtA = nextEvent(a.channel, 'pusher:member_added', { filter: (m) => m.id === idB });
  const b = await joinPresence(t, server, { visitorId: idB });
  await addedAtA;

  const removedAtA = nextEvent(a.channel, 'pusher:member_removed', { filter: (m) => m.id === idB, what: 'member_removed after pusher:unsubscribe' });
  b.client.unsubscribe(PRESENCE);
  await removedAtA;
  assert.equal(a.channel.members.count, 1);
  assert.equal(b.client.connection.state, 'connected');
});

test('several connections of one user are counted once', async (t) => {
  const server = await freshServer(t);
  const idObs = newVisitorId();
  const idU = newVisitorId();
  const obs = await joinPresence(t, server, { visitorId: idObs });
  const added = record(obs.channel, 'pusher:member_added');
  const removed = record(obs.channel, 'pusher:member_removed');
  const countFor = (rec, id) => rec.calls.filter(([m]) => m.id === id).length;

  const u = [];
  for (let i = 0; i < 3; i++) {
    u.push(await joinPresence(t, server, { visitorId: idU }));
    // Every connection of U sees itself once plus the observer.
    assert.equal(u[i].channel.members.count, 2, `connection ${i + 1} of U sees 2 members`);
    assert.equal(u[i].channel.members.me.id, idU);
  }
  await waitFor(() => countFor(added, idU) >= 1, { what: 'member_added for U at the observer' });
  await sentinelRoundTrip(t, server, obs.channel);
  assert.equal(countFor(added, idU), 1, 'exactly one member_added for a user with 3 connections');
  // All connections of U carry the same info (one roster entry per user).
  assert.deepEqual(u[1].channel.members.me.info, u[0].channel.members.me.info);
  assert.deepEqual(u[2].channel.members.me.info, u[0].channel.members.me.info);
  assert.equal(obs.channel.members.count, 2);

  // Close 2 of the 3 connections: U is still present.
  u[0].client.disconnect();
  u[1].client.disconnect();
  await sentinelRoundTrip(t, server, obs.channel);
  assert.equal(countFor(removed, idU), 0, 'no member_removed while U still has a connection');
  assert.equal(obs.channel.members.count, 2);
  const users = await restGet(restClient(server), `/channels/${PRESENCE}/users`);
  assert.deepEqual(users.users.map((x) => x.id).sort(), [idObs, idU].sort());

  // Close the last one: exactly one member_removed.
  u[2].client.disconnect();
  await waitFor(() => countFor(removed, idU) >= 1, { what: 'member_removed for U after its last connection closed' });
  await sentinelRoundTrip(t, server, obs.channel);
  assert.equal(countFor(removed, idU), 1, 'exactly one member_removed');
  assert.equal(countFor(added, idU), 1);
  assert.equal(obs.channel.members.count, 1);
  added.stop();
  removed.stop();
});

// A visitor process that dies (SIGKILL) sends no WebSocket close frame; the
// server must still notice the closed TCP connection and remove the member.
test('a visitor process killed with SIGKILL is removed', async (t) => {
  const server = await freshServer(t);
  const obs = await joinPresence(t, server, { visitorId: newVisitorId() });
  const idK = newVisitorId();

  const child = spawn(process.execPath, [fileURLToPath(new URL('./lib/visitor-child.mjs', import.meta.url))], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: {
      ...process.env,
      VISITOR_KEY: server.key,
      VISITOR_HOST: server.host,
      VISITOR_PORT: String(server.port),
      VISITOR_AUTH: server.authEndpoint,
      VISITOR_ID: idK,
      VISITOR_CHANNEL: PRESENCE,
    },
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });

  const addedAtObs = nextEvent(obs.channel, 'pusher:member_added', { filter: (m) => m.id === idK, timeout: 10_000, what: 'member_added for the child visitor' });
  const firstLine = new Promise((resolve) => {
    createInterface({ input: child.stdout }).once('line', resolve);
  });
  const line = await withTimeout(firstLine, 10_000, 'the child visitor to join');
  assert.match(line, /^joined \d+\.\d+$/);
  await addedAtObs;

  const removedAtObs = nextEvent(obs.channel, 'pusher:member_removed', {
    filter: (m) => m.id === idK,
    timeout: 10_000,
    what: 'member_removed after the visitor process was killed',
  });
  child.kill('SIGKILL');
  await exited;
  await removedAtObs;
  assert.equal(obs.channel.members.count, 1);
});
